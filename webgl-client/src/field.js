// Field view (/field): a grid worker's phone, 390x844 first, one hand.
// - Who I am: picked from the workers near me (demo) or typed (a real token).
// - On duty (上岗), the phone's GPS (watchPosition) is my position and is
//   reported for my worker object (field/duty.js), so the wall screen sees
//   me move and arrive uses where I really am.
// - My current incident's next step (接单 / 到场 / 处置完成) sits in a
//   sticky bar at the bottom; actions are offered only on my own incidents.
// - Resolving asks for a note and optionally a photo (evidence, uploaded
//   first, then the resolve).
// - My tasks (governance/tasks: directives, rectification) beside my
//   incidents: acknowledge (签收) and report (反馈: a note and a photo,
//   uploaded to the task's evidence first) in reach of the thumb; the
//   sticky bar offers a task's next step when no incident waits. In the
//   demo the page acts on tasks with a token of the worker's street.
// - Nearby incidents nearest first, and a folded report form.
// Text comes from the message catalogue (i18n.js), zh-CN by default.
import { maplibregl, createMap, esc, fmtDistance, toast } from './common.js'
import { initToken, api, isDemo, getToken, demoTokenFor } from './api.js'
import { slaStatus, formatCountdown } from './sla.js'
import { mineFirst } from './panels.js'
import { i18n, t, langButton } from './i18n.js'
import { createDuty, metres } from './field/duty.js'
import { current, actionsFor, isMine, mergeById, NEXT, streetOf, tasksFor } from './field/tasks.js'
import { myTasks, nextStep, isOverdue, tokenRegion } from './loops.js'
import { dueRel } from './op/tasks.js'

initToken()
const $ = (id) => document.getElementById(id)
const map = createMap('map', { pitch: 0 })
const marker = new maplibregl.Marker({ color: '#80deea' })
const demo = isDemo()
const TYPES = ['road_damage', 'garbage', 'illegal_dumping', 'fire_hazard', 'flooding', 'other']

const q0 = new URLSearchParams(location.search)
let worker = q0.get('worker') || localStorage.getItem('citytwin.worker') || ''
if (q0.get('worker')) localStorage.setItem('citytwin.worker', worker)
let me = null // [lon, lat]
let source = '' // gps | chosen | map
let accuracy = null
let lastNearby = []
let myIncidents = []
let listed = []
let nearWorkers = []
let busy = false
let lastGPS = null
let tasks = [] // my open tasks, in the order to do them
let taskAuth = { worker: '', region: '', token: null } // who acts on tasks, with which token

// ---- position and duty ------------------------------------------------------

function setPosition(lon, lat, src, why = '') {
  const moved = !me || metres(me, [lon, lat]) > 25
  me = [lon, lat]
  source = src
  marker.setLngLat(me).addTo(map)
  renderPos(why)
  if (moved) {
    map.easeTo({ center: me, zoom: Math.max(map.getZoom(), 15) })
    refresh()
  }
}

function renderPos(why = '') {
  if (!me) return
  const label = source === 'gps' ? t('field.pos_gps', { acc: accuracy == null ? '?' : Math.round(accuracy) })
    : source === 'map' ? t('field.pos_map', { why }) : t('field.pos_chosen')
  $('pos').textContent = `${me[1].toFixed(5)}, ${me[0].toFixed(5)} · ${label}`
}

const duty = createDuty({
  geo: navigator.geolocation,
  worker: () => worker,
  send: (line) => api('/api/telemetry', { method: 'POST', action: true, role: 'field', subject: worker, body: line + '\n', headers: { 'Content-Type': 'application/x-ndjson' } })
    .then((r) => {
      const res = (r && r.results && r.results[0]) || {}
      if (res.outcome === 'error') throw new Error(res.error || res.reason)
      return r
    }),
  onFix: (fix) => {
    lastGPS = fix
    accuracy = fix.acc
    setPosition(fix.at[0], fix.at[1], 'gps')
  },
  onError: (msg) => toast(t('field.no_gps', { why: msg }), true),
})

