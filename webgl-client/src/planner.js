// Planner view (/planner): draw or type a bbox, pick a layer and property
// filters (key=value or CQL2 text), see matches in a table and on the map
// through OGC API Features (following "next" links), export them as GeoJSON,
// and show H3 counts per hexagon from /api/h3.
//
// In Chinese by default like the operator page (issue 14): every string
// from the catalogue, objects by their display names (name_zh), region
// codes as region names, times in Asia/Shanghai; English one click away.
import { createMap, viewBBox, geomBBox, geomCenter, esc, fmtValue, toast } from './common.js'
import { initToken, api, fetchAllItems } from './api.js'
import { i18n, t, langButton } from './i18n.js'

initToken()
const $ = (id) => document.getElementById(id)
const map = createMap('map', { pitch: 0 })
let results = []
let drawing = false
let collections = []
let numberMatched = null
/** region code -> feature, for names */
const regions = new Map()

const empty = () => ({ type: 'FeatureCollection', features: [] })
const TABLE_ROWS = 500

async function loadCollections() {
  const c = await api('/ogc/collections')
  collections = (c.collections || []).map((x) => x.id)
  renderLayers()
}

function renderLayers() {
  const sel = $('layer')
  const v = sel.value || 'buildings'
  sel.innerHTML = collections.map((id) => `<option value="${esc(id)}">${esc(i18n.has('layers.' + id) ? t('layers.' + id) : id)}</option>`).join('')
  if (collections.includes(v)) sel.value = v
}

async function loadRegions() {
  const { features } = await fetchAllItems('/ogc/collections/regions/items?limit=1000', 5000)
  for (const f of features) regions.set(String(f.properties.code), f)
  render()
}

/** A region code's name (name_zh in Chinese), else the code. */
const regionName = (code) => {
  const f = regions.get(String(code))
  return f ? i18n.name(f.properties, String(code)) : String(code)
}

/** Parse "w,s,e,n" (spaces allowed); null when empty; throws when malformed. */
export function parseBBox(s) {
  const str = s.trim()
  if (!str) return null
  const v = str.split(/[\s,，]+/).map(Number)
  if (v.length !== 4 || v.some((x) => !isFinite(x)) || v[0] > v[2] || v[1] > v[3]) throw new Error(t('planner.bad_bbox'))
  return v
}

function queryURL(pageSize) {
  const layer = $('layer').value
  const q = new URLSearchParams()
  const bbox = parseBBox($('bbox').value)
  if (bbox) q.set('bbox', bbox.join(','))
  q.set('limit', String(pageSize))
  for (const line of $('props').value.split(/\n|;/)) {
    const m = line.match(/^\s*([^=\s]+)\s*=\s*(.*?)\s*$/)
    if (m) q.append(m[1], m[2])
  }
  const cql = $('cql').value.trim()
  if (cql) { q.set('filter', cql); q.set('filter-lang', 'cql2-text') }
  return `/ogc/collections/${encodeURIComponent(layer)}/items?${q}`
}

function showStatus() {
  $('pstatus').textContent = numberMatched != null ? t('planner.shown_of', { n: i18n.num(results.length), m: i18n.num(numberMatched) })
    : results.length ? t('planner.shown', { n: i18n.num(results.length) }) : ''
}

async function run() {
  const limit = Math.max(1, Math.min(10000, parseInt($('limit').value, 10) || 1000))
  let url
  try { url = queryURL(Math.min(limit, 1000)) } catch (err) { return toast(err.message, true) }
  $('pstatus').textContent = t('planner.searching')
  try {
    const r = await fetchAllItems(url, limit, (sofar) => { $('pstatus').textContent = t('planner.loaded', { n: i18n.num(sofar.length) }) })
    results = r.features.slice(0, limit)
    numberMatched = r.numberMatched ?? null
    showStatus()
    render()
  } catch (err) {
    $('pstatus').textContent = ''
    toast(t('planner.search_failed', { why: i18n.error(err) }), true)
  }
}

