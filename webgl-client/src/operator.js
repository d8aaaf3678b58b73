// Operator view (/): the city from this server's style, live layers from the
// websocket, alerts/incidents/indicator panels, inspector, layer toggles and
// the risk legend. Exposes window.__twin for the end-to-end test.
//
// Two websockets: `link` follows the map view and feeds the map's live
// layers; `tierLink` subscribes to alerts and incidents over the chosen
// tier's region (whatever the view) and feeds the panels, so an operator sees
// every open alert and incident of the tier without panning to it.
import { createMap, addRegionLabels, viewBBox, geomBBox, geomCenter, esc, fmtValue, toast, RISK, colourHex, colourExpr } from './common.js'
import { initToken, api, fetchAllItems, wsURL } from './api.js'
import { LiveStore } from './store.js'
import { LiveLink } from './live.js'
import { Interpolator } from './interp.js'
import { selectAlerts, selectIncidents, tierBBox, alertSince, WORLD_BBOX } from './panels.js'
import { startFrameMeter } from './perf.js'
import { i18n, t, langButton } from './i18n.js'

initToken()

const LIVE = ['vehicles', 'workers', 'incidents', 'alerts']
const $ = (id) => document.getElementById(id)
const map = createMap('map')
const interp = new Interpolator()
const PANEL_LAYERS = ['alerts', 'incidents']
// Alert symbol radius (px) per tier: the higher the tier, the larger the ring.
const TIER_RADIUS = { street: 9, district: 12, city: 16 }

// What the map draws per live layer: only the props the layers style on, so
// a 10,000-vehicle setData stays small.
const renderProps = {
  vehicles: (f) => ({ id: f.id, kind: f.properties.kind, heading: f.properties.heading || 0 }),
  workers: (f) => ({ id: f.id, status: f.properties.status }),
  incidents: (f) => ({ id: f.id, state: f.properties.state, type: f.properties.type }),
  alerts: (f) => ({ id: f.id, severity: f.properties.severity, state: f.properties.state, rule: f.properties.rule, tier: f.properties.tier }),
}

function toRendered(layer, f, now) {
  if (!f.geometry) return null
  let geometry = f.geometry
  if (layer === 'vehicles' && f.geometry.type === 'Point') {
    const p = interp.position(f.id, now)
    if (p) geometry = { type: 'Point', coordinates: p }
  }
  return { type: 'Feature', geometry, properties: renderProps[layer](f) }
}

const store = new LiveStore({
  onFlush(layer, features) {
    const src = map.getSource('ws-' + layer)
    if (!src) return
    const now = performance.now()
    const out = []
    for (const f of features) {
      const r = toRendered(layer, f, now)
      if (r) out.push(r)
    }
    src.setData({ type: 'FeatureCollection', features: out })
  },
})
store.changeHooks.add((id, f) => {
  if (!id.startsWith('vehicles/')) return
  if (!f) interp.remove(id)
  else if (f.geometry && f.geometry.type === 'Point') interp.fix(id, f.geometry.coordinates, performance.now())
})

// Flush less often as the vehicle count grows: setData of 10,000 points
// every frame would swamp the worker; glides still look continuous at 4-10 Hz.
function tuneInterval() {
  const n = store.count('vehicles')
  store.minIntervalMs = n > 5000 ? 250 : n > 1000 ? 100 : 0
}

// Keep gliding vehicles moving between deltas.
function animate() {
  if (interp.moving(performance.now())) store.touch('vehicles')
  requestAnimationFrame(animate)
}

const link = new LiveLink({
  store,
  layers: LIVE,
  url: wsURL,
  onStatus: showStatus,
})

// One badge for both links: live only when the map's and the panels' links
// both are, so stale panels are never shown as live.
function showStatus() {
  const b = $('status')
  const links = [link, tierLink].filter(Boolean)
  const down = links.find((l) => l.status !== 'live')
  b.textContent = !down ? t('app.live') : down.status === 'connecting' ? t('app.connecting') : t('app.stale', { n: down.attempt })
  b.className = 'badge ' + (!down ? 'ok' : 'stale')
}

