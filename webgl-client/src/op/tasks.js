// Tasks as the operator reads them in the inspector (issue 15 item 5): a
// building's rectification tasks (state, due, overdue, responsible
// persons, plan, history), one task with its loop, and an enforcement
// case with its evidence: the truck's track on the bridge deck drawn on
// the map, each camera within 50 m with the time the truck passed and the
// distance, speed, plate, the districts the bridge joins; an operator
// closes it as rectified or penalised. Pure HTML builders plus the map
// layers of a case; inspector.js wires them.
import { esc, fmtDistance, fmtValue, maplibregl } from '../common.js'
import { api } from '../api.js'
import { i18n, t } from '../i18n.js'
import { nextStep, isOverdue, caseEvidence, caseDistricts, span } from '../loops.js'
import { metres } from '../field/duty.js'

/** A span of time as words: "2 天 3 小时", "3 小时 5 分", "12 分钟". */
export function spanText(ms) {
  const s = span(ms)
  return s.d ? t('loops.span_dh', s) : s.h ? t('loops.span_hm', s) : t('loops.span_m', s)
}

/** What is left before due, or how late: "3 小时 5 分 后到期" / "已逾期 2 天 3 小时" ('' when none). */
export function dueRel(p, now = Date.now()) {
  const due = Date.parse(p.due)
  if (isNaN(due) || p.state === 'closed') return ''
  if (isOverdue({ properties: p }, now)) return t('loops.overdue_by', { left: spanText(now - due) })
  return due > now ? t('loops.due_in', { left: spanText(due - now) }) : ''
}

/** Who did a step, as an operator reads it (the system, a rule, the demo's scheduler, a person by name). */
export function actorName(a, nameOf) {
  const s = String(a || '')
  if (s === 'demo') return t('loops.actor_demo')
  return i18n.actor(s, nameOf)
}

/** A task's responsible persons by name (persons_zh in Chinese when the server carries them). */
export function personsText(p) {
  const ids = Array.isArray(p.persons) ? p.persons : []
  const zh = Array.isArray(p.persons_zh) && p.persons_zh.length === ids.length ? p.persons_zh : null
  return (i18n.zh && zh ? zh : ids).map(esc).join('、')
}

const name = (f) => String(f.id).split('/').slice(1).join('/')

/** A task's state as a chip (the enforcement outcome when closed). */
export function stateChip(p) {
  const label = p.state === 'closed' && p.outcome && p.outcome !== 'done' ? i18n.term('outcome', p.outcome) : i18n.term('task_state', p.state)
  return `<span class="state task-${esc(p.state)}">${esc(label)}</span>`
}

/** Due time with what is left (or how late), red when overdue. */
export function dueHTML(p, now = Date.now()) {
  const due = Date.parse(p.due)
  if (isNaN(due)) return ''
  const late = isOverdue({ properties: p }, now)
  const rel = dueRel(p, now)
  return `${i18n.timeHTML(p.due, 'datetime')}${rel ? ` <span class="sla ${late ? 'overdue' : ''}">${esc(rel)}</span>` : ''}`
}

function historyHTML(p, open = false) {
  const hist = Array.isArray(p.history) ? p.history : []
  if (!hist.length) return ''
  return `<details class="task-hist"${open ? ' open' : ''}><summary>${esc(t('loops.history_n', { n: hist.length }))}</summary><ol class="timeline">${hist.map((h) =>
    `<li>${i18n.timeHTML(h.at, 'datetime')} · ${esc(i18n.term('task_action', h.action))}${h.outcome ? ` · ${esc(i18n.term('outcome', h.outcome))}` : ''}${h.actor ? ` · <span class="muted">${esc(actorName(h.actor))}</span>` : ''}${h.note ? ` · ${esc(h.note)}` : ''}${Array.isArray(h.targets) && h.targets.length ? ` · ${esc(t('loops.forwarded_n', { n: h.targets.length }))}` : ''}</li>`).join('')}</ol></details>`
}

function photosHTML(p) {
  const photos = caseEvidence(p).photos
  if (!photos.length) return ''
  return `<div class="evidence">${photos.map((e) => `<a target="_blank" rel="noopener" data-ev="${esc(e.id)}"><img alt="${esc(t('loops.photos'))}" data-ev="${esc(e.id)}" width="96" height="96"></a>`).join('')}</div>`
}

/** The actions an operator may take on a task (ack or report for their own tier is the field's; close is the issuer's). */
function actionsHTML(p) {
  if (p.state === 'closed') return ''
  if (p.kind === 'enforcement') {
    return `<div class="actions">${p.state === 'issued' ? `<button type="button" data-task-act="ack">${esc(t('task_action.ack'))}</button>` : ''}
      <button type="button" data-task-act="close" data-outcome="rectified">${esc(t('loops.close_rectified'))}</button>
      <button type="button" data-task-act="close" data-outcome="penalised">${esc(t('loops.close_penalised'))}</button></div>`
  }
  const step = nextStep({ properties: p })
  return `<div class="actions">${step === 'ack' ? `<button type="button" data-task-act="ack">${esc(t('task_action.ack'))}</button>` : ''}<button type="button" data-task-act="close">${esc(t('loops.close_task'))}</button></div>`
}