// Property names and values as an operator reads them.
const REGION_KEYS = new Set(['parent', 'street', 'district', 'issuer', 'tier_code', 'regions', 'targets'])
const TERMS = { kind: 'kinds', state: 'state', status: 'state', type: 'types', level: 'level', tier: 'tier', class: 'road_class', risk_color: 'colour', severity: 'colour' }
const HIDDEN = new Set(['id', 'name', 'name_zh', 'title', 'title_zh', 'history', 'values', 'units', 'restrictions', 'evidence', 'sla'])
const propLabel = (k) => (i18n.has('prop.' + k) ? t('prop.' + k) : k)

function cell(k, v) {
  if (v === null || v === undefined || v === '') return ''
  if (typeof v === 'boolean') return t(v ? 'planner.yes' : 'planner.no')
  if (Array.isArray(v)) return v.map((x) => cell(k, x)).join('、')
  if (typeof v === 'string') {
    if (k === 'rule') return i18n.rule(v)
    if (TERMS[k]) return i18n.term(TERMS[k], v)
    if (REGION_KEYS.has(k) || (k === 'assignee' && /^\d{6,}$/.test(v))) return regionName(v)
    if (/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return i18n.time(v, 'full')
  }
  return fmtValue(v)
}

function render() {
  $('rcount').textContent = i18n.num(results.length)
  $('rcapped').textContent = results.length > TABLE_ROWS ? t('planner.table_capped', { n: i18n.num(TABLE_ROWS) }) : ''
  $('export').disabled = results.length === 0
  map.getSource('results')?.setData({ type: 'FeatureCollection', features: results.map((f) => ({ ...f, properties: { ...f.properties, id: f.id } })) })
  const sample = results.slice(0, 50)
  const keys = [...new Set(sample.flatMap((f) => Object.keys(f.properties || {})))]
    .filter((k) => !HIDDEN.has(k) && !(k === 'owners' && sample.some((f) => (f.properties || {}).owners_zh)))
    .slice(0, 6)
  const layer = $('layer').value
  const label = (f) => i18n.label({ ...f, id: f.id.includes('/') ? f.id : `${layer}/${f.id}` })
  $('results').innerHTML = results.length === 0 ? '' : `<tr><th>${esc(t('planner.name'))}</th>${keys.map((k) => `<th title="${esc(k)}">${esc(propLabel(k))}</th>`).join('')}</tr>` +
    results.slice(0, TABLE_ROWS).map((f) => `<tr data-id="${esc(f.id)}"><td class="name" title="${esc(f.id)}">${esc(label(f))}</td>${keys.map((k) => `<td>${esc(cell(k, (f.properties || {})[k]))}</td>`).join('')}</tr>`).join('')
}

function exportGeoJSON() {
  const blob = new Blob([JSON.stringify({ type: 'FeatureCollection', features: results })], { type: 'application/geo+json' })
  const a = document.createElement('a')
  a.href = URL.createObjectURL(blob)
  a.download = `${$('layer').value}-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.geojson`
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(a.href), 1000)
}

let h3Cells = null
function showH3Legend() {
  if (!h3Cells) { $('h3legend').textContent = ''; return }
  const { n, max } = h3Cells
  $('h3legend').innerHTML = `${esc(t('planner.cells', { n: i18n.num(n) }))} 1 <span class="dot" style="background:#1a237e"></span><span class="dot" style="background:#ab47bc"></span><span class="dot" style="background:#ffeb3b"></span> ${esc(i18n.num(max))}`
}

async function showH3() {
  const layer = $('layer').value
  let bbox
  try { bbox = parseBBox($('bbox').value) || viewBBox(map) } catch (err) { return toast(err.message, true) }
  const q = new URLSearchParams({ layer, res: $('res').value, bbox: bbox.join(','), format: 'geojson' })
  try {
    const fc = await api(`/api/h3?${q}`)
    const counts = (fc.features || []).map((f) => Number(f.properties.count) || 0)
    const max = Math.max(1, ...counts)
    map.getSource('h3').setData(fc)
    map.setPaintProperty('h3-fill', 'fill-color', ['interpolate', ['linear'], ['get', 'count'], 0, '#1a237e', max / 2, '#ab47bc', max, '#ffeb3b'])
    h3Cells = { n: (fc.features || []).length, max }
    showH3Legend()
  } catch (err) {
    toast(t('planner.h3_failed', { why: i18n.error(err) }), true)
  }
}

