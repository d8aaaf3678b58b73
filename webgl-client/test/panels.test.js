import { describe, it, expect } from 'vitest'
import { selectAlerts, selectIncidents, tierBBox, inTier, mineFirst, alertSince, WORLD_BBOX, padBBox } from '../src/panels.js'

const alert = (name, severity, state, first, extra = {}) => ({
  type: 'Feature', id: `alerts/${name}`, layer: 'alerts', version: 1, updated: '2026-11-23T10:00:00Z',
  geometry: { type: 'Point', coordinates: [106.5, 29.5] },
  properties: { rule: 'r', severity, state, tier: 'street', first, ...extra.properties },
  ...(extra.region ? { region: extra.region } : {}),
})

const incident = (name, state, sla, extra = {}) => ({
  type: 'Feature', id: `incidents/${name}`, layer: 'incidents', version: 1,
  geometry: { type: 'Point', coordinates: [106.5, 29.5] },
  properties: { type: 'garbage', state, ...(sla ? { sla } : {}), ...extra },
})

describe('selectAlerts', () => {
  it('drops closed alerts and sorts by severity (red first) then age (oldest first)', () => {
    const got = selectAlerts([
      alert('blue-old', 'blue', 'open', '2026-11-23T08:00:00Z'),
      alert('red-new', 'red', 'acked', '2026-11-23T09:30:00Z'),
      alert('red-closed', 'red', 'closed', '2026-11-23T07:00:00Z'),
      alert('orange', 'orange', 'open', '2026-11-23T09:00:00Z'),
      alert('red-old', 'red', 'open', '2026-11-23T09:00:00Z'),
      alert('green', 'green', 'open', '2026-11-23T06:00:00Z'),
      alert('yellow', 'yellow', 'acked', '2026-11-23T06:00:00Z'),
      alert('weird', 'purple', 'open', '2026-11-23T01:00:00Z'),
    ], { isCity: true })
    expect(got.map((f) => f.id.slice(7))).toEqual(['red-old', 'red-new', 'orange', 'yellow', 'blue-old', 'green', 'weird'])
  })

  it('orders equal severity and age by id, and undated alerts last within their severity', () => {
    const a = alert('b', 'red', 'open', '2026-11-23T09:00:00Z')
    const b = alert('a', 'red', 'open', '2026-11-23T09:00:00Z')
    const c = alert('undated', 'red', 'open', undefined)
    delete c.updated
    expect(selectAlerts([c, a, b], { isCity: true }).map((f) => f.id)).toEqual(['alerts/a', 'alerts/b', 'alerts/undated'])
  })

  it('keeps only alerts concerning the chosen district or street', () => {
    const feats = [
      alert('mine-by-path', 'red', 'open', '2026-11-23T09:00:00Z', { region: ['500000', '500103', '500103001'] }),
      alert('bridge', 'red', 'open', '2026-11-23T09:00:00Z', { region: ['500000', '500105'], properties: { regions: ['500000', '500103', '500105'] } }),
      alert('neighbour', 'red', 'open', '2026-11-23T09:00:00Z', { region: ['500000', '500106'] }),
      alert('unplaced', 'red', 'open', '2026-11-23T09:00:00Z'),
    ]
    expect(selectAlerts(feats, { code: '500103' }).map((f) => f.id.slice(7))).toEqual(['bridge', 'mine-by-path', 'unplaced'])
    expect(selectAlerts(feats, { code: '500103', isCity: false }).length).toBe(3)
    expect(selectAlerts(feats, { code: '500000', isCity: true }).length).toBe(4)
  })

  it('ages an alert from first, then tier_since, then updated', () => {
    expect(alertSince({ properties: { first: '2026-11-23T01:00:00Z', tier_since: '2026-11-23T02:00:00Z' }, updated: '2026-11-23T03:00:00Z' })).toBe(Date.parse('2026-11-23T01:00:00Z'))
    expect(alertSince({ properties: { tier_since: '2026-11-23T02:00:00Z' }, updated: '2026-11-23T03:00:00Z' })).toBe(Date.parse('2026-11-23T02:00:00Z'))
    expect(alertSince({ properties: {}, updated: '2026-11-23T03:00:00Z' })).toBe(Date.parse('2026-11-23T03:00:00Z'))
    expect(alertSince({ properties: {} })).toBeNaN()
  })
})

