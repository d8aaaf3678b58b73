// Alert triage for the operator's wall screen (issue 14 item 3), as pure
// functions so vitest checks them without a DOM: filter the tier's alerts by
// colour, tier and district, group them by rule and tier with counts per
// colour, and rank districts by what is open in them.
import { SEVERITY_RANK, alertSince } from './panels.js'

/** Colour weights of the district ranking: a red alert outweighs five blue ones. */
export const COLOUR_WEIGHT = { red: 8, orange: 4, yellow: 2, blue: 1, green: 1 }

/** District codes (6 digits, not the city) an alert concerns: its region path and `regions`. */
export function districtsOf(f) {
  const out = new Set()
  const add = (c) => {
    if (typeof c !== 'string' || c.length < 6 || c === '500000') return
    out.add(c.slice(0, 6))
  }
  for (const c of Array.isArray(f.region) ? f.region : []) add(c)
  for (const c of Array.isArray(f.properties && f.properties.regions) ? f.properties.regions : []) add(c)
  return out
}

/**
 * Keep the alerts that pass the filter: `colours` (a Set of colour names;
 * empty = all), `tier` ('' = all) and `district` (a district code, '' = all).
 */
export function filterAlerts(alerts, { colours = new Set(), tier = '', district = '' } = {}) {
  return alerts.filter((f) => {
    const p = f.properties || {}
    if (colours.size && !colours.has(p.severity)) return false
    if (tier && p.tier !== tier) return false
    if (district && !districtsOf(f).has(district)) return false
    return true
  })
}

const TIER_RANK = { city: 0, district: 1, street: 2 }

/**
 * Group alerts by rule and tier. Each group: {key, rule, tier, count, open
 * (state open, still to acknowledge), byColour {red: n, ...}, worst (the
 * most severe colour), alerts (as given, in order)}. Groups are ordered by
 * worst colour, then higher tier first, then size, then rule name.
 */
export function groupAlerts(alerts) {
  const groups = new Map()
  for (const f of alerts) {
    const p = f.properties || {}
    const key = `${p.rule || ''}|${p.tier || ''}`
    let g = groups.get(key)
    if (!g) groups.set(key, (g = { key, rule: p.rule || '', tier: p.tier || '', count: 0, open: 0, byColour: {}, worst: '', alerts: [] }))
    g.count++
    if (p.state === 'open') g.open++
    g.byColour[p.severity] = (g.byColour[p.severity] || 0) + 1
    if (!g.worst || (SEVERITY_RANK[p.severity] || 9) < (SEVERITY_RANK[g.worst] || 9)) g.worst = p.severity
    g.alerts.push(f)
  }
  const rank = (g) => SEVERITY_RANK[g.worst] || 9
  return [...groups.values()].sort((a, b) => rank(a) - rank(b) || (TIER_RANK[a.tier] ?? 9) - (TIER_RANK[b.tier] ?? 9) ||
    b.count - a.count || (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0))
}

/**
 * What one group shows: the first `limit` alerts (already sorted red first,
 * oldest first) and how many are hidden, so the panel always says how much
 * it is not showing.
 */
export function visibleRows(group, limit) {
  const shown = group.alerts.slice(0, Math.max(0, limit))
  return { shown, hidden: group.alerts.length - shown.length }
}

/**
 * Rank districts by the weight of what is open in them: alerts by colour
 * (COLOUR_WEIGHT) plus 3 per overdue incident. `districts` lists
 * {code, name} so quiet districts are ranked too (score 0). Returns
 * [{code, name, score, alerts, red, overdue}] worst first.
 */
export function rankDistricts(districts, alerts, overdueIncidents = []) {
  const rows = new Map(districts.map((d) => [d.code, { code: d.code, name: d.name, score: 0, alerts: 0, red: 0, overdue: 0 }]))
  for (const f of alerts) {
    const sev = (f.properties || {}).severity
    for (const c of districtsOf(f)) {
      const r = rows.get(c)
      if (!r) continue
      r.alerts++
      if (sev === 'red') r.red++
      r.score += COLOUR_WEIGHT[sev] || 1
    }
  }
  for (const f of overdueIncidents) {
    for (const c of districtsOf(f)) {
      const r = rows.get(c)
      if (!r) continue
      r.overdue++
      r.score += 3
    }
  }
  return [...rows.values()].sort((a, b) => b.score - a.score || (a.code < b.code ? -1 : 1))
}

/** Oldest-first age key for sorting inside a group (re-exported for panels). */
export { alertSince }
