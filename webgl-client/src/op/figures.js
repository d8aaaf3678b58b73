// Pure figures behind the big numbers and trends (no DOM, no map), so
// vitest checks them in node.

/** Workers online (any status but offline / off duty) and on a task (busy). */
export function workerCounts(byStatus = {}) {
  let online = 0
  for (const [k, v] of Object.entries(byStatus)) if (k !== 'offline' && k !== 'off_duty') online += v
  return { online, busy: byStatus.busy || 0 }
}

/**
 * Per-hour series of the server's indicators (oldest first, from the first
 * hour with anything counted): alerts raised,
 * incidents entering "reported", and 1-5-10 compliance over the three steps
 * (null for an hour without a deadline met or missed).
 */
export function hourlySeries(h) {
  const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0)
  // hours before the server counted anything (just started) are not a trend of zeros
  const all = (h && h.buckets) || []
  const first = all.findIndex((b) => b.gauges || sum(b.alerts_raised) || sum(b.incidents_entered))
  const bs = first < 0 ? [] : all.slice(first)
  const sla = bs.map((b) => {
    let met = 0, breached = 0
    for (const st of Object.values(b.sla || {})) { met += st.met || 0; breached += st.breached || 0 }
    return met + breached ? met / (met + breached) : null
  })
  return { buckets: bs.length, raised: bs.map((b) => sum(b.alerts_raised)), incidents: bs.map((b) => (b.incidents_entered || {}).reported || 0), sla }
}

/** SVG sparkline of values (0..max) as a polyline w x h. */
export function sparkline(values, w = 220, h = 40) {
  if (values.length < 2) return ''
  const max = Math.max(1, ...values)
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * w).toFixed(1)},${(h - (v / max) * (h - 2) - 1).toFixed(1)}`).join(' ')
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" aria-hidden="true"><polyline points="${pts}" fill="none" stroke="currentColor" stroke-width="2"/></svg>`
}

