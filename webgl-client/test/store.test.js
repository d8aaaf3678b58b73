import { describe, it, expect } from 'vitest'
import { LiveStore } from '../src/store.js'

const veh = (name, version, lon = 106.5, lat = 29.5, props = {}) => ({
  type: 'Feature', id: `vehicles/${name}`, layer: 'vehicles', version,
  geometry: { type: 'Point', coordinates: [lon, lat] }, properties: props,
})

// manual frames: schedule() queues, frame() runs the queue
function harness(opts = {}) {
  const queue = []
  const flushed = []
  let t = 0
  const store = new LiveStore({
    schedule: (cb) => queue.push(cb),
    now: () => t,
    onFlush: (layer, feats) => flushed.push({ layer, n: feats.length, ids: feats.map((f) => f.id).sort() }),
    ...opts,
  })
  return {
    store, flushed, queue,
    frame(dt = 16) { t += dt; const q = queue.splice(0); q.forEach((cb) => cb()) },
  }
}

describe('LiveStore', () => {
  it('snapshot replaces the whole state', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 5, features: [veh('a', 1), veh('b', 1)] })
    expect(h.store.count()).toBe(2)
    h.store.handle({ op: 'snapshot', seq: 9, features: [veh('c', 3)] })
    expect(h.store.count()).toBe(1)
    expect(h.store.get('vehicles/a')).toBeUndefined()
    expect(h.store.get('vehicles/c').version).toBe(3)
    expect(h.store.seq).toBe(9)
  })

  it('applies deltas in seq order and ignores duplicates at or below the applied seq', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 10, features: [veh('a', 1)] })
    expect(h.store.handle({ op: 'delta', seq: 11, kind: 'upsert', feature: veh('a', 2, 106.6) })).toBe('applied')
    expect(h.store.seq).toBe(11)
    // an old delta replayed after a resume (seq 10 <= 11) is ignored even with a newer version
    expect(h.store.handle({ op: 'delta', seq: 10, kind: 'upsert', feature: veh('a', 9, 0) })).toBe('ignored')
    expect(h.store.get('vehicles/a').version).toBe(2)
    expect(h.store.handle({ op: 'delta', seq: 12, kind: 'upsert', feature: veh('b', 1) })).toBe('applied')
    expect(h.store.count('vehicles')).toBe(2)
  })

  it('ignores stale versions', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 1, features: [veh('a', 5, 1, 1)] })
    expect(h.store.handle({ op: 'delta', seq: 2, kind: 'upsert', feature: veh('a', 4, 2, 2) })).toBe('ignored')
    expect(h.store.handle({ op: 'delta', seq: 3, kind: 'upsert', feature: veh('a', 5, 3, 3) })).toBe('ignored')
    expect(h.store.get('vehicles/a').geometry.coordinates).toEqual([1, 1])
    expect(h.store.seq).toBe(3)
    expect(h.store.handle({ op: 'delta', seq: 4, kind: 'upsert', feature: veh('a', 6, 4, 4) })).toBe('applied')
    expect(h.store.get('vehicles/a').geometry.coordinates).toEqual([4, 4])
  })

  it('removes, but not with an older version than held', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 1, features: [veh('a', 5), veh('b', 2)] })
    expect(h.store.handle({ op: 'delta', seq: 2, kind: 'remove', feature: veh('a', 4) })).toBe('ignored')
    expect(h.store.get('vehicles/a')).toBeDefined()
    expect(h.store.handle({ op: 'delta', seq: 3, kind: 'remove', feature: veh('a', 5) })).toBe('applied')
    expect(h.store.get('vehicles/a')).toBeUndefined()
    expect(h.store.count('vehicles')).toBe(1)
    // removing something unknown is a no-op
    expect(h.store.handle({ op: 'delta', seq: 4, kind: 'remove', feature: veh('zz', 1) })).toBe('ignored')
  })

  it('resync clears state and seq; the following snapshot refills', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 7, features: [veh('a', 1), veh('b', 1)] })
    h.frame()
    h.store.handle({ op: 'resync' })
    expect(h.store.count()).toBe(0)
    expect(h.store.seq).toBe(0)
    h.frame()
    expect(h.flushed.at(-1)).toEqual({ layer: 'vehicles', n: 0, ids: [] })
    h.store.handle({ op: 'snapshot', seq: 3, features: [veh('c', 1)] })
    expect(h.store.seq).toBe(3)
    h.frame()
    expect(h.flushed.at(-1).ids).toEqual(['vehicles/c'])
  })

  it('batches many deltas into one source update per layer per frame', () => {
    const h = harness()
    h.store.handle({ op: 'snapshot', seq: 0, features: [] })
    const alert = { type: 'Feature', id: 'alerts/x', layer: 'alerts', version: 1, geometry: null, properties: { state: 'open' } }
    let seq = 1
    for (let i = 0; i < 1000; i++) h.store.handle({ op: 'delta', seq: seq++, kind: 'upsert', feature: veh('v' + (i % 100), 1 + Math.floor(i / 100)) })
    h.store.handle({ op: 'delta', seq: seq++, kind: 'upsert', feature: alert })
    expect(h.queue.length).toBe(1) // one frame scheduled however many deltas
    expect(h.flushed.length).toBe(0) // nothing drawn before the frame
    h.frame()
    expect(h.flushed.map((f) => f.layer).sort()).toEqual(['alerts', 'vehicles'])
    expect(h.flushed.find((f) => f.layer === 'vehicles').n).toBe(100)
    expect(h.store.get('vehicles/v7').version).toBe(10)
    // a frame with nothing new flushes nothing
    h.frame()
    expect(h.flushed.length).toBe(2)
    h.store.handle({ op: 'delta', seq: seq++, kind: 'upsert', feature: veh('v1', 11) })
    h.frame()
    expect(h.flushed.length).toBe(3)
    expect(h.flushed[2].layer).toBe('vehicles')
  })

  it('honours minIntervalMs by deferring the flush to a later frame', () => {
    const h = harness({ minIntervalMs: 100 })
    h.store.handle({ op: 'snapshot', seq: 1, features: [veh('a', 1)] })
    h.frame(16)
    expect(h.flushed.length).toBe(1)
    h.store.handle({ op: 'delta', seq: 2, kind: 'upsert', feature: veh('a', 2) })
    h.frame(16) // 16 ms after the last flush: deferred
    expect(h.flushed.length).toBe(1)
    for (let i = 0; i < 5; i++) h.frame(16)
    expect(h.flushed.length).toBe(1)
    h.frame(16) // now > 100 ms since the last flush
    expect(h.flushed.length).toBe(2)
  })

  it('tells change hooks about upserts and removals', () => {
    const h = harness()
    const seen = []
    h.store.changeHooks.add((id, f) => seen.push([id, f ? f.version : null]))
    h.store.handle({ op: 'snapshot', seq: 1, features: [veh('a', 1)] })
    h.store.handle({ op: 'delta', seq: 2, kind: 'upsert', feature: veh('a', 2) })
    h.store.handle({ op: 'delta', seq: 3, kind: 'remove', feature: veh('a', 2) })
    expect(seen).toEqual([['vehicles/a', 1], ['vehicles/a', 2], ['vehicles/a', null]])
  })
})

