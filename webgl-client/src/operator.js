// Operator view (/): the city command centre's wall screen (issue 14). The
// page wires its parts; each panel is its own module under op/ so more
// (a time bar, directives, tasks) can plug in:
//   op/alerts.js     alerts: filters, groups by rule and tier, bulk ack
//   op/incidents.js  incidents with their 1-5-10 clocks
//   op/kpis.js       big numbers, trend, district ranking
//   op/inspector.js  each object as an operator reads it, with its actions
//   op/maplayers.js  live map layers (incremental updateData), labels, legend
//   op/directives.js directives: send one from the map, follow its roll-up
//   op/tasks.js      tasks and enforcement cases in the inspector
//
// Two websockets: `link` follows the map view and feeds the map's live
// layers; `tierLink` subscribes to alerts and incidents over the chosen
// tier's region (whatever the view) and feeds the panels. Text comes from
// the catalogue (i18n.js), zh-CN by default. Exposes window.__twin for the
// end-to-end test.
import { createMap, viewBBox, geomBBox, geomCenter, esc, toast } from './common.js'
import { initToken, api, fetchAllItems, wsURL } from './api.js'
import { LiveStore } from './store.js'
import { LiveLink } from './live.js'
import { Interpolator } from './interp.js'
import { tierBBox, WORLD_BBOX, padBBox } from './panels.js'
import { startFrameMeter } from './perf.js'
import { i18n, t, langButton } from './i18n.js'
import { createAlertsPanel } from './op/alerts.js'
import { createIncidentsPanel } from './op/incidents.js'
import { createKpis } from './op/kpis.js'
import { createInspector } from './op/inspector.js'
import { LIVE, addLayers, sourceWriter, setDistrictLabels, buildToggles, buildLegend } from './op/maplayers.js'
import { createTimebar } from './timebar.js'
import { createDirectives } from './op/directives.js'
import { addCaseLayers, showCaseOnMap } from './op/tasks.js'
import { regionAt } from './loops.js'

initToken()

const $ = (id) => document.getElementById(id)
const CITY = '500000'
// tasks and directives ride the panels' link too: the directives panel and
// the inspector's roll-ups follow them live
const PANEL_LAYERS = ['alerts', 'incidents', 'tasks', 'directives']
// Start looking straight down at the middle of the urban districts; the
// regions' bounds refine it once loaded.
const map = createMap('map', { center: [106.53, 29.6], zoom: 10.3, pitch: 0, bearing: 0 })
const interp = new Interpolator()
const writers = new Map()

const store = new LiveStore({
  onFlush(layer, features, changes) {
    let w = writers.get(layer)
    if (!w) {
      const src = map.getSource('ws-' + layer)
      if (!src) return
      writers.set(layer, (w = sourceWriter(src, layer)))
    }
    const now = performance.now()
    const position = layer === 'vehicles' ? (f) => (f.geometry && f.geometry.type === 'Point' ? interp.position(f.id, now) : undefined) : () => undefined
    w.flush(features, changes, (id) => store.get(id), position, layer === 'vehicles' ? interp.movingIds(now) : [])
    if (inspector.current && changes.ids.has(inspector.current)) inspector.changed(store.get(inspector.current))
    if (inspector.current && inspector.current.startsWith(layer + '/')) showSelected(inspector.current)
  },
})
store.changeHooks.add((id, f) => {
  if (!id.startsWith('vehicles/')) return
  if (!f) interp.remove(id)
  else if (f.geometry && f.geometry.type === 'Point') interp.fix(id, f.geometry.coordinates, performance.now())
})

// Flush less often as the vehicle count grows: glides still look
// continuous at 4-10 Hz and the worker re-tiles less.
function tuneInterval() {
  const n = store.count('vehicles')
  store.minIntervalMs = n > 20000 ? 500 : n > 5000 ? 250 : n > 1000 ? 100 : 0
}

// Keep gliding vehicles moving between deltas.
function animate() {
  if (interp.moving(performance.now())) store.touch('vehicles')
  requestAnimationFrame(animate)
}

const link = new LiveLink({ store, layers: LIVE, url: wsURL, onStatus: showStatus })