describe('selectIncidents', () => {
  const now = Date.parse('2026-11-23T10:00:00Z')
  it('drops closed incidents, puts running SLAs first by time left, then the rest by state', () => {
    const got = selectIncidents([
      incident('closed', 'closed'),
      incident('resolved', 'resolved'),
      incident('reported', 'reported'),
      incident('accept-30s', 'dispatched', { accept_by: '2026-11-23T10:00:30Z' }),
      incident('arrive-overdue', 'accepted', { accept_by: '2026-11-23T09:50:00Z', arrive_by: '2026-11-23T09:59:00Z' }),
      incident('report-9m', 'arrived', { report_by: '2026-11-23T10:09:00Z' }),
    ], now, { isCity: true })
    expect(got.map((x) => x.feature.id.slice(10))).toEqual(['arrive-overdue', 'accept-30s', 'report-9m', 'reported', 'resolved'])
    expect(got[0].sla).toMatchObject({ step: 'arrive', overdue: true, text: 'arrive -1:00' })
    expect(got[1].sla).toMatchObject({ step: 'accept', overdue: false, text: 'accept 0:30' })
    expect(got[3].sla).toBeNull()
  })

  it('filters by tier like alerts', () => {
    const got = selectIncidents([
      { ...incident('here', 'reported'), region: ['500000', '500103'] },
      { ...incident('there', 'reported'), region: ['500000', '500106'] },
    ], now, { code: '500103' })
    expect(got.map((x) => x.feature.id)).toEqual(['incidents/here'])
  })
})

describe('tierBBox', () => {
  const sq = (x0, y0, x1, y1) => ({ type: 'Polygon', coordinates: [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] })
  const regions = [
    { properties: { code: '500000', level: 'city' }, geometry: sq(106, 29, 107, 30) },
    { properties: { code: '500103', level: 'district' }, geometry: sq(106.5, 29.5, 106.6, 29.6) },
    { properties: { code: '500105', level: 'district' }, geometry: { type: 'MultiPolygon', coordinates: [sq(106.4, 29.4, 106.45, 29.45).coordinates, sq(107, 30, 107.2, 30.1).coordinates] } },
  ]
  it('is the chosen region bound for a district or street', () => {
    expect(tierBBox(regions, '500103')).toEqual([106.5, 29.5, 106.6, 29.6])
    expect(tierBBox(regions, '500105')).toEqual([106.4, 29.4, 107.2, 30.1])
  })
  it('is the bound of all regions for the city, an unknown code, or the world with none', () => {
    expect(tierBBox(regions, '500000')).toEqual([106, 29, 107.2, 30.1])
    expect(tierBBox(regions, 'nope')).toEqual([106, 29, 107.2, 30.1])
    expect(tierBBox([], '500000')).toEqual(WORLD_BBOX)
  })
})

describe('inTier', () => {
  it('takes everything for the city and matches path or regions otherwise', () => {
    expect(inTier({ region: ['x'] }, '500103', true)).toBe(true)
    expect(inTier({ region: ['500000', '500103'], properties: {} }, '500103')).toBe(true)
    expect(inTier({ properties: { regions: ['500103'] } }, '500103')).toBe(true)
    expect(inTier({ region: ['500000', '500106'], properties: {} }, '500103')).toBe(false)
    expect(inTier({ properties: {} }, '500103')).toBe(true)
  })
})

describe('mineFirst', () => {
  it('lists my incidents first, each group keeping nearest-first order', () => {
    const f = (id, assignee) => ({ id, properties: { assignee } })
    const list = [f('a', 'workers/x'), f('b', 'workers/me'), f('c'), f('d', 'workers/me')]
    expect(mineFirst(list, 'workers/me').map((x) => x.id)).toEqual(['b', 'd', 'a', 'c'])
    expect(mineFirst(list, '').map((x) => x.id)).toEqual(['a', 'b', 'c', 'd'])
    expect(mineFirst(list, 'workers/me')).not.toBe(list)
  })
})

describe('padBBox', () => {
  it('grows a bbox on every side and clamps to the world', () => {
    expect(padBBox([106, 29, 107, 30], 0.5)).toEqual([105.5, 28.5, 107.5, 30.5])
    expect(padBBox([-179, -89, 179, 89], 1)).toEqual([-180, -90, 180, 90])
  })
})