describe('LiveStore changes (incremental map updates)', () => {
  it('hands each flush the ids changed since the last one, or full after a snapshot', () => {
    const got = []
    const h = harness({ onFlush: (layer, feats, ch) => got.push({ layer, full: ch.full, ids: [...ch.ids].sort() }) })
    h.store.handle({ op: 'snapshot', seq: 1, features: [veh('a', 1), veh('b', 1)] })
    h.frame()
    expect(got).toEqual([{ layer: 'vehicles', full: true, ids: [] }])
    h.store.handle({ op: 'delta', seq: 2, kind: 'upsert', feature: veh('a', 2) })
    h.store.handle({ op: 'delta', seq: 3, kind: 'upsert', feature: veh('c', 1) })
    h.store.handle({ op: 'delta', seq: 4, kind: 'remove', feature: { id: 'vehicles/b', layer: 'vehicles', version: 1 } })
    h.store.handle({ op: 'delta', seq: 5, kind: 'upsert', feature: veh('a', 2) }) // stale: not a change
    h.frame()
    expect(got[1]).toEqual({ layer: 'vehicles', full: false, ids: ['vehicles/a', 'vehicles/b', 'vehicles/c'] })
    h.store.touch('vehicles') // interpolation only: nothing changed in the data
    h.frame()
    expect(got[2]).toEqual({ layer: 'vehicles', full: false, ids: [] })
    h.store.handle({ op: 'resync' })
    h.store.handle({ op: 'snapshot', seq: 9, features: [veh('d', 1)] })
    h.frame()
    expect(got[3]).toEqual({ layer: 'vehicles', full: true, ids: [] })
  })
})

describe('sourceWriter', () => {
  it('sends setData after a snapshot and updateData diffs after', async () => {
    const { sourceWriter } = await import('../src/op/sourcewriter.js')
    const calls = []
    const src = { setData: (d) => calls.push(['set', d.features.length]), updateData: (d) => calls.push(['diff', d.add.length, d.update.length, d.remove]) }
    const feats = new Map([['vehicles/a', veh('a', 1, 1, 1, { kind: 'patrol' })], ['vehicles/b', veh('b', 1)]])
    const w = sourceWriter(src, 'vehicles')
    const get = (id) => feats.get(id)
    const none = () => undefined
    w.flush([...feats.values()], { full: true, ids: new Set() }, get, none, [])
    feats.set('vehicles/c', veh('c', 1))
    feats.set('vehicles/a', veh('a', 2, 2, 2, { kind: 'patrol' }))
    feats.delete('vehicles/b')
    w.flush([...feats.values()], { full: false, ids: new Set(['vehicles/a', 'vehicles/b', 'vehicles/c']) }, get, none, [])
    w.flush([...feats.values()], { full: false, ids: new Set() }, get, (f) => [9, 9], ['vehicles/c']) // a glide step
    w.flush([...feats.values()], { full: false, ids: new Set() }, get, none, []) // nothing: no call
    expect(calls).toEqual([['set', 2], ['diff', 1, 1, ['vehicles/b']], ['diff', 0, 1, []]])
    expect(w.stats).toMatchObject({ setData: 1, updates: 2 })
  })
})
