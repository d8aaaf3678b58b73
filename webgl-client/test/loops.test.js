import { describe, it, expect } from 'vitest'
import { cityLocalToISO, cityLocalValue, defaultDue, dueText, dueChoice, span, insideRegion, tierTargets, pointInGeometry, regionAt, toggle, rollupRows, ratio, nextStep, isOverdue, myTasks, tasksOf, caseEvidence, caseDistricts, tokenRegion } from '../src/loops.js'
import { streetOf, tasksFor } from '../src/field/tasks.js'

const sq = (x, y, d = 1) => ({ type: 'Polygon', coordinates: [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]] })
const region = (code, level, parent, geometry) => ({ properties: { code, level, parent, name: 'r' + code }, geometry })
const regions = [
  region('500000', 'city', '', sq(0, 0, 4)),
  region('500103', 'district', '500000', sq(0, 0, 2)),
  region('500105', 'district', '500000', sq(2, 0, 2)),
  region('500105001', 'street', '500105', sq(2, 0, 1)),
  region('500105002', 'street', '500105', sq(3, 0, 1)),
  region('500103001', 'street', '500103', sq(0, 0, 1)),
]
const task = (p) => ({ id: 'tasks/' + (p.id || 'x'), properties: { state: 'issued', ...p } })

describe('due times in Beijing time', () => {
  it('reads a datetime-local value as +08:00 whatever the browser zone', () => {
    expect(cityLocalToISO('2026-12-03T18:00')).toBe('2026-12-03T18:00:00+08:00')
    expect(Date.parse(cityLocalToISO('2026-12-03T18:00'))).toBe(Date.parse('2026-12-03T10:00:00Z'))
    expect(cityLocalToISO('2026-12-03T18:00:30')).toBe('2026-12-03T18:00:30+08:00')
    expect(cityLocalToISO('')).toBe('')
    expect(cityLocalToISO('tomorrow')).toBe('')
  })
  it('shows a time as the city clock reads it, and defaults to a full hour a day ahead', () => {
    expect(cityLocalValue(Date.parse('2026-12-03T10:05:59Z'))).toBe('2026-12-03T18:05')
    expect(defaultDue(Date.parse('2026-12-03T10:05:00Z'))).toBe('2026-12-04T19:00')
    expect(defaultDue(Date.parse('2026-12-03T10:00:00Z'), 2)).toBe('2026-12-03T20:00')
  })
  it('takes the 24-hour text the form shows, and offers quick choices on the city clock', () => {
    expect(cityLocalToISO('2026-12-03 8:30')).toBe('2026-12-03T08:30:00+08:00')
    expect(cityLocalToISO(dueText('2026-12-03T18:00'))).toBe('2026-12-03T18:00:00+08:00')
    const now = Date.parse('2026-12-03T07:10:00Z') // 15:10 in Chongqing
    expect(dueChoice('2h', now)).toBe('2026-12-03T18:00')
    expect(dueChoice('today18', now)).toBe('2026-12-03T18:00')
    expect(dueChoice('today18', Date.parse('2026-12-03T11:00:00Z'))).toBe('2026-12-04T18:00') // 19:00: tomorrow's
    expect(dueChoice('tomorrow12', Date.parse('2026-12-03T17:00:00Z'))).toBe('2026-12-05T12:00') // 01:00 on the 4th in the city
    expect(dueChoice('3d', now)).toBe('2026-12-06T16:00')
  })
  it('spans in days, hours and minutes', () => {
    expect(span(-(2 * 86400e3 + 3 * 3600e3 + 5 * 60e3 + 59e3))).toEqual({ d: 2, h: 3, m: 5 })
    expect(span(90e3)).toEqual({ d: 0, h: 0, m: 1 })
  })
})