function setDuty(on) {
  if (on && !worker) { toast(t('field.need_worker'), true); return }
  if (on) duty.start()
  else duty.stop()
  const b = $('duty')
  b.setAttribute('aria-pressed', String(on))
  b.textContent = t(on ? 'field.off_duty' : 'field.on_duty')
  b.classList.toggle('on', on)
  $('duty-state').textContent = t(on ? 'field.duty_on' : 'field.duty_off')
  try { localStorage.setItem('citytwin.duty', on ? '1' : '') } catch { /* memory only */ }
}

function locate() {
  if (!navigator.geolocation) return fallback('no geolocation')
  $('pos').textContent = t('field.locating')
  navigator.geolocation.getCurrentPosition(
    (p) => { accuracy = p.coords.accuracy; lastGPS = { at: [p.coords.longitude, p.coords.latitude], t: p.timestamp }; setPosition(p.coords.longitude, p.coords.latitude, 'gps') },
    (err) => fallback(err.message),
    { enableHighAccuracy: true, timeout: 5000, maximumAge: 30000 },
  )
}

function fallback(why) {
  const c = map.getCenter()
  setPosition(c.lng, c.lat, 'map', why)
}

// ---- who I am ---------------------------------------------------------------

async function refreshWorkers() {
  if (!demo || !me) return
  try {
    const fc = await api(`/api/nearby?layer=workers&lon=${me[0]}&lat=${me[1]}&radius_m=2000&limit=20`)
    nearWorkers = fc.features || []
    renderWorkers()
  } catch (err) {
    toast(i18n.error(err), true)
  }
}

function renderWorkers() {
  const sel = $('worker-pick')
  const opts = nearWorkers.map((f) => {
    const name = String(f.id).split('/').slice(1).join('/')
    const st = (f.properties || {}).status
    // me: my name alone (the closed picker is narrow on a phone; my own distance says nothing)
    if (name === worker) return { name, text: i18n.label(f) }
    return { name, text: `${i18n.label(f)} · ${fmtDistance(f.distance_m ?? (f.properties || {}).distance_m)}${st ? ' · ' + i18n.term('state', st) : ''}` }
  })
  if (worker && !opts.some((o) => o.name === worker)) opts.push({ name: worker, text: `${workerLabel('workers/' + worker)} · ${t('field.not_nearby')}` })
  sel.innerHTML = `<option value="">${esc(t('field.pick_worker'))}</option>` + opts.map((o) => `<option value="${esc(o.name)}">${esc(o.text)}</option>`).join('')
  sel.value = worker
}

function setWorker(name) {
  worker = name
  try { localStorage.setItem('citytwin.worker', worker) } catch { /* memory only */ }
  refresh()
}

// ---- incidents --------------------------------------------------------------

async function refresh() {
  if (!me) return
  refreshWorkers()
  const r = $('radius').value
  try {
    const [fc, mine] = await Promise.all([
      api(`/api/nearby?layer=incidents&lon=${me[0]}&lat=${me[1]}&radius_m=${r}&limit=50`),
      worker ? api(`/ogc/collections/incidents/items?limit=20&filter-lang=cql2-text&filter=${encodeURIComponent(`assignee = 'workers/${worker.replace(/'/g, "''")}'`)}`).catch(() => ({ features: [] })) : { features: [] },
    ])
    lastNearby = (fc.features || []).filter((f) => (f.properties || {}).state !== 'closed')
    myIncidents = (mine.features || []).filter((f) => NEXT[(f.properties || {}).state])
    await refreshTasks()
    render()
    const src = map.getSource('nearby')
    if (src) src.setData({ type: 'FeatureCollection', features: mergeById(lastNearby, myIncidents) })
  } catch (err) {
    toast(i18n.error(err), true)
  }
}