// Box drawing: while "draw" is on, a drag on the map draws the bbox.
function setupDraw() {
  let start = null
  const canvas = map.getCanvasContainer()
  const toBox = (a, b) => [Math.min(a.lng, b.lng), Math.min(a.lat, b.lat), Math.max(a.lng, b.lng), Math.max(a.lat, b.lat)]
  const showBox = (b) => map.getSource('bbox')?.setData(b ? { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]] } } : empty())
  $('draw').addEventListener('click', () => {
    drawing = !drawing
    document.body.classList.toggle('drawing', drawing)
    drawing ? map.dragPan.disable() : map.dragPan.enable()
  })
  map.on('mousedown', (e) => { if (drawing) { start = e.lngLat; e.preventDefault() } })
  map.on('mousemove', (e) => { if (drawing && start) showBox(toBox(start, e.lngLat)) })
  map.on('mouseup', (e) => {
    if (!drawing || !start) return
    const b = toBox(start, e.lngLat).map((v) => +v.toFixed(6))
    start = null
    drawing = false
    document.body.classList.remove('drawing')
    map.dragPan.enable()
    $('bbox').value = b.join(',')
    showBox(b)
  })
  $('bbox').addEventListener('change', () => { try { showBox(parseBBox($('bbox').value)) } catch { /* shown on search */ } })
  void canvas
}

$('run').addEventListener('click', run)
$('export').addEventListener('click', exportGeoJSON)
$('h3').addEventListener('click', showH3)
$('h3clear').addEventListener('click', () => { map.getSource('h3')?.setData(empty()); h3Cells = null; showH3Legend() })
$('useview').addEventListener('click', () => { $('bbox').value = viewBBox(map).map((v) => v.toFixed(5)).join(','); $('bbox').dispatchEvent(new Event('change')) })
$('results').addEventListener('click', (e) => {
  const tr = e.target.closest('tr[data-id]')
  const f = tr && results.find((x) => x.id === tr.dataset.id)
  const b = f && geomBBox(f.geometry)
  if (b) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 60, maxZoom: 17 })
  else if (f && geomCenter(f.geometry)) map.flyTo({ center: geomCenter(f.geometry) })
})

map.on('load', () => {
  map.jumpTo({ pitch: 0 }) // the style opens pitched for the command view; flat is easier to draw and read here
  map.addSource('h3', { type: 'geojson', data: empty() })
  map.addLayer({ id: 'h3-fill', type: 'fill', source: 'h3', paint: { 'fill-color': '#ab47bc', 'fill-opacity': 0.55, 'fill-outline-color': '#0b1020' } })
  map.addSource('results', { type: 'geojson', data: empty() })
  map.addLayer({ id: 'results-fill', type: 'fill', source: 'results', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': '#00e5ff', 'fill-opacity': 0.35 } })
  map.addLayer({ id: 'results-line', type: 'line', source: 'results', filter: ['!=', ['geometry-type'], 'Point'], paint: { 'line-color': '#00e5ff', 'line-width': 2 } })
  map.addLayer({ id: 'results-point', type: 'circle', source: 'results', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-color': '#00e5ff', 'circle-radius': 5, 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 1 } })
  map.addSource('bbox', { type: 'geojson', data: empty() })
  map.addLayer({ id: 'bbox-line', type: 'line', source: 'bbox', paint: { 'line-color': '#ffeb3b', 'line-width': 2, 'line-dasharray': [3, 2] } })
  setupDraw()
  window.__twin.ready = true
})
map.on('error', (e) => console.warn('map:', e && e.error ? e.error.message : e))
loadCollections().catch((err) => toast(t('planner.collections_failed', { why: i18n.error(err) }), true))
loadRegions().catch((err) => console.warn('regions:', err.message))

function tickClock() {
  $('clock').innerHTML = `${esc(t('app.city_time'))} ${i18n.timeHTML(Date.now(), 'time')}`
}
setInterval(tickClock, 1000)
tickClock()
i18n.apply(document)
document.title = t('planner.page_title')
langButton($('lang'))
i18n.onChange(() => {
  document.title = t('planner.page_title')
  renderLayers()
  showStatus()
  showH3Legend()
  render()
  tickClock()
})

window.__twin = { map, ready: false, results: () => results, run, showH3 }
