import { describe, it, expect, vi, afterEach } from 'vitest'
import { LiveLink } from '../src/live.js'
import { LiveStore } from '../src/store.js'

// FakeWS records sockets and what they sent; tests open/close them by hand.
class FakeWS {
  static all = []
  constructor(url) {
    this.url = url
    this.sent = []
    this.readyState = 0
    FakeWS.all.push(this)
  }
  send(s) { this.sent.push(JSON.parse(s)) }
  close() { this.readyState = 3; this.onclose && this.onclose({ code: 1000 }) }
  open() { this.readyState = 1; this.onopen && this.onopen() }
  msg(m) { this.onmessage({ data: JSON.stringify(m) }) }
  drop() { this.readyState = 3; this.onclose && this.onclose({ code: 1006 }) }
}

afterEach(() => { FakeWS.all = []; vi.useRealTimers() })

describe('LiveLink', () => {
  it('subscribes with the view, re-subscribes for a snapshot on view change, resumes with since after a drop', () => {
    vi.useFakeTimers()
    const store = new LiveStore({ schedule: () => {} })
    const statuses = []
    const link = new LiveLink({ store, layers: ['vehicles', 'alerts'], url: () => 'ws://x/ws?access_token=t', WebSocket: FakeWS, onStatus: (s) => statuses.push(s), minBackoffMs: 100, maxBackoffMs: 1000 })
    link.setBBox([106, 29, 107, 30])
    link.start()
    const ws1 = FakeWS.all[0]
    expect(ws1.url).toContain('access_token=t')
    ws1.open()
    expect(ws1.sent[0]).toEqual({ op: 'subscribe', layers: ['vehicles', 'alerts'], bbox: [106, 29, 107, 30] })
    ws1.msg({ op: 'snapshot', seq: 10, features: [{ type: 'Feature', id: 'vehicles/a', layer: 'vehicles', version: 1, geometry: null, properties: {} }] })
    ws1.msg({ op: 'delta', seq: 12, kind: 'upsert', feature: { type: 'Feature', id: 'vehicles/a', layer: 'vehicles', version: 2, geometry: null, properties: {} } })
    expect(store.seq).toBe(12)
    // same bbox again: nothing sent
    link.setBBox([106, 29, 107, 30])
    expect(ws1.sent.length).toBe(1)
    // link drops: reconnecting after a backoff, then resume with since
    ws1.drop()
    expect(statuses.at(-1)).toBe('reconnecting')
    expect(FakeWS.all.length).toBe(1)
    vi.advanceTimersByTime(100)
    const ws2 = FakeWS.all[1]
    ws2.open()
    expect(statuses.at(-1)).toBe('live')
    expect(ws2.sent[0]).toEqual({ op: 'subscribe', layers: ['vehicles', 'alerts'], bbox: [106, 29, 107, 30], since: 12 })
    // a new view asks for a snapshot (no since)
    link.setBBox([106.1, 29, 107, 30])
    expect(ws2.sent[1].since).toBeUndefined()
    // resync from the server clears the store
    ws2.msg({ op: 'resync' })
    expect(store.count()).toBe(0)
    link.stop()
  })

  it('backs off exponentially up to the cap while the server is away', () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(0.999)
    const store = new LiveStore({ schedule: () => {} })
    const link = new LiveLink({ store, layers: ['vehicles'], url: () => 'ws://x/ws', WebSocket: FakeWS, minBackoffMs: 100, maxBackoffMs: 800 })
    link.start()
    const waits = []
    for (let i = 0; i < 6; i++) {
      const n = FakeWS.all.length
      FakeWS.all[n - 1].drop()
      let waited = 0
      while (FakeWS.all.length === n) { vi.advanceTimersByTime(10); waited += 10 }
      waits.push(waited)
    }
    expect(waits).toEqual([100, 200, 400, 800, 800, 800])
    link.stop()
    Math.random.mockRestore()
  })
})

describe('Interpolator.movingIds', () => {
  it('lists gliding ids, and a finished glide once more', async () => {
    const { Interpolator } = await import('../src/interp.js')
    const it2 = new Interpolator({ minMs: 100, maxMs: 1000 })
    it2.fix('a', [0, 0], 0)
    it2.fix('b', [0, 0], 0)
    it2.fix('a', [1, 1], 500) // a glides 500..1000
    expect(it2.movingIds(600)).toEqual(['a'])
    expect(it2.movingIds(1200)).toEqual(['a']) // ended since the last call: drawn at its fix
    expect(it2.movingIds(1300)).toEqual([])
  })
})