function incName(f) { return String(f.id).split('/').slice(1).join('/') }
/** An incident's display name by its id's name: its type (垃圾堆放), never the id. */
function incLabel(name) {
  const id = 'incidents/' + name
  const f = mergeById(lastNearby, myIncidents).find((x) => x.id === id)
  return i18n.label(f || { id, properties: {} })
}

// A worker's display name (name_zh), never the id: from the nearby list,
// else fetched once.
const workerCache = new Map()
function workerLabel(id) {
  const near = nearWorkers.find((w) => w.id === id)
  const f = near || workerCache.get(id)
  if (!f && !workerCache.has(id) && /^workers\/./.test(String(id))) {
    workerCache.set(id, null)
    api(`/api/entities/workers/${encodeURIComponent(String(id).slice('workers/'.length))}`).then((w) => { workerCache.set(id, w); render(); renderWorkers() }, () => {})
  }
  return i18n.label(f ? { ...f, id } : { id, properties: {} })
}

// ---- my tasks ---------------------------------------------------------------

/**
 * The region my tasks are in and the token to act on them with: in the
 * demo a field token of my worker's street (fetched once per worker); with
 * a token given in the URL, that token and its region.
 */
async function taskAccess() {
  if (!worker) return null
  if (!demo) return { worker, region: tokenRegion(getToken()), token: null }
  if (taskAuth.worker === worker && taskAuth.token) return taskAuth
  const w = await api(`/api/entities/workers/${encodeURIComponent(worker)}`)
  const region = streetOf(w)
  if (!region) return null
  const token = await demoTokenFor('field', { subject: worker, region })
  taskAuth = { worker, region, token }
  return taskAuth
}

async function refreshTasks() {
  try {
    const a = await taskAccess()
    if (!a) { tasks = []; return }
    const fc = await api('/api/tasks?open=true&limit=200', a.token ? { token: a.token } : {})
    tasks = myTasks(tasksFor(fc.features || [], a.region))
  } catch (err) {
    tasks = []
    if (err && err.status !== 404) toast(i18n.error(err), true)
  }
}

const taskName = (f) => String(f.id).split('/').slice(1).join('/')

function taskRowHTML(f, now) {
  const p = f.properties || {}
  const step = nextStep(f)
  const late = isOverdue(f, now)
  const rel = dueRel(p, now)
  return `<li class="row task-row${late ? ' overdue' : ''}" data-id="${esc(f.id)}"><div class="grow"><b>${esc(p.title || i18n.term('task_kind', p.kind))}</b>
    <div class="muted small">${esc(i18n.term('task_kind', p.kind))} · <span class="state task-${esc(p.state)}">${esc(i18n.term('task_state', p.state))}</span>${rel ? ` · <span class="sla ${late ? 'overdue' : ''}">${esc(rel)}</span>` : ''}</div>
    ${p.text ? `<div class="small">${esc(p.text)}</div>` : ''}</div>
    ${step ? `<button type="button" data-task="${esc(taskName(f))}" data-step="${step}">${esc(t('task_action.' + step))}</button>` : ''}</li>`
}

async function taskAct(name, step) {
  if (!worker) return toast(t('field.need_worker'), true)
  if (step === 'report') return openReport(name)
  busy = true
  render()
  try {
    const a = await taskAccess()
    await api(`/api/tasks/${encodeURIComponent(name)}/${step}`, { method: 'POST', action: true, role: 'field', subject: worker, body: {}, ...(a && a.token ? { token: a.token } : {}) })
    const f = tasks.find((x) => taskName(x) === name)
    toast(t('loops.done', { action: t('task_action.' + step), title: (f && f.properties.title) || name }))
  } catch (err) {
    toast(i18n.error(err), true)
  } finally {
    busy = false
  }
  await refresh()
}

let reporting = ''
function openReport(name) {
  reporting = name
  $('tnote').value = ''
  $('tphoto').value = ''
  $('task-sheet').querySelector('.photo-name').textContent = t('loops.no_photo')
  $('task-sheet').hidden = false
  $('tnote').focus()
}