// One badge for both links: live only when both are; while the time bar
// replays, "回放" and the replayed moment (issue 17), back to 实时 after.
let timebar = null
function showStatus() {
  const b = $('status')
  const links = [link, tierLink].filter(Boolean)
  const down = links.find((l) => l.status !== 'live')
  const replay = !down && timebar && timebar.replaying
  const text = down ? (down.status === 'connecting' ? t('app.connecting') : t('app.stale', { n: down.attempt }))
    : replay ? t('replay.badge', { t: i18n.time(timebar.now(), 'datetime') }) : t('app.live')
  if (b.textContent !== text) b.textContent = text
  const cls = 'badge ' + (down ? 'stale' : replay ? 'replay' : 'ok')
  if (b.className !== cls) b.className = cls
  document.body.classList.toggle('replaying', !!replay)
  // the big numbers come from the live summary: say so while the panels replay
  $('kpis').dataset.note = replay ? t('replay.kpis_live') : ''
}

// The panels' store: every alert and incident of the chosen tier.
const tierStore = new LiveStore()
const tierLink = new LiveLink({ store: tierStore, layers: PANEL_LAYERS, url: wsURL, onStatus: showStatus })
// The time bar replays both links (map and panels) from a past moment.
timebar = createTimebar({ root: document.body, links: [link, tierLink], t, i18n, onChange: () => showStatus() })

// ---- regions and tier ------------------------------------------------------

let regions = []
const regionByCode = new Map()
let tier = CITY

const regionName = (code) => {
  const f = regionByCode.get(code)
  return f ? i18n.name(f.properties, code) : code === CITY ? i18n.name({ name: 'Chongqing', name_zh: '重庆市' }) : ''
}
const districts = () => regions.filter((f) => f.properties.level === 'district')
  .sort((a, b) => String(a.properties.code).localeCompare(String(b.properties.code)))
  .map((f) => ({ code: f.properties.code, name: i18n.name(f.properties, f.properties.code) }))
function tierInfo() {
  const f = regionByCode.get(tier)
  return { code: tier, isCity: tier === CITY || (f ? f.properties.level === 'city' : regions.length === 0) }
}

function renderTierOptions() {
  const byLevel = (lv) => regions.filter((f) => f.properties.level === lv).sort((a, b) => String(a.properties.code).localeCompare(String(b.properties.code)))
  const opt = (f, indent) => `<option value="${esc(f.properties.code)}">${indent}${esc(i18n.name(f.properties, f.properties.code))}</option>`
  let html = byLevel('city').map((f) => opt(f, '')).join('') || `<option value="${CITY}">${esc(regionName(CITY))}</option>`
  for (const d of byLevel('district')) {
    html += opt(d, '— ')
    html += byLevel('street').filter((s) => s.properties.parent === d.properties.code).map((s) => opt(s, '　— ')).join('')
  }
  const sel = $('tier')
  sel.innerHTML = html
  sel.value = tier
}

async function loadRegions() {
  const { features } = await fetchAllItems('/ogc/collections/regions/items?limit=1000', 5000)
  regions = features
  regionByCode.clear()
  for (const f of features) regionByCode.set(f.properties.code, f)
  renderTierOptions()
  alertsPanel.setDistricts(districts())
  if (map.loaded()) setDistrictLabels(map, districts().map((d) => regionByCode.get(d.code)))
}

function fitCity(duration = 0) {
  const b = tierBBox(regions.filter((f) => f.properties.level === 'district'), CITY)
  if (b && b[0] > -180) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 30, duration, pitch: 0, bearing: 0 })
}

async function selectTier(code, fly = true) {
  tier = code
  const f = regionByCode.get(code)
  const src = map.getSource('tier')
  if (src) src.setData({ type: 'FeatureCollection', features: f && f.properties.level !== 'city' ? [f] : [] })
  tierLink.setBBox(tierBBox(regions, code))
  renderPanels()
  if (fly && f) {
    if (tierInfo().isCity) fitCity(800)
    else {
      const b = geomBBox(f.geometry)
      if (b) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 40, duration: 800 })
    }
  }
  await kpis.refresh()
}

// ---- panels -----------------------------------------------------------------

function openObject(id) {
  const f = tierStore.get(id) || store.get(id)
  const c = geomCenter(f && f.geometry)
  if (c) map.flyTo({ center: c, zoom: Math.max(map.getZoom(), 15), essential: true })
  inspector.open(id)
  showSelected(id)
}

function showSelected(id) {
  const f = id && (store.get(id) || tierStore.get(id))
  const c = f && geomCenter(f.geometry)
  map.getSource('selected')?.setData({ type: 'FeatureCollection', features: c ? [{ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: c } }] : [] })
}