// The panels' store: every alert and incident of the chosen tier. Nothing is
// drawn from it, so its flushes only re-render the panels.
const tierStore = new LiveStore()
const tierLink = new LiveLink({ store: tierStore, layers: PANEL_LAYERS, url: wsURL, onStatus: showStatus })

// ---- map layers -------------------------------------------------------

function addLiveLayers() {
  for (const l of LIVE) {
    // maxzoom 12 / small buffer: points need no finer tiles (they overzoom
    // exactly), and each setData re-tiles less in the worker.
    map.addSource('ws-' + l, { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, maxzoom: 12, buffer: 16 })
    // the style also draws these from MVT; the websocket copy is the live one
    if (map.getLayer(l)) map.setLayoutProperty(l, 'visibility', 'none')
  }
  map.addSource('tier', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'tier-outline', type: 'line', source: 'tier', paint: { 'line-color': '#80deea', 'line-width': 2.5 } })
  map.addSource('history', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'history-line', type: 'line', source: 'history', filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': '#ffffff', 'line-width': 2, 'line-dasharray': [2, 1] } })
  map.addLayer({ id: 'history-points', type: 'circle', source: 'history', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-color': '#ffffff', 'circle-radius': 2.5 } })
  map.addLayer({
    id: 'ws-workers', type: 'circle', source: 'ws-workers',
    paint: { 'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 2.5, 15, 6], 'circle-color': ['match', ['get', 'status'], 'available', '#66bb6a', 'busy', '#ab47bc', '#78909c'], 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 1 },
  })
  map.addLayer({
    id: 'ws-vehicles', type: 'circle', source: 'ws-vehicles',
    paint: { 'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 2.5, 15, 7], 'circle-color': ['match', ['get', 'kind'], 'muck_truck', '#ffa726', 'patrol', '#29b6f6', '#eceff1'], 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 1 },
  })
  map.addLayer({
    id: 'ws-incidents', type: 'circle', source: 'ws-incidents',
    filter: ['!', ['in', ['get', 'state'], ['literal', ['resolved', 'closed']]]],
    paint: { 'circle-radius': 7, 'circle-color': '#ff7043', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 },
  })
  map.addLayer({
    id: 'ws-alerts', type: 'circle', source: 'ws-alerts',
    filter: ['!=', ['get', 'state'], 'closed'],
    paint: {
      'circle-radius': ['match', ['get', 'tier'], ...Object.entries(TIER_RADIUS).flat(), TIER_RADIUS.district],
      'circle-color': colourExpr('severity'), 'circle-opacity': 0.55, 'circle-stroke-color': colourExpr('severity'), 'circle-stroke-width': 2.5,
    },
  })
  addRegionLabels(map)
}

// Layer toggles: label -> the style/page layers it switches.
const TOGGLES = [
  ['buildings', ['buildings-3d']], ['roads', ['roads']], ['rivers', ['rivers-fill', 'rivers-line']],
  ['bridges', ['bridges', 'bridges-glow']], ['regions', ['regions-fill', 'regions-city', 'regions-district', 'regions-street', 'tier-outline', 'region-labels']],
  ['grids', ['grids-line']], ['devices', ['devices']], ['vehicles', ['ws-vehicles']], ['workers', ['ws-workers']],
  ['incidents', ['ws-incidents']], ['alerts', ['ws-alerts']],
]

function buildToggles() {
  const box = $('toggles')
  box.innerHTML = TOGGLES.map(([name]) => `<label><input type="checkbox" data-layer="${name}" checked> ${name}</label>`).join('')
  box.addEventListener('change', (e) => {
    const name = e.target.dataset.layer
    const ids = TOGGLES.find((t) => t[0] === name)[1]
    for (const id of ids) if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', e.target.checked ? 'visible' : 'none')
  })
}

function buildLegend() {
  const ring = (px) => `<span class="ring-box"><span class="ring" style="width:${2 * px}px;height:${2 * px}px"></span></span>`
  $('legend').innerHTML = '<b>risk / severity</b>' + RISK.map((r) => `<div><span class="dot" style="background:${r.hex}"></span>${esc(r.label)}</div>`).join('') +
    '<div class="sep"></div><b>alert tier (ring size; colour = severity)</b>' + Object.entries(TIER_RADIUS).map(([t, px]) => `<div class="tier-entry" data-tier="${t}">${ring(px)}${t}</div>`).join('') +
    '<div class="sep"></div><div><span class="dot" style="background:#ffa726"></span>muck truck</div><div><span class="dot" style="background:#29b6f6"></span>patrol</div><div><span class="dot" style="background:#66bb6a"></span>worker</div><div><span class="dot" style="background:#ff7043;border:2px solid #fff"></span>incident</div>'
}

// ---- panels -------------------------------------------------------------

function flyToFeature(f) {
  const c = geomCenter(f && f.geometry)
  if (c) map.flyTo({ center: c, zoom: Math.max(map.getZoom(), 15), essential: true })
}

function tierInfo() {
  const f = regions.find((r) => r.properties.code === tier)
  return { code: tier, isCity: tier === '500000' || (f ? f.properties.level === 'city' : regions.length === 0) }
}

function renderAlerts() {
  const now = Date.now()
  const alerts = selectAlerts(tierStore.layer('alerts'), tierInfo())
  $('alerts-count').textContent = String(alerts.length)
  $('alerts').innerHTML = alerts.slice(0, 200).map((a) => {
    const p = a.properties
    const name = a.id.slice('alerts/'.length)
    return `<li class="row" data-id="${esc(a.id)}" data-rule="${esc(p.rule)}"><span class="dot" style="background:${colourHex(p.severity)}"></span>
      <div class="grow"><div><b>${esc(i18n.rule(p.rule))}</b> <span class="muted">${esc(i18n.term('tier', p.tier))}</span></div>
      <div class="muted small">${esc(p.subject || '')} · ${esc(i18n.age(alertSince(a), now))} · ${esc(i18n.term('state', p.state))}</div></div>
      ${p.state === 'open' ? `<button class="ack" data-name="${esc(name)}">${esc(t('panel.ack'))}</button>` : ''}</li>`
  }).join('')
}

function renderIncidents() {
  const list = selectIncidents(tierStore.layer('incidents'), Date.now(), tierInfo())
  $('incidents-count').textContent = String(list.length)
  $('incidents').innerHTML = list.slice(0, 200).map(({ feature: f, sla }) => {
    const p = f.properties
    return `<li class="row" data-id="${esc(f.id)}"><div class="grow"><div><b>${esc(i18n.term('types', p.type))}</b> <span class="state ${esc(p.state)}">${esc(i18n.term('state', p.state))}</span></div>
      <div class="muted small">${esc(f.id.slice(10))}${p.assignee ? ' · ' + esc(p.assignee) : ''}${p.reports > 1 ? ' · ×' + esc(p.reports) : ''}</div></div>
      ${sla ? `<span class="sla ${sla.overdue ? 'overdue' : ''}">${esc(sla.text)}</span>` : ''}</li>`
  }).join('')
}

function onPanelClick(e) {
  const btn = e.target.closest('button.ack')
  if (btn) {
    e.stopPropagation()
    btn.disabled = true
    api(`/api/alerts/${encodeURIComponent(btn.dataset.name)}/ack`, { method: 'POST', action: true, role: 'operator' })
      .then(() => toast(`alert ${btn.dataset.name} acknowledged`))
      .catch((err) => { toast(err.message, true); btn.disabled = false })
    return
  }
  const row = e.target.closest('li.row')
  if (!row) return
  const f = tierStore.get(row.dataset.id) || store.get(row.dataset.id)
  flyToFeature(f)
  if (f) inspect(f.id)
}

// ---- tier selector and indicators --------------------------------------

let regions = []
let tier = '500000'
let lastSummary = null

async function loadRegions() {
  const { features } = await fetchAllItems('/ogc/collections/regions/items?limit=1000', 5000)
  regions = features
  const byLevel = (lv) => features.filter((f) => f.properties.level === lv).sort((a, b) => String(a.properties.code).localeCompare(String(b.properties.code)))
  const opt = (f, indent) => `<option value="${esc(f.properties.code)}">${indent}${esc(i18n.name(f.properties, f.properties.code))}</option>`
  const cities = byLevel('city')
  let html = cities.map((f) => opt(f, '')).join('') || '<option value="500000">City (500000)</option>'
  for (const d of byLevel('district')) {
    html += opt(d, '— ')
    html += byLevel('street').filter((s) => s.properties.parent === d.properties.code).map((s) => opt(s, '— — ')).join('')
  }
  const sel = $('tier')
  sel.innerHTML = html
  sel.value = tier
}

async function selectTier(code, fly = true) {
  tier = code
  const f = regions.find((r) => r.properties.code === code)
  const src = map.getSource('tier')
  if (src) src.setData({ type: 'FeatureCollection', features: f ? [f] : [] })
  tierLink.setBBox(tierBBox(regions, code))
  renderAlerts()
  renderIncidents()
  if (fly && f) {
    const b = geomBBox(f.geometry)
    if (b) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 40, duration: 800 })
  }
  await refreshSummary()
}

async function refreshSummary() {
  const code = tier
  try {
    const s = await api(`/api/regions/${encodeURIComponent(code)}/summary`)
    if (code !== tier) return
    lastSummary = s
    renderSummary(s)
  } catch (err) {
    $('indicators').innerHTML = `<div class="muted">${esc(err.message)}</div>`
  }
}

function renderSummary(s) {
  const chips = (obj, colour) => Object.entries(obj || {}).sort().map(([k, v]) =>
    `<span class="chip">${colour ? `<span class="dot" style="background:${colourHex(k)}"></span>` : ''}${esc(k)} <b>${esc(v)}</b></span>`).join('') || '<span class="muted">none</span>'
  const sla = s.sla || {}
  const dev = s.devices || {}
  $('indicators').innerHTML = `
    <div class="ind-title">${esc(s.name || s.code)} <span class="muted">${esc(s.level || '')} ${esc(s.code)}</span></div>
    <div class="ind"><span>open alerts</span><div>${chips(s.alerts_open, true)}</div></div>
    <div class="ind"><span>incidents</span><div>${chips(s.incidents_by_state)}</div></div>
    <div class="ind"><span>SLA compliance</span><div><b data-k="sla">${sla.compliance == null ? '–' : (sla.compliance * 100).toFixed(1) + '%'}</b> <span class="muted">${esc(sla.met ?? 0)} met · ${esc(sla.breached ?? 0)} breached of ${esc(sla.incidents ?? 0)}</span></div></div>
    <div class="ind"><span>devices online</span><div><b data-k="devices">${esc(dev.online ?? 0)} / ${esc(dev.total ?? 0)}</b> <span class="muted">${esc(dev.offline ?? 0)} offline</span></div></div>
    <div class="ind"><span>vehicles</span><div><b data-k="vehicles">${esc(s.vehicles ?? 0)}</b></div></div>
    <div class="ind"><span>workers</span><div>${chips(s.workers_by_status)}</div></div>
    <div class="ind"><span>buildings by risk</span><div>${chips(s.buildings_by_risk, true)}</div></div>`
}

// ---- inspector ------------------------------------------------------------

let inspected = null
const HISTORY_LAYERS = new Set(['vehicles', 'workers', 'devices'])

async function inspect(id, fallbackProps) {
  inspected = id
  const [layer, ...rest] = id.split('/')
  const name = rest.join('/')
  const box = $('inspector')
  box.classList.add('open')
  let f = store.get(id)
  if (!f) {
    try {
      f = await api(`/api/entities/${encodeURIComponent(layer)}/${encodeURIComponent(name)}`)
    } catch (err) {
      f = { id, layer, properties: fallbackProps || {}, error: err.message }
    }
  }
  if (inspected !== id) return
  const props = f.properties || {}
  const values = props.values && typeof props.values === 'object' ? props.values : null
  box.innerHTML = `<div class="insp-head"><b>${esc(id)}</b><button id="insp-close">×</button></div>
    ${f.error ? `<div class="muted">${esc(f.error)}</div>` : ''}
    <div class="muted small">version ${esc(f.version ?? '–')} · updated ${esc(f.updated || '–')} · ${esc((f.region || []).join(' › '))}</div>
    <table class="kv">${Object.entries(props).filter(([k]) => k !== 'values' && k !== 'history').map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmtValue(v))}</td></tr>`).join('')}</table>
    ${values ? `<h4>latest readings</h4><table class="kv">${Object.entries(values).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmtValue(v))}</td></tr>`).join('')}</table>` : ''}
    <h4>recent history</h4><div id="insp-history" class="muted small">${HISTORY_LAYERS.has(layer) ? 'loading…' : 'no telemetry history for this layer'}</div>`
  $('insp-close').onclick = () => { box.classList.remove('open'); inspected = null; map.getSource('history')?.setData({ type: 'FeatureCollection', features: [] }) }
  if (!HISTORY_LAYERS.has(layer)) return
  try {
    const h = await api(`/api/entities/${encodeURIComponent(layer)}/${encodeURIComponent(name)}/history?limit=50`) // newest first
    if (inspected !== id) return
    const feats = (h && h.features) || []
    const pts = feats.filter((x) => x.geometry && x.geometry.type === 'Point')
    const line = pts.length > 1 ? [{ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: pts.map((x) => x.geometry.coordinates) } }] : []
    map.getSource('history')?.setData({ type: 'FeatureCollection', features: [...line, ...pts] })
    $('insp-history').innerHTML = feats.length === 0 ? 'none yet' : `<table class="hist"><tr><th>time</th><th>km/h</th><th>heading</th><th>values</th></tr>${
      feats.slice(0, 50).map((x) => { const q = x.properties || {}; return `<tr><td>${esc(String(q.ts || '').replace('T', ' ').slice(5, 19))}</td><td>${esc(fmtValue(q.speed_kmh))}</td><td>${esc(fmtValue(q.heading))}</td><td>${esc(q.values ? fmtValue(q.values) : '')}</td></tr>` }).join('')}</table>`
  } catch (err) {
    if (inspected === id) $('insp-history').textContent = err.message
  }
}