function distanceTo(f) {
  const c = f.geometry && f.geometry.type === 'Point' ? f.geometry.coordinates : null
  return me && c ? metres(me, c) : f.distance_m ?? (f.properties || {}).distance_m
}

function assigneeText(f) {
  const p = f.properties || {}
  if (isMine(f, worker)) return `<b>${esc(t('field.assigned_me'))}</b>`
  if (p.assignee) return esc(t('field.assigned_other', { who: workerLabel(p.assignee) }))
  return esc(t('field.unassigned'))
}

function rowHTML(f, now) {
  const p = f.properties || {}
  const sla = slaStatus(p, now)
  const acts = actionsFor(f, worker)
  return `<li class="row" data-id="${esc(f.id)}"><span class="dist">${esc(fmtDistance(distanceTo(f)))}</span>
    <div class="grow"><b>${esc(i18n.term('types', p.type))}</b> <span class="state ${esc(p.state)}">${esc(i18n.term('state', p.state))}</span>
    <div class="muted small">${assigneeText(f)}${p.description ? ' · ' + esc(p.description) : ''}${sla ? ` · <span class="sla ${sla.overdue ? 'overdue' : ''}">${esc(i18n.term('step', sla.step))} ${esc(formatCountdown(sla.leftMs))}</span>` : ''}</div></div>
    ${acts.map((a) => `<button type="button" data-name="${esc(incName(f))}" data-action="${a}">${esc(t('action.' + a))}</button>`).join('')}</li>`
}

function render() {
  const now = Date.now()
  const all = mergeById(lastNearby, myIncidents)
  const cur = current(all, worker)
  // my task card
  $('mine').innerHTML = cur ? `<ul class="list">${rowHTML(cur, now)}</ul>` : `<p class="muted small">${esc(t('field.no_task'))}</p>`
  // nearby, mine first, without the current one (it is above)
  listed = mineFirst(lastNearby, worker ? 'workers/' + worker : '')
  $('ncount').textContent = String(lastNearby.length)
  $('nearby').innerHTML = listed.filter((f) => !cur || f.id !== cur.id).map((f) => rowHTML(f, now)).join('') || `<li class="muted">${esc(t('field.no_nearby'))}</li>`
  // my tasks, the one to do first on top (rebuilt only when they change: a tap must not land on a replaced button)
  const html = tasks.map((f) => taskRowHTML(f, now)).join('') || `<li class="muted small">${esc(t('loops.no_my_tasks'))}</li>`
  if ($('tasks').dataset.html !== html) { $('tasks').innerHTML = html; $('tasks').dataset.html = html }
  $('tcount').textContent = String(tasks.length)
  renderPrimary(cur)
}

function renderPrimary(cur) {
  const b = $('primary-btn')
  if (!cur && tasks.length) {
    // no incident waits: my first task's next step
    const f = tasks[0]
    const step = nextStep(f)
    b.disabled = busy
    b.dataset.name = ''
    b.dataset.action = ''
    b.dataset.task = taskName(f)
    b.dataset.step = step
    b.textContent = t('task_action.' + step)
    $('primary-what').textContent = `${t('loops.task')} · ${(f.properties || {}).title || ''}`
    return
  }
  b.dataset.task = ''
  b.dataset.step = ''
  if (!cur) {
    b.disabled = true
    b.textContent = t('field.primary_none')
    b.dataset.name = ''
    b.dataset.action = ''
    $('primary-what').textContent = ''
    return
  }
  const p = cur.properties || {}
  const a = NEXT[p.state]
  b.disabled = busy
  b.dataset.name = incName(cur)
  b.dataset.action = a
  b.textContent = t('action.' + a)
  const d = distanceTo(cur)
  $('primary-what').textContent = `${i18n.term('types', p.type)} · ${t('field.distance_to', { d: fmtDistance(d) })}`
}

