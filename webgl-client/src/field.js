// Field view (/field): phone-sized. My position (geolocation, ?lon=&lat=, or a
// tap on the map), nearby incidents nearest first with distance from
// /api/nearby, accept / arrive / resolve buttons, and a report form.
// Incidents assigned to me come first, then the others nearest first. In
// demo mode (no token given in the URL) "I am" is picked from the workers
// within 2 km of the position rather than typed; with a real token the name
// is typed (it must match the token's subject to act).
import { maplibregl, createMap, esc, fmtDistance, toast } from './common.js'
import { initToken, api, isDemo } from './api.js'
import { slaStatus } from './sla.js'
import { mineFirst } from './panels.js'

initToken()
const $ = (id) => document.getElementById(id)
const map = createMap('map', { pitch: 0 })
const marker = new maplibregl.Marker({ color: '#80deea' })
let me = null
// Who I am: the grid worker's name (workers/NAME), from ?worker= or remembered;
// field tokens act only on incidents assigned to that worker.
const q0 = new URLSearchParams(location.search)
let worker = q0.get('worker') || localStorage.getItem('citytwin.worker') || ''
if (q0.get('worker')) localStorage.setItem('citytwin.worker', worker)
let lastNearby = []
let listed = []
let nearWorkers = []
const demo = isDemo()

const ACTIONS = { dispatched: ['accept'], accepted: ['arrive'], arrived: ['resolve'] }

function setPosition(lon, lat, source) {
  me = [lon, lat]
  marker.setLngLat(me).addTo(map)
  $('pos').textContent = `${lat.toFixed(5)}, ${lon.toFixed(5)} (${source})`
  map.easeTo({ center: me, zoom: Math.max(map.getZoom(), 14) })
  refresh()
}

function locate() {
  if (!navigator.geolocation) return fallback('no geolocation')
  $('pos').textContent = 'locating…'
  navigator.geolocation.getCurrentPosition(
    (p) => setPosition(p.coords.longitude, p.coords.latitude, 'GPS'),
    (err) => fallback(err.message),
    { enableHighAccuracy: true, timeout: 5000, maximumAge: 30000 },
  )
}

function fallback(why) {
  const c = map.getCenter()
  setPosition(c.lng, c.lat, `map centre; ${why}; tap the map to choose`)
}

// Workers within 2 km of the position, nearest first, for the "I am" picker.
async function refreshWorkers() {
  if (!demo || !me) return
  try {
    const fc = await api(`/api/nearby?layer=workers&lon=${me[0]}&lat=${me[1]}&radius_m=2000&limit=20`)
    nearWorkers = fc.features || []
    renderWorkers()
  } catch (err) {
    toast('workers: ' + err.message, true)
  }
}

function renderWorkers() {
  const sel = $('worker-pick')
  const opts = nearWorkers.map((f) => {
    const name = String(f.id).split('/').slice(1).join('/')
    const st = (f.properties || {}).status
    return { name, text: `${name} · ${fmtDistance(f.distance_m ?? (f.properties || {}).distance_m)}${st ? ' · ' + st : ''}` }
  })
  // keep the current choice selectable even once it has walked out of range
  if (worker && !opts.some((o) => o.name === worker)) opts.push({ name: worker, text: `${worker} · not nearby` })
  sel.innerHTML = '<option value="">worker…</option>' + opts.map((o) => `<option value="${esc(o.name)}">${esc(o.text)}</option>`).join('')
  sel.value = worker
}

function setWorker(name) {
  worker = name
  try { localStorage.setItem('citytwin.worker', worker) } catch { /* memory only */ }
  render()
}

async function refresh() {
  if (!me) return
  refreshWorkers()
  const r = $('radius').value
  try {
    const fc = await api(`/api/nearby?layer=incidents&lon=${me[0]}&lat=${me[1]}&radius_m=${r}&limit=50`)
    lastNearby = (fc.features || []).filter((f) => (f.properties || {}).state !== 'closed')
    render()
    const src = map.getSource('nearby')
    if (src) src.setData({ type: 'FeatureCollection', features: lastNearby })
  } catch (err) {
    toast(err.message, true)
  }
}