describe('directive targets', () => {
  it('by tier: all districts of the city, or the streets of one district', () => {
    expect(tierTargets(regions, { mode: 'districts', issuer: '500000' })).toEqual(['500103', '500105'])
    expect(tierTargets(regions, { mode: 'streets', issuer: '500000', district: '500105' })).toEqual(['500105001', '500105002'])
    expect(tierTargets(regions, { mode: 'streets', issuer: '500105', district: '500105' })).toEqual(['500105001', '500105002'])
    expect(tierTargets(regions, { mode: 'districts', issuer: '500105' })).toEqual([])
  })
  it('by a click: the region of the level under the point, toggled', () => {
    expect(regionAt(regions, [3.5, 0.5], 'street')).toBe('500105002')
    expect(regionAt(regions, [3.5, 0.5], 'district')).toBe('500105')
    expect(regionAt(regions, [9, 9], 'district')).toBe('')
    expect(toggle(['a'], 'b')).toEqual(['a', 'b'])
    expect(toggle(['a', 'b'], 'a')).toEqual(['b'])
  })
  it('point in polygon honours holes and multipolygons', () => {
    const holed = { type: 'Polygon', coordinates: [sq(0, 0, 4).coordinates[0], sq(1, 1, 2).coordinates[0]] }
    expect(pointInGeometry([0.5, 0.5], holed)).toBe(true)
    expect(pointInGeometry([2, 2], holed)).toBe(false)
    expect(pointInGeometry([5.5, 5.5], { type: 'MultiPolygon', coordinates: [sq(0, 0).coordinates, sq(5, 5).coordinates] })).toBe(true)
    expect(pointInGeometry([0, 0], null)).toBe(false)
  })
  it('inside is strict; the city holds every other code', () => {
    expect(insideRegion('500105', '500000')).toBe(true)
    expect(insideRegion('500000', '500000')).toBe(false)
    expect(insideRegion('500105001', '500105')).toBe(true)
    expect(insideRegion('500105', '500105')).toBe(false)
    expect(insideRegion('500103001', '500105')).toBe(false)
  })
})

describe('roll-up', () => {
  const view = {
    targets: [
      { code: '500105', name: '渝中区', counts: { total: 2, acked: 1, reported: 0, overdue: 1 }, task: task({ id: 'a' }), children: [
        { code: '500105001', counts: { total: 1, acked: 1 }, task: task({ id: 'b', state: 'acked' }) },
        { code: '500105002', counts: { total: 1, acked: 0 }, task: task({ id: 'c' }) },
      ] },
      { code: '500103', counts: { total: 1, acked: 0 }, task: task({ id: 'd' }) },
    ],
  }
  it('lists targets, and a forwarded target\'s children only when opened', () => {
    expect(rollupRows(view, () => false).map((r) => [r.code, r.depth, r.forwarded])).toEqual([['500105', 0, true], ['500103', 0, false]])
    expect(rollupRows(view, (c) => c === '500105').map((r) => r.code)).toEqual(['500105', '500105001', '500105002', '500103'])
    expect(rollupRows(null)).toEqual([])
  })
  it('counts as n/m', () => {
    expect(ratio({ total: 3, acked: 2 }, 'acked')).toBe('2/3')
    expect(ratio({}, 'reported')).toBe('0/0')
  })
})