async function act(name, action) {
  if (!worker) return toast(t('field.need_worker'), true)
  if (action === 'resolve') return openResolve(name)
  const body = {}
  if (action === 'arrive' && me) {
    // where I am: the GPS fix (or the chosen position when there is none)
    const at = lastGPS ? lastGPS.at : me
    body.lon = +at[0].toFixed(7)
    body.lat = +at[1].toFixed(7)
  }
  busy = true
  render()
  try {
    await api(`/api/incidents/${encodeURIComponent(name)}/${action}`, { method: 'POST', action: true, role: 'field', subject: worker, body })
    toast(t('field.done_action', { action: t('action.' + action), name: incLabel(name) }))
  } catch (err) {
    toast(i18n.error(err), true)
  } finally {
    busy = false
  }
  await refresh()
}

// ---- resolve: note and photo ------------------------------------------------

let resolving = ''
function openResolve(name) {
  resolving = name
  $('rnote').value = ''
  $('rphoto').value = ''
  $('resolve-sheet').querySelector('.photo-name').textContent = t('loops.no_photo')
  $('resolve-sheet').hidden = false
  $('rnote').focus()
}

$('rcancel').addEventListener('click', () => { $('resolve-sheet').hidden = true; resolving = '' })
$('resolve-sheet').addEventListener('submit', async (e) => {
  e.preventDefault()
  const note = $('rnote').value.trim()
  if (!note) return toast(t('field.note_required'), true)
  const file = $('rphoto').files && $('rphoto').files[0]
  if (file && file.size > 4 * 1024 * 1024) return toast(t('field.photo_too_big'), true)
  const name = resolving
  busy = true
  try {
    if (file) {
      toast(t('field.uploading'))
      await api(`/api/incidents/${encodeURIComponent(name)}/evidence`, { method: 'POST', action: true, role: 'field', subject: worker, body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } })
    }
    await api(`/api/incidents/${encodeURIComponent(name)}/resolve`, { method: 'POST', action: true, role: 'field', subject: worker, body: { note } })
    $('resolve-sheet').hidden = true
    resolving = ''
    toast(t('field.done_action', { action: t('action.resolve'), name: incLabel(name) }))
  } catch (err) {
    toast(i18n.error(err), true)
  } finally {
    busy = false
  }
  await refresh()
})

// ---- report -----------------------------------------------------------------

function renderTypes() {
  const sel = $('rtype')
  const v = sel.value
  sel.innerHTML = TYPES.map((x) => `<option value="${x}">${esc(i18n.term('types', x))}</option>`).join('')
  if (v) sel.value = v
}

$('report').addEventListener('submit', async (e) => {
  e.preventDefault()
  if (!me) return toast(t('field.need_position'), true)
  try {
    const f = await api('/api/incidents', { method: 'POST', action: true, role: 'field', subject: worker, body: { type: $('rtype').value, lon: me[0], lat: me[1], description: $('rdesc').value } })
    const inc = (f && f.incident) || {}
    toast(t(f && f.merged ? 'field.merged' : 'field.reported', { id: i18n.label(inc) }))
    $('rdesc').value = ''
  } catch (err) {
    toast(i18n.error(err), true)
  }
  refresh()
})

// ---- wiring -----------------------------------------------------------------

