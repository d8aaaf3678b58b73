import { describe, it, expect, afterEach, vi } from 'vitest'
import { LiveLink } from '../src/live.js'
import { LiveStore } from '../src/store.js'

class FakeWS {
  static all = []
  constructor(url) { this.url = url; this.sent = []; this.readyState = 0; FakeWS.all.push(this) }
  send(s) { this.sent.push(JSON.parse(s)) }
  close() { this.readyState = 3; this.onclose && this.onclose({ code: 1000 }) }
  open() { this.readyState = 1; this.onopen && this.onopen() }
  msg(m) { this.onmessage({ data: JSON.stringify(m) }) }
}

afterEach(() => { FakeWS.all = []; vi.useRealTimers() })

const veh = (v, x) => ({ type: 'Feature', id: 'vehicles/a', layer: 'vehicles', version: v, geometry: { type: 'Point', coordinates: [x, 29] }, properties: {} })

describe('replay over the link', () => {
  it('subscribes with at/speed/live, applies replayed deltas whatever their seq, follows the clock, re-subscribes at the replay clock, returns to live', () => {
    vi.useFakeTimers()
    vi.setSystemTime(Date.parse('2026-05-01T10:00:00Z'))
    const store = new LiveStore({ schedule: () => {} })
    const link = new LiveLink({ store, layers: ['vehicles'], url: () => 'ws://x/ws', WebSocket: FakeWS })
    link.setBBox([106, 29, 107, 30])
    link.start()
    const ws = FakeWS.all[0]
    ws.open()
    link.setReplay({ at: '2026-05-01T08:00:00Z', speed: 60, live: true })
    expect(ws.sent[1]).toEqual({ op: 'subscribe', layers: ['vehicles'], bbox: [106, 29, 107, 30], at: '2026-05-01T08:00:00.000Z', speed: 60, live: true })
    ws.msg({ op: 'snapshot', seq: 0, replay: true, at: '2026-05-01T08:00:00Z', features: [veh(1, 106.1)] })
    // a late fix has a lower seq than the one before it: still applied
    ws.msg({ op: 'delta', replay: true, at: '2026-05-01T08:00:10Z', seq: 50, kind: 'upsert', feature: veh(2, 106.2) })
    ws.msg({ op: 'delta', replay: true, at: '2026-05-01T08:00:20Z', seq: 40, kind: 'upsert', feature: veh(3, 106.3) })
    expect(store.get('vehicles/a').geometry.coordinates[0]).toBe(106.3)
    ws.msg({ op: 'clock', at: '2026-05-01T08:01:00Z', speed: 60, paused: false })
    vi.advanceTimersByTime(1000)
    expect(link.replayNow()).toBe(Date.parse('2026-05-01T08:02:00Z'))
    link.send({ op: 'pause' })
    expect(ws.sent[2]).toEqual({ op: 'pause' })
    ws.msg({ op: 'clock', at: '2026-05-01T08:02:00Z', speed: 60, paused: true })
    vi.advanceTimersByTime(5000)
    expect(link.replayNow()).toBe(Date.parse('2026-05-01T08:02:00Z'))
    // a pan re-subscribes at the replay clock, still paused
    link.setBBox([106, 29, 107.5, 30])
    expect(ws.sent[3]).toMatchObject({ op: 'subscribe', at: '2026-05-01T08:02:00.000Z', speed: 60, live: true })
    expect(ws.sent[4]).toEqual({ op: 'pause' })
    // the server hands over to live
    ws.msg({ op: 'live' })
    expect(link.replay).toBe(null)
    link.setBBox([106, 29, 107, 30])
    expect(ws.sent[5]).toEqual({ op: 'subscribe', layers: ['vehicles'], bbox: [106, 29, 107, 30] })
  })
})