// Objects the panels name but neither store holds (an assignee or an
// alert's subject outside the view): fetched once each, then named.
const fetched = new Map()
const lookup = (id) => {
  const f = store.get(id) || tierStore.get(id) || fetched.get(id)
  if (f || fetched.has(id) || !/^(workers|vehicles|buildings|devices|tasks)\//.test(String(id))) return f || undefined
  fetched.set(id, null)
  const [layer, ...rest] = String(id).split('/')
  api(`/api/entities/${encodeURIComponent(layer)}/${encodeURIComponent(rest.join('/'))}`).then((w) => { fetched.set(id, w); renderPanels() }, () => {})
  return undefined
}
// A worker's (or any object's) display name: never its internal id (names.js).
const nameOf = (id) => {
  const f = lookup(id)
  return i18n.label(f ? { ...f, id } : { id, properties: {} })
}
// ages and clocks in the panels run on the replayed time during a replay
const panelNow = () => (timebar ? timebar.now() : Date.now())
const alertsPanel = createAlertsPanel({ root: $('alerts-panel'), alerts: () => tierStore.layer('alerts'), tier: tierInfo, regionName, open: openObject, lookup, now: panelNow })
const incidentsPanel = createIncidentsPanel({ root: $('incidents-panel'), incidents: () => tierStore.layer('incidents'), tier: tierInfo, regionName, open: openObject, nameOf, now: panelNow })
const overdueIncidents = () => tierStore.layer('incidents').filter((f) => {
  const p = f.properties || {}
  const by = p.sla && (p.state === 'dispatched' ? p.sla.accept_by : p.state === 'accepted' ? p.sla.arrive_by : p.state === 'arrived' ? p.sla.report_by : null)
  return by && Date.parse(by) < Date.now()
})
const kpis = createKpis({
  kpis: $('kpis'), side: $('indicators'), tierCode: () => tier, districts,
  alerts: () => tierStore.layer('alerts').filter((f) => f.properties && f.properties.state !== 'closed'), overdue: overdueIncidents, regionName,
})
const inspector = createInspector({
  box: $('inspector'),
  live: (id) => store.get(id) || tierStore.get(id),
  alerts: () => tierStore.layer('alerts'),
  regionName,
  showTrack: (fc) => map.getSource('history')?.setData(fc),
  flyTo: (c) => map.flyTo({ center: c, zoom: Math.max(map.getZoom(), 15) }),
  nameOf,
  lookup,
  showCase: (fc) => { shownCase = fc; showCaseOnMap(map, fc) },
  fitBounds: (b) => map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 120, maxZoom: 16.5, duration: 600 }),
  tasks: () => tierStore.layer('tasks'),
})
let shownCase = null // the enforcement case's evidence on the map (test hook)
const directives = createDirectives({
  root: $('directives-panel'), host: document.querySelector('.center'), map, regions: () => regions, regionName,
  tier: () => tier, directives: () => tierStore.layer('directives'), open: (id) => inspector.open(id),
})

function renderPanels() {
  alertsPanel.render()
  incidentsPanel.render()
}

// What a click on the map opens, first match wins: people and things that
// move, then devices, then the building (not the alert drawn on it), and
// alerts only where nothing else is.
const CLICK_ORDER = ['ws-workers', 'ws-vehicles', 'ws-incidents', 'devices', 'buildings-3d', 'ws-alerts', 'bridges', 'grids-line']
function onMapClick(e) {
  if (directives.mapClick(e.lngLat)) return // picking a directive's targets
  const pad = 5
  const layers = CLICK_ORDER.filter((id) => map.getLayer(id))
  const hits = map.queryRenderedFeatures([[e.point.x - pad, e.point.y - pad], [e.point.x + pad, e.point.y + pad]], { layers })
  const rank = (h) => CLICK_ORDER.indexOf(h.layer.id)
  const hit = hits.filter((h) => h.properties && typeof h.properties.id === 'string' && h.properties.id.includes('/')).sort((a, b) => rank(a) - rank(b))[0]
  if (hit) {
    inspector.open(hit.properties.id)
    showSelected(hit.properties.id)
  }
}

// ---- wall mode and clock ----------------------------------------------------

function setWall(on) {
  document.body.classList.toggle('wall', on)
  $('wall').textContent = on ? t('app.console_mode') : t('app.wall_mode')
  try { localStorage.setItem('citytwin.wall', on ? '1' : '0') } catch { /* not persisted */ }
  setTimeout(() => map.resize(), 50)
}
function tickClock() {
  const now = Date.now()
  $('clock').innerHTML = `${esc(t('app.city_time'))} ${i18n.timeHTML(now, 'time')}`
}

// ---- test hooks -------------------------------------------------------------

