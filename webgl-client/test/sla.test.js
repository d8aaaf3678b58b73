import { describe, it, expect } from 'vitest'
import { formatCountdown, slaStatus, runningDeadline, formatAge } from '../src/sla.js'
import { Interpolator } from '../src/interp.js'

describe('formatCountdown', () => {
  it('formats m:ss, h:mm:ss and overdue', () => {
    expect(formatCountdown(0)).toBe('0:00')
    expect(formatCountdown(59_999)).toBe('0:59')
    expect(formatCountdown(60_000)).toBe('1:00')
    expect(formatCountdown(245_000)).toBe('4:05')
    expect(formatCountdown(3_723_000)).toBe('1:02:03')
    expect(formatCountdown(-12_000)).toBe('-0:12')
    expect(formatCountdown(-11_200)).toBe('-0:12') // overdue rounds away from zero
    expect(formatCountdown(-3_600_000)).toBe('-1:00:00')
  })
})

describe('slaStatus', () => {
  const sla = { accept_by: '2026-11-23T08:01:00Z', arrive_by: '2026-11-23T08:06:00Z', report_by: '2026-11-23T08:16:00Z' }
  const at = (s) => Date.parse(s)
  it('picks the deadline of the state', () => {
    expect(slaStatus({ state: 'dispatched', sla }, at('2026-11-23T08:00:18Z'))).toMatchObject({ step: 'accept', text: 'accept 0:42', overdue: false })
    expect(slaStatus({ state: 'accepted', sla }, at('2026-11-23T08:01:00Z'))).toMatchObject({ text: 'arrive 5:00' })
    expect(slaStatus({ state: 'arrived', sla }, at('2026-11-23T08:17:30Z'))).toMatchObject({ text: 'report -1:30', overdue: true })
  })
  it('has none when nothing runs', () => {
    expect(slaStatus({ state: 'reported', sla: {} }, 0)).toBeNull()
    expect(slaStatus({ state: 'resolved', sla }, 0)).toBeNull()
    expect(slaStatus({ state: 'dispatched' }, 0)).toBeNull()
    expect(runningDeadline({ state: 'dispatched', sla: { accept_by: 'nonsense' } })).toBeNull()
  })
  it('formats ages', () => {
    const now = at('2026-11-23T08:00:00Z')
    expect(formatAge('2026-11-23T07:59:30Z', now)).toBe('30s')
    expect(formatAge('2026-11-23T07:55:00Z', now)).toBe('5m')
    expect(formatAge('2026-11-23T05:00:00Z', now)).toBe('3h')
    expect(formatAge('bad', now)).toBe('')
  })
})

describe('Interpolator', () => {
  it('glides from the drawn position to the new fix over the fix interval', () => {
    const ip = new Interpolator({ minMs: 100, maxMs: 2000 })
    ip.fix('v', [0, 0], 0)
    expect(ip.position('v', 0)).toEqual([0, 0])
    ip.fix('v', [10, 20], 1000)
    expect(ip.moving(1500)).toBe(true)
    expect(ip.position('v', 1500)).toEqual([5, 10])
    expect(ip.position('v', 2000)).toEqual([10, 20])
    expect(ip.moving(2000)).toBe(false)
    // a fix mid-glide starts from where it is drawn, not from the old fix
    ip.fix('v', [20, 20], 2500) // gap 1500 ms: glide [10,20] -> [20,20] over 1.5 s
    expect(ip.position('v', 3000)[0]).toBeCloseTo(10 + 10 / 3)
    ip.fix('v', [30, 20], 3000) // gap 500 ms: glide from the drawn [13.33,20]
    expect(ip.position('v', 3250)[0]).toBeCloseTo((10 + 10 / 3 + 30) / 2)
    ip.remove('v')
    expect(ip.position('v', 3250)).toBeUndefined()
  })
})
