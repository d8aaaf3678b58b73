import { describe, it, expect } from 'vitest'
import { filterAlerts, groupAlerts, visibleRows, rankDistricts, districtsOf } from '../src/triage.js'

const al = (name, rule, tier, severity, state = 'open', region = ['500000', '500103', '500103001'], regions) => ({
  id: `alerts/${name}`, region, properties: { rule, tier, severity, state, ...(regions ? { regions } : {}) },
})

const A = [
  al('a1', 'septic-gas', 'street', 'yellow'),
  al('a2', 'septic-gas', 'street', 'red', 'acked', ['500000', '500105', '500105002']),
  al('a3', 'septic-gas', 'district', 'orange'),
  al('a4', 'device-offline', 'street', 'blue'),
  al('a5', 'device-offline', 'street', 'blue', 'open', ['500000', '500108', '500108003']),
  al('a6', 'bridge-muck', 'street', 'orange', 'open', ['500000', '500103'], ['500103', '500105']),
]

describe('districtsOf', () => {
  it('takes district codes from the region path and the regions an alert concerns', () => {
    expect([...districtsOf(A[5])].sort()).toEqual(['500103', '500105'])
    expect([...districtsOf(A[0])]).toEqual(['500103'])
    expect([...districtsOf({ properties: {} })]).toEqual([])
  })
})

describe('filterAlerts', () => {
  it('filters by colour, tier and district; empty filters keep all', () => {
    expect(filterAlerts(A).length).toBe(6)
    expect(filterAlerts(A, { colours: new Set(['blue']) }).map((f) => f.id)).toEqual(['alerts/a4', 'alerts/a5'])
    expect(filterAlerts(A, { tier: 'district' }).map((f) => f.id)).toEqual(['alerts/a3'])
    expect(filterAlerts(A, { district: '500105' }).map((f) => f.id)).toEqual(['alerts/a2', 'alerts/a6'])
    expect(filterAlerts(A, { colours: new Set(['orange', 'red']), district: '500103' }).map((f) => f.id)).toEqual(['alerts/a3', 'alerts/a6'])
  })
})

describe('groupAlerts', () => {
  it('groups by rule and tier with counts per colour, worst group first', () => {
    const g = groupAlerts(A)
    expect(g.map((x) => x.key)).toEqual(['septic-gas|street', 'septic-gas|district', 'bridge-muck|street', 'device-offline|street'])
    const sg = g[0]
    expect(sg).toMatchObject({ rule: 'septic-gas', tier: 'street', count: 2, open: 1, worst: 'red', byColour: { yellow: 1, red: 1 } })
    expect(g[3]).toMatchObject({ count: 2, open: 2, worst: 'blue', byColour: { blue: 2 } })
  })
  it('orders equal colours by higher tier, then size, then rule name', () => {
    const g = groupAlerts([al('x', 'b', 'street', 'orange'), al('y', 'a', 'street', 'orange'), al('z', 'c', 'city', 'orange'), al('w', 'b', 'street', 'orange')])
    expect(g.map((x) => x.key)).toEqual(['c|city', 'b|street', 'a|street'])
  })
})

describe('visibleRows', () => {
  it('says how many rows a group hides', () => {
    const g = groupAlerts(A)[3]
    expect(visibleRows(g, 1)).toMatchObject({ hidden: 1 })
    expect(visibleRows(g, 1).shown.map((f) => f.id)).toEqual(['alerts/a4'])
    expect(visibleRows(g, 10).hidden).toBe(0)
  })
})

describe('rankDistricts', () => {
  it('weighs red most, counts overdue incidents, ranks quiet districts last', () => {
    const ds = [{ code: '500103', name: '渝中区' }, { code: '500105', name: '江北区' }, { code: '500108', name: '南岸区' }, { code: '500109', name: '北碚区' }]
    const r = rankDistricts(ds, A, [{ region: ['500000', '500108', '500108001'] }])
    // one red and one orange (12) outrank four lesser alerts (11)
    expect(r.map((x) => x.code)).toEqual(['500105', '500103', '500108', '500109'])
    expect(r[0]).toMatchObject({ alerts: 2, red: 1, score: 8 + 4 })
    expect(r[1]).toMatchObject({ alerts: 4, red: 0, score: 2 + 4 + 1 + 4 })
    expect(r[2]).toMatchObject({ alerts: 1, overdue: 1, score: 1 + 3 })
    expect(r[3].score).toBe(0)
  })
})

describe('hourlySeries', () => {
  it('reads the server hourly indicators into sparkline series', async () => {
    const { hourlySeries, workerCounts, sparkline } = await import('../src/op/figures.js')
    const h = { buckets: [
      { alerts_raised: {}, incidents_entered: {}, sla: {}, gauges: null }, // before the server counted: dropped
      { alerts_raised: { red: 1, blue: 2 }, incidents_entered: { reported: 4, accepted: 3 }, sla: { accept: { met: 3, breached: 1 } } },
      { alerts_raised: {}, incidents_entered: {}, sla: {} },
    ] }
    expect(hourlySeries(h)).toEqual({ buckets: 2, raised: [3, 0], incidents: [4, 0], sla: [0.75, null] })
    expect(workerCounts({ available: 5, busy: 2, offline: 3 })).toEqual({ online: 7, busy: 2 })
    expect(sparkline([1])).toBe('')
    expect(sparkline([0, 2, 1])).toContain('<polyline')
  })
})
