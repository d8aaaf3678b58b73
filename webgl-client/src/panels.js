// What the operator's alerts and incidents panels list, as pure functions of
// the tier store's features and the time, so vitest checks them without a
// DOM. The panels follow the chosen tier (city / district / street), not the
// map view: a second websocket subscribes with the tier region's bbox
// (tierBBox), and inTier then drops what that rectangle catches from a
// neighbouring region.

import { slaStatus } from './sla.js'

/** Severity rank: red (major) first ... green (low) last; unknown after all. */
export const SEVERITY_RANK = { red: 1, orange: 2, yellow: 3, blue: 4, green: 5 }

/** The whole world: the tier subscription before any region is known. */
export const WORLD_BBOX = [-180, -90, 180, 90]

/** Bounding box [w,s,e,n] of one GeoJSON geometry, or null. */
function boundOf(g) {
  if (!g) return null
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity
  const walk = (c) => {
    if (!Array.isArray(c)) return
    if (typeof c[0] === 'number') {
      if (c[0] < w) w = c[0]
      if (c[0] > e) e = c[0]
      if (c[1] < s) s = c[1]
      if (c[1] > n) n = c[1]
    } else c.forEach(walk)
  }
  if (g.type === 'GeometryCollection') (g.geometries || []).forEach((x) => walk(x.coordinates))
  else walk(g.coordinates)
  return isFinite(w) ? [w, s, e, n] : null
}

/**
 * The bbox the tier subscription asks for: the bound of the chosen region's
 * geometry; for a city-level region (or code "500000"), or when the region is
 * unknown, the bound of all regions; WORLD_BBOX when there are none.
 * @param {Array<{properties:{code:string, level?:string}, geometry:any}>} regions
 * @param {string} code region code of the chosen tier
 * @returns {number[]} [w,s,e,n]
 */
export function tierBBox(regions, code) {
  const f = regions.find((r) => r.properties && r.properties.code === code)
  if (f && f.properties.level !== 'city') {
    const b = boundOf(f.geometry)
    if (b) return b
  }
  let out = null
  for (const r of regions) {
    const b = boundOf(r.geometry)
    if (!b) continue
    out = out ? [Math.min(out[0], b[0]), Math.min(out[1], b[1]), Math.max(out[2], b[2]), Math.max(out[3], b[3])] : b
  }
  return out || WORLD_BBOX.slice()
}

/**
 * Whether a feature belongs to the tier `code`. The city tier (isCity) takes
 * everything. Otherwise the feature's region path (`region`) or, for alerts,
 * the regions it concerns (`properties.regions`, e.g. both districts of a
 * bridge) must name the code; a feature carrying neither is kept, since the
 * bbox subscription already placed it near the region.
 */
export function inTier(f, code, isCity) {
  if (isCity || !code) return true
  const path = Array.isArray(f.region) ? f.region : []
  const regs = Array.isArray(f.properties && f.properties.regions) ? f.properties.regions : []
  if (path.length === 0 && regs.length === 0) return true
  return path.includes(code) || regs.includes(code)
}

/** Milliseconds since epoch of the first parseable timestamp, else NaN. */
function firstTime(...vals) {
  for (const v of vals) {
    if (v == null) continue
    const t = new Date(v).getTime()
    if (!isNaN(t)) return t
  }
  return NaN
}

/** When an alert started: its first event, else when it reached its tier, else its last update. */
export function alertSince(f) {
  const p = f.properties || {}
  return firstTime(p.first, p.opened_at, p.tier_since, f.updated)
}

/**
 * The alerts panel: alerts not closed (open or acked) of the tier, sorted by
 * severity (red first) then age (oldest first: the longest unhandled on top),
 * then id for a stable order.
 * @param {object[]} features alerts layer of the tier store
 * @param {{code?:string, isCity?:boolean}} [tier]
 */
export function selectAlerts(features, tier = {}) {
  const out = features.filter((f) => f && f.properties && f.properties.state !== 'closed' && inTier(f, tier.code, tier.isCity))
  const rank = (f) => SEVERITY_RANK[f.properties.severity] || 9
  const age = (f) => { const t = alertSince(f); return isNaN(t) ? Infinity : t }
  out.sort((a, b) => rank(a) - rank(b) || age(a) - age(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return out
}

const INCIDENT_ORDER = { reported: 0, dispatched: 1, accepted: 2, arrived: 3, resolved: 4 }

/**
 * The incidents panel: incidents not closed of the tier, each with its SLA
 * countdown at `now` (null when no deadline runs). Those with a running
 * deadline come first, least time left (most overdue) first; then the rest
 * by state (reported before resolved) and id.
 * @param {object[]} features incidents layer of the tier store
 * @param {number} now milliseconds since epoch
 * @param {{code?:string, isCity?:boolean}} [tier]
 * @returns {{feature:object, sla:ReturnType<typeof slaStatus>}[]}
 */
export function selectIncidents(features, now, tier = {}) {
  const out = []
  for (const f of features) {
    if (!f || !f.properties || f.properties.state === 'closed' || !inTier(f, tier.code, tier.isCity)) continue
    out.push({ feature: f, sla: slaStatus(f.properties, now) })
  }
  const left = (x) => (x.sla ? x.sla.leftMs : Infinity)
  const st = (x) => INCIDENT_ORDER[x.feature.properties.state] ?? 9
  out.sort((a, b) => left(a) - left(b) || st(a) - st(b) || (a.feature.id < b.feature.id ? -1 : a.feature.id > b.feature.id ? 1 : 0))
  return out
}

/**
 * The field view's list: incidents assigned to `workerId` ("workers/NAME")
 * first, then the others, each group keeping the given (nearest-first) order.
 */
export function mineFirst(features, workerId) {
  if (!workerId) return features.slice()
  const mine = [], rest = []
  for (const f of features) ((f.properties || {}).assignee === workerId ? mine : rest).push(f)
  return mine.concat(rest)
}

/**
 * bbox [w,s,e,n] grown by `k` of its width and height on each side,
 * clamped to valid lon/lat: the map subscribes to a margin around the
 * view so that small pans stay inside what the client already holds.
 */
export function padBBox(b, k) {
  const dx = (b[2] - b[0]) * k, dy = (b[3] - b[1]) * k
  const c = (v, lo, hi) => Math.max(lo, Math.min(hi, v))
  return [c(b[0] - dx, -180, 180), c(b[1] - dy, -90, 90), c(b[2] + dx, -180, 180), c(b[3] + dy, -90, 90)]
}