$('nearby').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-action]')
  if (b) act(b.dataset.name, b.dataset.action)
})
$('mine').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-action]')
  if (b) act(b.dataset.name, b.dataset.action)
})
$('primary-btn').addEventListener('click', (e) => {
  const b = e.currentTarget
  if (b.dataset.name && b.dataset.action) act(b.dataset.name, b.dataset.action)
  else if (b.dataset.task && b.dataset.step) taskAct(b.dataset.task, b.dataset.step)
})
$('tasks').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-task]')
  if (b) taskAct(b.dataset.task, b.dataset.step)
})
// the chosen photo's name beside the (translated) picker: the browser's own file button is hidden
for (const input of document.querySelectorAll('.photo-pick input[type=file]')) {
  input.addEventListener('change', () => {
    const f = input.files && input.files[0]
    const el = input.parentElement.querySelector('.photo-name')
    el.textContent = f ? `${f.name} · ${Math.max(1, Math.round(f.size / 1024))} KB` : t('loops.no_photo')
  })
}
$('tcancel').addEventListener('click', () => { $('task-sheet').hidden = true; reporting = '' })
$('task-sheet').addEventListener('submit', async (e) => {
  e.preventDefault()
  const note = $('tnote').value.trim()
  if (!note) return toast(t('field.note_required'), true)
  const file = $('tphoto').files && $('tphoto').files[0]
  if (file && file.size > 4 * 1024 * 1024) return toast(t('field.photo_too_big'), true)
  const name = reporting
  busy = true
  try {
    const a = await taskAccess()
    const tok = a && a.token ? { token: a.token } : {}
    const photos = []
    if (file) {
      // the photo first (the task's evidence), then the report naming it
      toast(t('field.uploading'))
      const r = await api(`/api/tasks/${encodeURIComponent(name)}/evidence`, { method: 'POST', action: true, role: 'field', subject: worker, body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' }, ...tok })
      if (r && r.evidence && r.evidence.id) photos.push(r.evidence.id)
    }
    await api(`/api/tasks/${encodeURIComponent(name)}/report`, { method: 'POST', action: true, role: 'field', subject: worker, body: { note, photos }, ...tok })
    $('task-sheet').hidden = true
    reporting = ''
    const f = tasks.find((x) => taskName(x) === name)
    toast(t('loops.done', { action: t('task_action.report'), title: (f && f.properties.title) || name }))
  } catch (err) {
    toast(i18n.error(err), true)
  } finally {
    busy = false
  }
  await refresh()
})
$('worker').value = worker
$('worker').addEventListener('change', (e) => setWorker(e.target.value.trim()))
$('worker-pick').addEventListener('change', (e) => setWorker(e.target.value))
$('duty').addEventListener('click', () => setDuty(!duty.on))
if (demo) {
  $('worker').hidden = true
  $('worker-pick').hidden = false
  renderWorkers()
}
$('locate').addEventListener('click', locate)
$('radius').addEventListener('change', refresh)

i18n.apply(document)
langButton($('lang'))
i18n.onChange(() => { renderTypes(); renderWorkers(); renderPos(); setDuty(duty.on); render() })
renderTypes()
setDuty(false)
setInterval(render, 1000)
setInterval(refresh, 10000)

map.on('load', () => {
  map.jumpTo({ pitch: 0 }) // flat is easier to read on a phone
  map.addSource('nearby', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'nearby', type: 'circle', source: 'nearby', paint: { 'circle-radius': 8, 'circle-color': '#ff7043', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } })
  const lon = parseFloat(q0.get('lon')), lat = parseFloat(q0.get('lat'))
  if (isFinite(lon) && isFinite(lat)) setPosition(lon, lat, 'chosen')
  else locate()
  if (worker && localStorage.getItem('citytwin.duty')) setDuty(true)
  window.__twin.ready = true
})
map.on('click', (e) => { if (!duty.on) setPosition(e.lngLat.lng, e.lngLat.lat, 'chosen') })
map.on('error', (e) => console.warn('map:', e && e.error ? e.error.message : e))

window.__twin = {
  map, ready: false, demo, refresh, i18n,
  nearby: () => lastNearby, // as /api/nearby returned them: nearest first
  listed: () => listed.map((f) => f.id), // as shown: mine first
  mine: () => myIncidents.map((f) => f.id),
  tasks: () => tasks.map((f) => f.id),
  current: () => { const c = current(mergeById(lastNearby, myIncidents), worker); return c ? c.id : null },
  workers: () => nearWorkers.map((f) => f.id),
  worker: () => worker,
  position: () => me,
  duty: () => ({ on: duty.on, sent: duty.sent }),
}
