// The work loops (CONTRACT §8: directives, tasks, evidence) as pure
// functions of the server's objects and the time, so vitest checks them
// without a DOM: due times typed in the city's zone, directive targets by
// tier or by a click on the map, the roll-up's rows with their drill-down,
// a task's next step for its assignee, and my tasks in the order I should
// do them. op/directives.js, op/tasks.js and the field page render them.
import { CITY_OFFSET } from './i18n.js'

const OFFSET_MS = 8 * 3600 * 1000 // Asia/Shanghai, no daylight saving

/**
 * The value of an <input type="datetime-local"> read as a time in the
 * city's zone, whatever the browser's: "2026-12-03T18:00" ->
 * "2026-12-03T18:00:00+08:00" ("" when it is not such a value).
 */
export function cityLocalToISO(v) {
  const m = /^(\d{4}-\d{2}-\d{2})[T ]+(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(String(v || '').trim())
  if (!m) return ''
  const iso = `${m[1]}T${m[2].padStart(2, '0')}:${m[3]}:${m[4] || '00'}${CITY_OFFSET}`
  return isNaN(Date.parse(iso)) ? '' : iso
}

/** A time (ms) as a datetime-local value in the city's zone: "2026-12-03T18:00". */
export function cityLocalValue(ms) {
  return new Date(Math.floor(ms / 60000) * 60000 + OFFSET_MS).toISOString().slice(0, 16)
}

/** The default due time of a new directive: `hours` from now, on the next full hour. */
export function defaultDue(nowMs, hours = 24) {
  const t = nowMs + hours * 3600 * 1000
  return cityLocalValue(Math.ceil(t / 3600000) * 3600000)
}

/** A due time as the form shows it, 24-hour, the way it is written here: "2026-12-04 18:00". */
export const dueText = (local) => String(local || '').replace('T', ' ')

/**
 * The form's quick due choices at nowMs, in the city's clock: '2h' (two
 * hours on, next full hour), 'today18' (18:00 today, tomorrow once past),
 * 'tomorrow12', '3d' (three days on, next full hour). A datetime-local value.
 */
export function dueChoice(kind, nowMs) {
  const H = 3600000
  const dayStart = Math.floor((nowMs + OFFSET_MS) / (24 * H)) * 24 * H - OFFSET_MS // city midnight today
  switch (kind) {
    case '2h': return cityLocalValue(Math.ceil((nowMs + 2 * H) / H) * H)
    case 'today18': { const t = dayStart + 18 * H; return cityLocalValue(t > nowMs ? t : t + 24 * H) }
    case 'tomorrow12': return cityLocalValue(dayStart + 36 * H)
    case '3d': return cityLocalValue(Math.ceil((nowMs + 72 * H) / H) * H)
  }
  return defaultDue(nowMs)
}

/** A span of time in whole units for "逾期 2 天 3 小时": {d, h, m} of |ms|. */
export function span(ms) {
  const m = Math.floor(Math.abs(ms) / 60000)
  return { d: Math.floor(m / 1440), h: Math.floor((m % 1440) / 60), m: m % 60 }
}

const props = (f) => (f && f.properties) || {}
const codeOf = (f) => String(props(f).code || '')

/** Whether region code c lies strictly inside region r (GB/T 2260 prefixes; the city holds all). */
export function insideRegion(c, r) {
  if (!c || !r) return false
  if (r === '500000') return c !== r
  return c.length > r.length && c.startsWith(r)
}

/**
 * The target codes of a directive chosen by tier: every district inside
 * the issuer's region ('districts'), or every street of one district
 * ('streets'), sorted by code.
 * @param {object[]} regions region features (properties code, level, parent)
 * @param {{mode:'districts'|'streets', issuer:string, district?:string}} o
 */
export function tierTargets(regions, o) {
  const lv = o.mode === 'streets' ? 'street' : 'district'
  return (regions || []).filter((f) => {
    const p = props(f)
    if (p.level !== lv || !insideRegion(codeOf(f), o.issuer)) return false
    return lv === 'district' || p.parent === o.district || (!p.parent && insideRegion(codeOf(f), o.district))
  }).map(codeOf).sort()
}

/** Whether [lon, lat] is inside a GeoJSON Polygon or MultiPolygon (even-odd, holes honoured). */
export function pointInGeometry(pt, g) {
  if (!g) return false
  const polys = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : []
  const [x, y] = pt
  for (const poly of polys) {
    let inside = false
    for (const ring of poly || []) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [xi, yi] = ring[i], [xj, yj] = ring[j]
        if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside
      }
    }
    if (inside) return true
  }
  return false
}

/** The code of the region of `level` (district or street) under [lon, lat], or ''. */
export function regionAt(regions, pt, level) {
  const f = (regions || []).find((r) => props(r).level === level && pointInGeometry(pt, r.geometry))
  return f ? codeOf(f) : ''
}