function onMapClick(e) {
  const pad = 5
  const hits = map.queryRenderedFeatures([[e.point.x - pad, e.point.y - pad], [e.point.x + pad, e.point.y + pad]])
  const hit = hits.find((h) => h.properties && typeof h.properties.id === 'string' && h.properties.id.includes('/'))
  if (hit) inspect(hit.properties.id, hit.properties)
}

// ---- test hooks -------------------------------------------------------------

let meter = null
async function bench({ n = 10000, seconds = 10 } = {}) {
  // Synthetic load: n vehicles around the view centre, each updated once a
  // second (spread over the frames of the second), through the same JSON
  // decode -> store -> batched setData path as websocket deltas.
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
  // and the renderer alone: the map repainting every frame with no data change
  let painting = true
  const paint = () => { if (painting) { map.triggerRepaint(); requestAnimationFrame(paint) } }
  const rp = startFrameMeter()
  requestAnimationFrame(paint)
  await new Promise((r) => setTimeout(r, Math.min(3000, seconds * 300)))
  painting = false
  const repaint = rp.stop()
  for (let i = 0; i < n; i++) store.handle(JSON.parse(mk(i)))
  let jsMs = 0
  const flushMs0 = store.flushMs
  const m = startFrameMeter()
  const t0 = performance.now()
  let next = 0
  let sent = 0
  await new Promise((resolve) => {
    const tick = () => {
      const t = performance.now() - t0
      if (t >= seconds * 1000) return resolve()
      const due = Math.floor((t / 1000) * n) // n updates per second
      const j0 = performance.now()
      for (; sent < due; sent++) { store.handle(JSON.parse(mk(next))); next = (next + 1) % n }
      jsMs += performance.now() - j0
      tuneInterval()
      requestAnimationFrame(tick)
    }
    requestAnimationFrame(tick)
  })
  const res = {
    ...m.stop(), objects: n, updatesPerSec: Math.round(sent / seconds), flushIntervalMs: store.minIntervalMs,
    // main-thread milliseconds per second of load: decoding+applying deltas, and building/sending source data
    decodeApplyMsPerSec: +(jsMs / seconds).toFixed(1), flushMsPerSec: +((store.flushMs - flushMs0) / seconds).toFixed(1),
    idle: { fps: baseline.fps, p50ms: baseline.p50ms, p95ms: baseline.p95ms },
    repaintOnly: { fps: repaint.fps, p50ms: repaint.p50ms, p95ms: repaint.p95ms },
  }
  for (let i = 0; i < n; i++) store.handle({ op: 'delta', seq: store.seq + 1, kind: 'remove', feature: { id: `vehicles/bench-${i}`, layer: 'vehicles', version: ver[i] } })
  link.viewChanged = true
  link.start()
  return res
}

