// SLA countdowns for incidents (CONTRACT §5: 1 min to accept, 5 to arrive,
// 10 to report after arriving). props.sla holds RFC 3339 deadlines
// accept_by, arrive_by, report_by; which one runs depends on the state.

const running = { dispatched: ['accept', 'accept_by'], accepted: ['arrive', 'arrive_by'], arrived: ['report', 'report_by'] }

/**
 * The deadline an incident is working against now, or null when none runs
 * (reported and not yet dispatched, resolved, closed).
 * @returns {{step:string, by:Date}|null}
 */
export function runningDeadline(props) {
  const r = running[props && props.state]
  if (!r) return null
  const s = props.sla && props.sla[r[1]]
  if (!s) return null
  const by = new Date(s)
  if (isNaN(by.getTime())) return null
  return { step: r[0], by }
}

/**
 * Format the time left until a deadline: "4:05" (m:ss), "1:02:03" past an
 * hour, and "-0:12" (with overdue=true) once breached.
 * @param {number} ms milliseconds left (negative when overdue)
 */
export function formatCountdown(ms) {
  const overdue = ms < 0
  let s = Math.floor(Math.abs(ms) / 1000)
  if (overdue && Math.abs(ms) % 1000 !== 0) s += 1
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  const pad = (n) => String(n).padStart(2, '0')
  const body = h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`
  return (overdue ? '-' : '') + body
}

/**
 * Text and status for an incident's SLA at time now (ms since epoch):
 * {text: "accept 0:42", overdue: false} or null when no deadline runs.
 */
export function slaStatus(props, now) {
  const d = runningDeadline(props)
  if (!d) return null
  const left = d.by.getTime() - now
  return { step: d.step, text: `${d.step} ${formatCountdown(left)}`, overdue: left < 0, leftMs: left }
}

/** Human age of a timestamp: "12s", "5m", "3h", "2d". */
export function formatAge(iso, now) {
  const t = new Date(iso).getTime()
  if (isNaN(t)) return ''
  const s = Math.max(0, Math.floor((now - t) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}