/**
 * One task in the inspector. ctx: regionName(code), row(key, html),
 * head(title, kind, colour), objLink(ref) and, for a case, the bridge's
 * and the cameras' display names once loaded (ctx.bridgeName, ctx.cameraName).
 */
export function taskHTML(f, ctx) {
  const p = f.properties || {}
  if (p.kind === 'enforcement') return caseHTML(f, ctx)
  const { row } = ctx
  const rep = p.report && typeof p.report === 'object' ? p.report : null
  const kids = Array.isArray(p.children) ? p.children.length : 0
  return ctx.head(p.title || i18n.term('task_kind', p.kind), i18n.term('task_kind', p.kind), isOverdue(f) ? 'red' : '') + `<table class="kv">
      ${row('loops.state', stateChip(p) + (isOverdue(f) ? ` <span class="flag-overdue">${esc(t('loops.overdue_flag'))}</span>` : ''))}
      ${row('loops.due', dueHTML(p))}
      ${row('loops.assignee', esc(ctx.regionName(p.assignee) || p.assignee || ''))}
      ${row('loops.tier', esc(i18n.term('tier', p.tier)) + (p.escalations ? ` · ${esc(t('loops.escalations', { n: p.escalations }))}` : ''))}
      ${row('loops.issuer', p.issuer ? esc(ctx.regionName(p.issuer) || p.issuer) : '')}
      ${row('loops.persons', personsText(p))}
      ${row('insp.subject', p.subject ? ctx.objLink(p.subject) : '')}
      ${row('loops.directive', p.directive ? `<a href="#" data-open="${esc(p.directive)}">${esc(t('loops.rollup'))}</a>` : '')}
      ${row('loops.forwarded', kids ? esc(t('loops.forwarded_n', { n: kids })) : '')}
      ${row('loops.text', esc(p.text || ''))}
      ${row('loops.plan', esc(p.plan || ''))}
      ${row('loops.report', rep ? `${esc(rep.note || '')}<div class="muted small">${esc(actorName(rep.by))} · ${i18n.timeHTML(rep.at, 'datetime')}</div>` : '')}
    </table>${photosHTML(p)}${actionsHTML(p)}${historyHTML(p, true)}`
}

/** An enforcement case with its evidence. */
export function caseHTML(f, ctx) {
  const p = f.properties || {}
  const { row } = ctx
  const { track, captures } = caseEvidence(p)
  const speed = p.speed_kmh ?? (track && track.speed_kmh)
  const n = track && Array.isArray(track.times) ? track.times.length : 0
  const cams = captures.length ? `<table class="hist case-cams"><tr><th></th><th>${esc(t('loops.camera'))}</th><th>${esc(t('loops.passed'))}</th><th>${esc(t('loops.distance'))}</th></tr>${captures.map((c, i) =>
    `<tr><td><span class="cam-n">${i + 1}</span></td><td><a href="#" data-open="${esc(c.camera)}">${esc(ctx.cameraName(c.camera))}</a></td><td>${i18n.timeHTML(c.ts, 'time')}</td><td>${esc(fmtDistance(c.distance_m))}</td></tr>`).join('')}</table>`
    : `<div class="muted small">${esc(t(p.evidence_complete === false ? 'loops.collecting' : 'loops.no_cameras'))}</div>`
  return ctx.head(`${t('rules.bridge-muck')} · ${p.plate || ''}`, t('loops.case'), isOverdue(f) ? 'red' : 'orange') + `<table class="kv">
      ${row('loops.state', stateChip(p) + (isOverdue(f) ? ` <span class="flag-overdue">${esc(t('loops.overdue_flag'))}</span>` : ''))}
      ${row('loops.plate', p.subject ? `<a href="#" data-open="${esc(p.subject)}">${esc(p.plate || name({ id: p.subject }))}</a>` : esc(p.plate || ''))}
      ${row('loops.speed', speed != null && speed !== '' ? `${esc(fmtValue(speed))} km/h` : '')}
      ${row('loops.bridge', p.bridge ? `<a href="#" data-open="${esc(p.bridge)}">${esc(ctx.bridgeName(p.bridge))}</a>` : '')}
      ${row('loops.districts', caseDistricts(p).map((c) => esc(ctx.regionName(c) || c)).join('、'))}
      ${row('loops.crossed', p.crossed_at ? i18n.timeHTML(p.crossed_at, 'datetime') : '')}
      ${row('loops.due', dueHTML(p))}
      ${row('loops.persons', personsText(p))}
      ${row('loops.tier', esc(i18n.term('tier', p.tier)))}
    </table>
    <h4>${esc(t('loops.track'))}</h4><div class="small">${track ? esc(t('loops.track_span', { from: i18n.time(track.from, 'time'), to: i18n.time(track.to, 'time'), n })) : esc(t(p.evidence_complete === false ? 'loops.collecting' : 'loops.no_track'))}</div>
    <h4>${esc(t('loops.cameras'))}</h4>${cams}${photosHTML(p)}${actionsHTML(p)}${historyHTML(p)}`
}