let meter = null
async function bench({ n = 10000, seconds = 10 } = {}) {
  // Synthetic load: n vehicles around the view centre, each updated once a
  // second (spread over the frames of the second), through the same JSON
  // decode -> store -> incremental updateData path as websocket deltas.
  link.stop()
  const c = map.getCenter()
  const pos = new Float64Array(n * 2)
  const ver = new Uint32Array(n)
  for (let i = 0; i < n; i++) { pos[2 * i] = c.lng + (Math.random() - 0.5) * 0.3; pos[2 * i + 1] = c.lat + (Math.random() - 0.5) * 0.2 }
  const mk = (i) => {
    pos[2 * i] += (Math.random() - 0.5) * 0.0005; pos[2 * i + 1] += (Math.random() - 0.5) * 0.0005; ver[i]++
    return JSON.stringify({ op: 'delta', seq: store.seq + 1, kind: 'upsert', feature: { type: 'Feature', id: `vehicles/bench-${i}`, layer: 'vehicles', version: ver[i], geometry: { type: 'Point', coordinates: [pos[2 * i], pos[2 * i + 1]] }, properties: { kind: i % 3 ? 'muck_truck' : 'patrol', speed_kmh: 30, heading: 90 } } })
  }
  // Baseline: the same view with no synthetic load, so the figure below
  // separates our cost from the renderer's (software GL in CI is slow).
  const idle = startFrameMeter()
  await new Promise((r) => setTimeout(r, Math.min(3000, seconds * 300)))
  const baseline = idle.stop()
  const t0load = performance.now()
  for (let i = 0; i < n; i++) store.handle(JSON.parse(mk(i)))
  const loadMs = performance.now() - t0load
  await new Promise((r) => setTimeout(r, 500))
  let jsMs = 0
  const flushMs0 = store.flushMs
  const w = writers.get('vehicles')
  const st0 = w ? { ...w.stats } : { setData: 0, updates: 0, featuresSent: 0 }
  // main-thread busy time: long tasks (>50 ms) as the browser reports them
  let longMs = 0
  const po = typeof PerformanceObserver !== 'undefined' && PerformanceObserver.supportedEntryTypes?.includes('longtask')
    ? new PerformanceObserver((l) => { for (const e of l.getEntries()) longMs += e.duration }) : null
  if (po) po.observe({ type: 'longtask', buffered: false })
  const m = startFrameMeter()
  const t0 = performance.now()
  let next = 0
  let sent = 0
  await new Promise((resolve) => {
    const tick = () => {
      const tt = performance.now() - t0
      if (tt >= seconds * 1000) return resolve()
      const due = Math.floor((tt / 1000) * n) // n updates per second
      // the messages as the websocket would hand them over (making them is the bench's cost, not the page's)
      const batch = []
      for (; sent < due; sent++) { batch.push(mk(next)); next = (next + 1) % n }
      const j0 = performance.now()
      for (const m of batch) store.handle(JSON.parse(m))
      jsMs += performance.now() - j0
      tuneInterval()
      requestAnimationFrame(tick)
    }
    requestAnimationFrame(tick)
  })
  if (po) po.disconnect()
  const frames = m.stop()
  const st1 = w ? w.stats : st0
  const flushMs = store.flushMs - flushMs0
  const res = {
    ...frames, objects: n, updatesPerSec: Math.round(sent / seconds), flushIntervalMs: store.minIntervalMs, initialLoadMs: Math.round(loadMs),
    // main-thread milliseconds per second of load: decoding+applying deltas, and building/sending the source diffs
    decodeApplyMsPerSec: +(jsMs / seconds).toFixed(1), flushMsPerSec: +(flushMs / seconds).toFixed(1),
    mainThreadMsPerSec: +((jsMs + flushMs) / seconds).toFixed(1), longTaskMsPerSec: po ? +(longMs / seconds).toFixed(1) : null,
    sourceUpdates: st1.updates - st0.updates, sourceSetData: st1.setData - st0.setData,
    idle: { fps: baseline.fps, p50ms: baseline.p50ms, p95ms: baseline.p95ms },
  }
  for (let i = 0; i < n; i++) store.handle({ op: 'delta', seq: store.seq + 1, kind: 'remove', feature: { id: `vehicles/bench-${i}`, layer: 'vehicles', version: ver[i] } })
  link.viewChanged = true
  link.start()
  return res
}