window.__twin = {
  store, map, link, interp, tierStore, tierLink,
  ready: false,
  count: (layer) => store.count(layer),
  feature: (id) => store.get(id) || tierStore.get(id),
  /** ids listed in the alerts / incidents panels, in their order */
  panel: (layer) => [...document.querySelectorAll(`#${layer} li.row`)].map((li) => li.dataset.id),
  summary: () => lastSummary,
  tier: () => tier,
  selectTier: (code) => { $('tier').value = code; return selectTier(code) },
  bench,
  frames: () => (meter ? meter.peek() : null),
}

// ---- wiring -----------------------------------------------------------------

i18n.apply(document)
langButton($('lang'))
i18n.onChange(() => { showStatus(); renderAlerts(); renderIncidents(); if (regions.length) loadRegions(); if (lastSummary) renderSummary(lastSummary) })
api('/api/rules?format=json').then((doc) => { i18n.setRules(doc.rules); renderAlerts() }).catch((err) => console.warn('rules:', err.message))
buildToggles()
buildLegend()
$('alerts').addEventListener('click', onPanelClick)
$('incidents').addEventListener('click', onPanelClick)
$('tier').addEventListener('change', (e) => selectTier(e.target.value))
tierStore.listeners.add((layers) => {
  if (layers.has('alerts')) renderAlerts()
  if (layers.has('incidents')) renderIncidents()
})
store.listeners.add((layers) => {
  if (layers.has('vehicles')) tuneInterval()
  $('counts').textContent = LIVE.map((l) => `${l} ${store.count(l)}`).join(' · ')
})
setInterval(() => { renderAlerts(); renderIncidents() }, 1000)
setInterval(refreshSummary, 5000)

map.on('load', () => {
  addLiveLayers()
  link.setBBox(viewBBox(map))
  link.start()
  requestAnimationFrame(animate)
  window.__twin.ready = true
  meter = startFrameMeter()
})
map.on('moveend', () => link.setBBox(viewBBox(map)))
map.on('click', onMapClick)
map.on('error', (e) => console.warn('map:', e && e.error ? e.error.message : e))
tierLink.start()
loadRegions().then(() => selectTier(tier, false)).catch((err) => {
  toast('regions: ' + err.message, true)
  tierLink.setBBox(WORLD_BBOX)
})