/** The list of a building's (or a truck's) tasks: one row each, opening the task. */
export function taskListHTML(list, empty) {
  if (!list.length) return `<div class="muted small">${esc(empty)}</div>`
  return `<ul class="plain task-list">${list.map((f) => {
    const p = f.properties || {}
    const late = isOverdue(f)
    return `<li><a href="#" data-open="${esc(f.id)}">${esc(p.title || i18n.term('task_kind', p.kind))}</a> ${stateChip(p)}${late ? ` <span class="flag-overdue">${esc(t('loops.overdue_flag'))}</span>` : ''}
      <div class="muted small">${esc(t('loops.due'))} ${dueHTML(p)}${Array.isArray(p.persons) && p.persons.length ? ` · ${esc(t('loops.persons'))} ${personsText(p)}` : ''}</div>
      ${p.plan ? `<div class="small">${esc(t('loops.plan'))}：${esc(p.plan)}</div>` : ''}${historyHTML(p)}</li>`
  }).join('')}</ul>`
}

/** Tasks about one subject (GET /api/tasks?subject=), newest first. */
export async function fetchTasks(subject, kind) {
  const q = new URLSearchParams({ subject, limit: '50' })
  if (kind) q.set('kind', kind)
  const fc = await api(`/api/tasks?${q}`)
  return (fc && fc.features) || []
}

/** An action on a task as the operator (close needs an operator; ack of their own tier). */
export function actTask(f, act, outcome) {
  const body = outcome ? { outcome } : {}
  return api(`/api/tasks/${encodeURIComponent(name(f))}/${act}`, { method: 'POST', action: true, role: 'operator', body })
}

// ---- map: a case's evidence ----------------------------------------------------

const EMPTY = { type: 'FeatureCollection', features: [] }

/** Add the case layers (the deck track, the cameras with their distance). */
export function addCaseLayers(map) {
  if (map.getSource('case')) return
  map.addSource('case', { type: 'geojson', data: EMPTY })
  map.addLayer({ id: 'case-track', type: 'line', source: 'case', filter: ['==', ['geometry-type'], 'LineString'], layout: { 'line-cap': 'round', 'line-join': 'round' }, paint: { 'line-color': '#ffa726', 'line-width': 5 } })
  map.addLayer({ id: 'case-fixes', type: 'circle', source: 'case', filter: ['==', ['get', 'what'], 'fix'], paint: { 'circle-radius': 3, 'circle-color': '#fff3e0' } })
  map.addLayer({ id: 'case-cams', type: 'circle', source: 'case', filter: ['==', ['get', 'what'], 'camera'], paint: { 'circle-radius': 7, 'circle-color': '#9ccc65', 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 2 } })
}

// The cameras' numbers (as in the inspector's table) are DOM markers: the
// style's glyphs carry no Latin digits, only CJK is drawn locally.
let markers = []

/** Draw a case's features (caseFeatures) on the map: the layers' data and one numbered marker per camera spot. */
export function showCaseOnMap(map, fc) {
  map.getSource('case')?.setData(fc)
  for (const m of markers) m.remove()
  markers = []
  const spots = [] // cameras within 8 m of each other (two on a pole) share a marker: "1·2"
  for (const f of fc.features) {
    if (f.properties.what !== 'camera') continue
    const c = f.geometry.coordinates
    let s = spots.find((x) => metres(x.at, c) < 8)
    if (!s) spots.push((s = { at: c, n: [], title: [] }))
    s.n.push(f.properties.n)
    s.title.push(f.properties.label)
  }
  for (const s of spots) {
    const el = document.createElement('div')
    el.className = 'cam-marker'
    el.textContent = s.n.join('·')
    el.title = s.title.join('\n')
    markers.push(new maplibregl.Marker({ element: el, anchor: 'bottom-left', offset: [4, -4] }).setLngLat(s.at).addTo(map))
  }
}

/**
 * The case's evidence as features for the map: the track, its fixes and
 * each camera (positions fetched; labelled with its name, time and distance).
 */
export async function caseFeatures(p, cameraName) {
  const { track, captures } = caseEvidence(p)
  const out = []
  if (track && track.geometry) {
    out.push({ type: 'Feature', properties: { what: 'track' }, geometry: track.geometry })
    for (const c of track.geometry.coordinates || []) out.push({ type: 'Feature', properties: { what: 'fix' }, geometry: { type: 'Point', coordinates: c } })
  }
  const cams = await Promise.all(captures.map((c) => {
    const [l, ...r] = String(c.camera).split('/')
    return api(`/api/entities/${encodeURIComponent(l)}/${encodeURIComponent(r.join('/'))}`).catch(() => null)
  }))
  captures.forEach((c, i) => {
    const g = cams[i] && cams[i].geometry
    if (g && g.type === 'Point') out.push({ type: 'Feature', properties: { what: 'camera', n: i + 1, label: `${cameraName(c.camera)} ${i18n.time(c.ts, 'time')} · ${fmtDistance(c.distance_m)}` }, geometry: g })
  })
  return { type: 'FeatureCollection', features: out }
}

export const emptyCase = EMPTY