window.__twin = {
  store, map, link, interp, tierStore, tierLink, i18n, writers, timebar,
  ready: false,
  count: (layer) => store.count(layer),
  feature: (id) => store.get(id) || tierStore.get(id),
  /** ids listed in the alerts / incidents panels, in their order */
  panel: (layer) => [...document.querySelectorAll(`#${layer === 'alerts' ? 'alert-groups' : 'incidents'} li.row`)].map((li) => li.dataset.id),
  expandAlerts: () => alertsPanel.expandAll(),
  summary: () => kpis.summary(),
  trend: () => kpis.trend(tier),
  tier: () => tier,
  selectTier: (code) => { $('tier').value = code; return selectTier(code) },
  inspect: (id) => inspector.open(id),
  inspected: () => inspector.current,
  /** directive ids listed in the directives panel, newest first */
  directives: () => directives.listed(),
  directiveTargets: () => directives.targets(),
  directiveView: () => inspector.view,
  /** the region code of a level under a point (what a click picks for a directive) */
  regionAt: (lon, lat, level) => regionAt(regions, [lon, lat], level),
  /** the features of the case drawn on the map (track, fixes, cameras) */
  caseShown: () => shownCase,
  setWall,
  /** the style's vector tiles are loaded (the live GeoJSON sources re-tile all the time as the city moves) */
  tilesLoaded: () => ['twin', 'live'].every((id) => !map.getSource(id) || map.isSourceLoaded(id)),
  bench,
  frames: () => (meter ? meter.peek() : null),
}

// ---- wiring -----------------------------------------------------------------

i18n.apply(document)
langButton($('lang'))
const toggles = buildToggles(map, $('toggles'))
buildLegend($('legend'))
i18n.onChange(() => {
  showStatus()
  renderTierOptions()
  alertsPanel.relabel()
  incidentsPanel.relabel()
  kpis.render()
  inspector.relabel()
  directives.relabel()
  timebar.relabel()
  toggles.relabel()
  buildLegend($('legend'))
  setWall(document.body.classList.contains('wall'))
  tickClock()
  showCounts()
  if (map.loaded()) setDistrictLabels(map, districts().map((d) => regionByCode.get(d.code)))
})
api('/api/rules?format=json').then((doc) => { i18n.setRules(doc.rules); renderPanels() }).catch((err) => console.warn('rules:', err.message))
$('tier').addEventListener('change', (e) => selectTier(e.target.value))
$('wall').addEventListener('click', () => setWall(!document.body.classList.contains('wall')))
let wallOn = false
try { wallOn = localStorage.getItem('citytwin.wall') === '1' } catch { /* default console */ }
setWall(wallOn)
tierStore.listeners.add((layers) => {
  if (layers.has('alerts')) alertsPanel.render()
  if (layers.has('incidents')) incidentsPanel.render()
  if (layers.has('directives')) directives.render()
  if (layers.has('tasks') || layers.has('directives')) inspector.tasksChanged()
  if (inspector.current && !inspector.current.startsWith('workers/') && !inspector.current.startsWith('vehicles/')) inspector.changed(tierStore.get(inspector.current))
})
const showCounts = () => { $('counts').textContent = LIVE.map((l) => `${t('layers.' + l)} ${i18n.num(store.count(l))}`).join(' · ') }
store.listeners.add((layers) => {
  if (layers.has('vehicles')) tuneInterval()
  showCounts()
})
// Ages and SLA clocks tick in place; rows are only rebuilt when they change.
setInterval(() => { renderPanels(); inspector.tick(); tickClock(); showStatus() }, 1000)
setInterval(() => kpis.refresh(), 5000)
tickClock()

map.on('load', () => {
  addLayers(map)
  addCaseLayers(map)
  directives.addLayers()
  if (regions.length) {
    setDistrictLabels(map, districts().map((d) => regionByCode.get(d.code)))
    fitCity()
  }
  followView()
  link.start()
  requestAnimationFrame(animate)
  window.__twin.ready = true
  meter = startFrameMeter()
})
// Subscribe to the view plus a margin, and re-subscribe (a full snapshot)
// only when the view leaves what is held: small pans cost nothing.
function followView() {
  const v = viewBBox(map)
  const held = link.bbox
  if (held && v[0] >= held[0] && v[1] >= held[1] && v[2] <= held[2] && v[3] <= held[3] && (v[2] - v[0]) * 4 > held[2] - held[0]) return
  link.setBBox(padBBox(v, 0.4))
}
map.on('moveend', followView)
map.on('click', onMapClick)
map.on('error', (e) => console.warn('map:', e && e.error ? e.error.message : e))
tierLink.start()
loadRegions().then(() => {
  if (map.loaded()) fitCity()
  return selectTier(tier, false)
}).catch((err) => {
  toast(t('app.stale', { n: 0 }) + ' ' + i18n.error(err), true)
  tierLink.setBBox(WORLD_BBOX)
})
