// Shared pieces of the three pages: the MapLibre map on this server's style
// (no CDN, tiles, fonts or sprites from anywhere else), the five risk colours
// and small DOM helpers.
import * as maplibregl from 'maplibre-gl'
import 'maplibre-gl/dist/maplibre-gl.css'
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url'
import { getToken } from './api.js'

// MapLibre 6 finds its worker next to its own module; bundled, that is our
// chunk, so point it at the worker file Vite emitted into /assets.
maplibregl.setWorkerUrl(new URL(workerUrl, location.href).href)

export { maplibregl }

/** The five risk colours of CONTRACT §2 (1 = red = major ... 5 = green = low). */
export const RISK = [
  { level: 1, name: 'red', hex: '#e53935', label: '1 red · major 重大' },
  { level: 2, name: 'orange', hex: '#fb8c00', label: '2 orange · large 较大' },
  { level: 3, name: 'yellow', hex: '#fdd835', label: '3 yellow · general 一般' },
  { level: 4, name: 'blue', hex: '#1e88e5', label: '4 blue · lower 较低' },
  { level: 5, name: 'green', hex: '#43a047', label: '5 green · low 低' },
]
export const colourHex = (name) => (RISK.find((r) => r.name === name) || { hex: '#b0bec5' }).hex
/** MapLibre expression: colour of a feature's `prop` holding a colour name. */
export const colourExpr = (prop) => ['match', ['get', prop], ...RISK.flatMap((r) => [r.name, r.hex]), '#b0bec5']

/** Create the map on /styles/command.json; same-origin requests carry the token. */
export function createMap(container, extra = {}) {
  const map = new maplibregl.Map({
    container,
    style: '/styles/command.json',
    localIdeographFontFamily: 'sans-serif',
    attributionControl: false,
    fadeDuration: 0,
    transformRequest: (url) => {
      const t = getToken()
      if (t && url.startsWith(location.origin)) return { url, headers: { Authorization: `Bearer ${t}` } }
      return { url }
    },
    ...extra,
  })
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), 'top-right')
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right')
  return map
}

/** Add a district-name label layer (CJK through localIdeographFontFamily). */
export function addRegionLabels(map) {
  if (!map.getSource('twin') || map.getLayer('region-labels')) return
  map.addLayer({
    id: 'region-labels', type: 'symbol', source: 'twin', 'source-layer': 'regions',
    filter: ['==', ['get', 'level'], 'district'],
    layout: { 'text-field': ['coalesce', ['get', 'name_zh'], ['get', 'name']], 'text-font': ['Noto Sans Regular'], 'text-size': 13 },
    paint: { 'text-color': '#cfd8dc', 'text-halo-color': '#0b1020', 'text-halo-width': 1.5 },
  })
}

/** The map's view as a [w,s,e,n] bbox clamped to valid lon/lat. */
export function viewBBox(map) {
  const b = map.getBounds()
  const c = (v, lo, hi) => Math.max(lo, Math.min(hi, v))
  return [c(b.getWest(), -180, 180), c(b.getSouth(), -90, 90), c(b.getEast(), -180, 180), c(b.getNorth(), -90, 90)]
}

/** Bounding box of any GeoJSON geometry, or null. */
export function geomBBox(g) {
  if (!g) return null
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity
  const walk = (c) => {
    if (typeof c[0] === 'number') {
      w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1])
    } else c.forEach(walk)
  }
  if (g.type === 'GeometryCollection') g.geometries.forEach((x) => walk(x.coordinates))
  else walk(g.coordinates)
  return isFinite(w) ? [w, s, e, n] : null
}

/** A representative point of a geometry (the point itself, or its bbox centre). */
export function geomCenter(g) {
  if (!g) return null
  if (g.type === 'Point') return g.coordinates
  const b = geomBBox(g)
  return b ? [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] : null
}

export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
}

/** Render a value for tables: objects as compact JSON. */
export function fmtValue(v) {
  if (v === null || v === undefined) return ''
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/\.?0+$/, '')
  if (typeof v === 'object') return JSON.stringify(v)
  return String(v)
}

export function fmtDistance(m) {
  if (m == null || isNaN(m)) return ''
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 2 : 1)} km`
}

/** Show a transient message in the page's #toast element. */
export function toast(msg, isError = false) {
  const el = document.getElementById('toast')
  if (!el) return
  el.textContent = msg
  el.className = isError ? 'toast error show' : 'toast show'
  clearTimeout(toast.t)
  toast.t = setTimeout(() => (el.className = 'toast'), 4000)
}