/** Toggle code in a list (a click on the map picks or drops a region). */
export function toggle(list, code) {
  return list.includes(code) ? list.filter((c) => c !== code) : [...list, code]
}

/**
 * The rows of a directive's roll-up (GET /api/directives/{name}) in the
 * order shown: each target, then the regions it was forwarded to, indented.
 * @returns {{code:string, name:string, depth:number, counts:object, task:object|null, forwarded:boolean}[]}
 */
export function rollupRows(view, open = () => true) {
  const out = []
  const walk = (t, depth) => {
    const kids = Array.isArray(t.children) ? t.children : []
    out.push({ code: t.code, name: t.name || '', depth, counts: t.counts || {}, task: t.task || null, forwarded: kids.length > 0 })
    if (kids.length && open(t.code)) for (const k of kids) walk(k, depth + 1)
  }
  for (const t of (view && view.targets) || []) walk(t, 0)
  return out
}

/** "n/m" of a roll-up count. */
export const ratio = (c, k) => `${Number(c && c[k]) || 0}/${Number(c && c.total) || 0}`

/** The steps a directive's task requires (ack and report when unsaid). */
export function requires(p) {
  const r = Array.isArray(p.requires) ? p.requires.filter((x) => x === 'ack' || x === 'report') : []
  return r.length ? r : ['ack', 'report']
}

/**
 * The next step of a task for its assignee: 'ack' (签收) while issued,
 * 'report' (反馈) once acknowledged (or at once when only a report is
 * asked), null when nothing is left to them (closed, or a directive's task
 * at the last step it requires; closing is the issuer's).
 */
export function nextStep(f) {
  const p = props(f)
  const st = p.state
  if (!st || st === 'closed' || st === 'reported') return null
  if (p.kind === 'directive') {
    const req = requires(p)
    if (st === 'issued') return req.includes('ack') ? 'ack' : 'report'
    return st === 'acked' && req.includes('report') ? 'report' : null
  }
  return st === 'issued' ? 'ack' : st === 'acked' ? 'report' : null
}

/** Whether a task is past due and not done (the server's `overdue`, or the clock when it has not ticked yet). */
export function isOverdue(f, now = Date.now()) {
  const p = props(f)
  if (p.state === 'closed') return false
  if (p.overdue === true) return true
  const due = Date.parse(p.due)
  return !isNaN(due) && due < now && nextStep(f) !== null
}

/**
 * My tasks on the field page: open tasks with a step left for me, overdue
 * first, then by due time (soonest first), then newest issued.
 */
export function myTasks(features, now = Date.now()) {
  const l = (features || []).filter((f) => nextStep(f))
  return l.sort((a, b) => {
    const oa = isOverdue(a, now), ob = isOverdue(b, now)
    if (oa !== ob) return oa ? -1 : 1
    const da = Date.parse(props(a).due) || Infinity, db = Date.parse(props(b).due) || Infinity
    if (da !== db) return da - db
    return String(props(b).issued_at || '').localeCompare(String(props(a).issued_at || ''))
  })
}

/** The tasks about one object (a building's rectification, a truck's cases), open first, newest first. */
export function tasksOf(features, subject, kind) {
  return (features || []).filter((f) => props(f).subject === subject && (!kind || props(f).kind === kind))
    .sort((a, b) => ((props(a).state === 'closed') - (props(b).state === 'closed')) || String(props(b).issued_at || '').localeCompare(String(props(a).issued_at || '')))
}

/**
 * An enforcement case's evidence, split: the deck track (a LineString with
 * its times, from/to and speed) and the camera captures (camera, ts,
 * distance_m) in time order, and the photos.
 */
export function caseEvidence(p) {
  const ev = Array.isArray(p && p.evidence) ? p.evidence : []
  const track = ev.find((e) => e && e.type === 'track') || null
  const captures = ev.filter((e) => e && e.type === 'capture').sort((a, b) => String(a.ts).localeCompare(String(b.ts)) || String(a.camera).localeCompare(String(b.camera)))
  const photos = ev.filter((e) => e && e.type === 'photo')
  return { track, captures, photos }
}

/** The districts an enforcement case concerns (its `regions`: the districts the bridge joins). */
export function caseDistricts(p) {
  const r = Array.isArray(p && p.regions) ? p.regions : []
  return [...new Set(r.filter((c) => /^\d{6}$/.test(String(c)) && c !== '500000'))].sort()
}

/** The region code a bearer token carries (its JWT claims; not verified: for the form's choices only), or ''. */
export function tokenRegion(token) {
  try {
    const part = String(token || '').split('.')[1]
    if (!part) return ''
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4))
    const c = JSON.parse(json)
    return typeof c.region === 'string' ? c.region : ''
  } catch {
    return ''
  }
}