function render() {
  const now = Date.now()
  $('ncount').textContent = String(lastNearby.length)
  listed = mineFirst(lastNearby, worker ? 'workers/' + worker : '')
  $('nearby').innerHTML = listed.map((f) => {
    const p = f.properties || {}
    const name = String(f.id).split('/').slice(1).join('/')
    const sla = slaStatus(p, now)
    const acts = ACTIONS[p.state] || []
    return `<li class="row" data-id="${esc(f.id)}"><span class="dist">${esc(fmtDistance(f.distance_m ?? p.distance_m))}</span>
      <div class="grow"><b>${esc(p.type)}</b> <span class="state ${esc(p.state)}">${esc(p.state)}</span>
      <div class="muted small">${p.assignee ? (p.assignee === 'workers/' + worker ? '<b>assigned to me</b> · ' : `${esc(p.assignee)} · `) : ''}${esc(p.description || '')}${sla ? ` · <span class="sla ${sla.overdue ? 'overdue' : ''}">${esc(sla.text)}</span>` : ''}</div></div>
      ${['accept', 'arrive', 'resolve'].map((a) => `<button data-name="${esc(name)}" data-action="${a}" ${acts.includes(a) ? '' : 'disabled'}>${a}</button>`).join('')}</li>`
  }).join('') || '<li class="muted">no open incidents nearby</li>'
}

$('nearby').addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-action]')
  if (!b) return
  b.disabled = true
  try {
    await api(`/api/incidents/${encodeURIComponent(b.dataset.name)}/${b.dataset.action}`, { method: 'POST', action: true, role: 'field', subject: worker, body: {} })
    toast(`${b.dataset.action}: ${b.dataset.name}`)
  } catch (err) {
    toast(err.message, true)
  }
  refresh()
})

$('report').addEventListener('submit', async (e) => {
  e.preventDefault()
  if (!me) return toast('choose a position first', true)
  try {
    const f = await api('/api/incidents', { method: 'POST', action: true, role: 'field', subject: worker, body: { type: $('rtype').value, lon: me[0], lat: me[1], description: $('rdesc').value } })
    const inc = (f && f.incident) || {}
    toast(`${f && f.merged ? 'merged into' : 'reported'} ${inc.id || ''}`)
    $('rdesc').value = ''
  } catch (err) {
    toast(err.message, true)
  }
  refresh()
})

$('worker').value = worker
$('worker').addEventListener('change', (e) => setWorker(e.target.value.trim()))
$('worker-pick').addEventListener('change', (e) => setWorker(e.target.value))
if (demo) {
  $('worker').hidden = true
  $('worker-pick').hidden = false
  renderWorkers()
}
$('locate').addEventListener('click', locate)
$('radius').addEventListener('change', refresh)
setInterval(render, 1000)
setInterval(refresh, 10000)

map.on('load', () => {
  map.jumpTo({ pitch: 0 }) // the style opens pitched for the command view; flat is easier to draw and read here
  map.addSource('nearby', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'nearby', type: 'circle', source: 'nearby', paint: { 'circle-radius': 8, 'circle-color': '#ff7043', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } })
  const q = new URLSearchParams(location.search)
  const lon = parseFloat(q.get('lon')), lat = parseFloat(q.get('lat'))
  if (isFinite(lon) && isFinite(lat)) setPosition(lon, lat, 'chosen')
  else locate()
  window.__twin.ready = true
})
map.on('click', (e) => setPosition(e.lngLat.lng, e.lngLat.lat, 'chosen on map'))
map.on('error', (e) => console.warn('map:', e && e.error ? e.error.message : e))

window.__twin = {
  map, ready: false, demo, refresh,
  nearby: () => lastNearby, // as /api/nearby returned them: nearest first
  listed: () => listed.map((f) => f.id), // as shown: mine first
  workers: () => nearWorkers.map((f) => f.id),
  worker: () => worker,
  position: () => me,
}