describe('task steps', () => {
  it('a directive task asks for what it requires', () => {
    expect(nextStep(task({ kind: 'directive' }))).toBe('ack')
    expect(nextStep(task({ kind: 'directive', state: 'acked' }))).toBe('report')
    expect(nextStep(task({ kind: 'directive', state: 'acked', requires: ['ack'] }))).toBe(null)
    expect(nextStep(task({ kind: 'directive', requires: ['report'] }))).toBe('report')
    expect(nextStep(task({ kind: 'directive', state: 'reported' }))).toBe(null)
  })
  it('rectification and enforcement: ack, report; closing is the operator\'s', () => {
    expect(nextStep(task({ kind: 'rectification' }))).toBe('ack')
    expect(nextStep(task({ kind: 'rectification', state: 'acked' }))).toBe('report')
    expect(nextStep(task({ kind: 'enforcement', state: 'closed' }))).toBe(null)
  })
  it('overdue: the server\'s flag, or the clock past due with a step left', () => {
    const now = Date.parse('2026-12-03T10:00:00Z')
    expect(isOverdue(task({ kind: 'rectification', overdue: true }), now)).toBe(true)
    expect(isOverdue(task({ kind: 'rectification', due: '2026-12-03T09:00:00Z' }), now)).toBe(true)
    expect(isOverdue(task({ kind: 'rectification', due: '2026-12-03T11:00:00Z' }), now)).toBe(false)
    expect(isOverdue(task({ kind: 'directive', state: 'reported', due: '2026-12-03T09:00:00Z' }), now)).toBe(false)
    expect(isOverdue(task({ kind: 'rectification', state: 'closed', overdue: true }), now)).toBe(false)
  })
  it('my tasks: only those with a step left, overdue first, then the soonest due', () => {
    const now = Date.parse('2026-12-03T10:00:00Z')
    const l = [
      task({ id: 'late', kind: 'rectification', due: '2026-12-03T11:00:00Z' }),
      task({ id: 'soon', kind: 'directive', due: '2026-12-03T10:30:00Z' }),
      task({ id: 'over', kind: 'rectification', due: '2026-12-03T09:00:00Z' }),
      task({ id: 'done', kind: 'directive', state: 'reported', due: '2026-12-03T09:30:00Z' }),
    ]
    expect(myTasks(l, now).map((f) => f.id)).toEqual(['tasks/over', 'tasks/soon', 'tasks/late'])
  })
  it('the tasks about a subject, open first', () => {
    const l = [task({ id: 'a', subject: 'buildings/b', kind: 'rectification', state: 'closed', issued_at: '2' }), task({ id: 'b', subject: 'buildings/b', kind: 'rectification', issued_at: '1' }), task({ id: 'c', subject: 'buildings/x', kind: 'rectification' })]
    expect(tasksOf(l, 'buildings/b').map((f) => f.id)).toEqual(['tasks/b', 'tasks/a'])
    expect(tasksOf(l, 'buildings/b', 'enforcement')).toEqual([])
  })
})

describe('enforcement evidence', () => {
  it('splits the track, the captures in time order and the photos; the districts of the bridge', () => {
    const p = { evidence: [
      { type: 'capture', camera: 'devices/cam-2', ts: '2026-12-03T00:00:20Z', distance_m: 12 },
      { type: 'track', geometry: { type: 'LineString', coordinates: [[0, 0], [1, 1]] }, times: ['a', 'b'] },
      { type: 'capture', camera: 'devices/cam-1', ts: '2026-12-03T00:00:10Z', distance_m: 30 },
      { type: 'photo', id: 'x.png' },
    ], regions: ['500103', '500105', '500105', '500000', '500105001'] }
    const e = caseEvidence(p)
    expect(e.track.times.length).toBe(2)
    expect(e.captures.map((c) => c.camera)).toEqual(['devices/cam-1', 'devices/cam-2'])
    expect(e.photos.length).toBe(1)
    expect(caseDistricts(p)).toEqual(['500103', '500105'])
    expect(caseEvidence({}).track).toBe(null)
  })
})

describe('tokens and my region', () => {
  it('reads the region a token carries (unverified), empty for anything else', () => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
    expect(tokenRegion(`${b64({ alg: 'HS256' })}.${b64({ role: 'operator', region: '500105' })}.sig`)).toBe('500105')
    expect(tokenRegion('nope')).toBe('')
    expect(tokenRegion(null)).toBe('')
  })
  it('a worker\'s street, and the tasks of a region', () => {
    expect(streetOf({ region: ['500000', '500105', '500105002'] })).toBe('500105002')
    expect(streetOf({ region: ['500000', '500105'] })).toBe('500105')
    expect(streetOf({})).toBe('')
    const l = [task({ id: 'a', assignee: '500105002' }), task({ id: 'b', assignee: '500105' }), task({ id: 'c', assignee: '500103', regions: ['500103', '500105'] })]
    expect(tasksFor(l, '500105002').map((f) => f.id)).toEqual(['tasks/a'])
    expect(tasksFor(l, '500105').map((f) => f.id)).toEqual(['tasks/a', 'tasks/b', 'tasks/c'])
  })
})
