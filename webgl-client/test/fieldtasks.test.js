import { describe, it, expect } from 'vitest'
import { current, actionsFor, isMine, mergeById } from '../src/field/tasks.js'
import { shouldSend, telemetryLine, metres } from '../src/field/duty.js'

const inc = (id, state, assignee, dispatched_at = '2026-12-02T10:00:00Z') => ({ id, properties: { state, assignee, dispatched_at } })

describe('field tasks', () => {
  it('offers actions only on my own incidents, one step at a time', () => {
    expect(actionsFor(inc('a', 'dispatched', 'workers/w1'), 'w1')).toEqual(['accept'])
    expect(actionsFor(inc('a', 'dispatched', 'workers/w2'), 'w1')).toEqual([])
    expect(actionsFor(inc('a', 'accepted', 'workers/w1'), 'w1')).toEqual(['arrive'])
    expect(actionsFor(inc('a', 'resolved', 'workers/w1'), 'w1')).toEqual([])
    expect(isMine(inc('a', 'dispatched', 'workers/w1'), '')).toBe(false)
  })
  it('picks the incident furthest along, then the oldest', () => {
    const l = [inc('a', 'dispatched', 'workers/w1', '2026-12-02T09:00:00Z'), inc('b', 'accepted', 'workers/w1'), inc('c', 'arrived', 'workers/w2')]
    expect(current(l, 'w1').id).toBe('b')
    expect(current([inc('x', 'dispatched', 'workers/w1', '2026-12-02T11:00:00Z'), l[0]], 'w1').id).toBe('a')
    expect(current(l, 'w9')).toBe(null)
  })
  it('merges lists by id', () => {
    expect(mergeById([inc('a', 'reported')], [inc('a', 'dispatched'), inc('b', 'reported')]).map((f) => f.properties.state)).toEqual(['dispatched', 'reported'])
  })
})

describe('field duty', () => {
  const fix = (t, lon) => ({ t, at: [lon, 29.5] })
  it('sends the first fix, then on movement or after a quiet spell', () => {
    expect(shouldSend(null, fix(0, 106.5))).toBe(true)
    expect(shouldSend(fix(0, 106.5), fix(1000, 106.501))).toBe(false) // too soon
    expect(shouldSend(fix(0, 106.5), fix(4000, 106.501))).toBe(true) // ~97 m
    expect(shouldSend(fix(0, 106.5), fix(4000, 106.50001))).toBe(false) // 1 m
    expect(shouldSend(fix(0, 106.5), fix(31000, 106.5))).toBe(true)
  })
  it('writes a CONTRACT §3 line stamped with the fix time', () => {
    const o = JSON.parse(telemetryLine('w1', { t: Date.parse('2026-12-02T10:00:00Z'), at: [106.123456789, 29.5], speed: 1, heading: null }))
    expect(o).toEqual({ id: 'w1', ts: '2026-12-02T10:00:00.000Z', lon: 106.1234568, lat: 29.5, speed_kmh: 3.6 })
    expect(Math.round(metres([106.5, 29.5], [106.501, 29.5]))).toBe(97)
  })
})
