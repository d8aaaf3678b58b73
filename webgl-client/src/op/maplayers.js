// The operator map's own layers (issue 14 items 6 and 8): the websocket's
// live layers drawn from GeoJSON sources updated incrementally
// (GeoJSONSource.updateData with the ids that changed since the last flush;
// setData only after a snapshot), one label per district, devices coloured
// by kind, grids visible, a selection ring, the inspected object's track, the
// layer toggles and the legend (in the side panel, never over the map).
import { esc, RISK, colourExpr } from '../common.js'
import { i18n, t } from '../i18n.js'
export { sourceWriter } from './sourcewriter.js'

export const LIVE = ['vehicles', 'workers', 'incidents', 'alerts']
/** Alert symbol radius (px) per tier: the higher the tier, the larger the ring. */
export const TIER_RADIUS = { street: 9, district: 12, city: 16 }
/** Device colours by kind (the style draws all devices one colour). */
export const DEVICE_COLOURS = { septic_gas: '#ab47bc', hydrant_pressure: '#29b6f6', camera: '#9ccc65' }
const WORKER_COLOURS = { available: '#66bb6a', busy: '#ffee58' }
const VEHICLE_COLOURS = { muck_truck: '#ffa726', patrol: '#4fc3f7' }

/** A point inside-ish a polygon for its one label: the area-weighted centroid of its largest ring. */
export function labelPoint(g) {
  if (!g) return null
  const polys = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : []
  let best = null, bestA = 0
  for (const poly of polys) {
    const ring = poly[0] || []
    let a = 0, cx = 0, cy = 0
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const f = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1]
      a += f
      cx += (ring[j][0] + ring[i][0]) * f
      cy += (ring[j][1] + ring[i][1]) * f
    }
    if (Math.abs(a) > bestA) {
      bestA = Math.abs(a)
      best = [cx / (3 * a), cy / (3 * a)]
    }
  }
  return best
}

/** Add the page's sources and layers once the style is loaded. */
export function addLayers(map) {
  for (const l of LIVE) {
    // promoteId: updateData addresses features by their twin id
    map.addSource('ws-' + l, { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, maxzoom: 12, buffer: 16, promoteId: 'id' })
    if (map.getLayer(l)) map.setLayoutProperty(l, 'visibility', 'none') // the websocket copy is the live one
  }
  // one label per district (the style labels every tile's piece of a polygon)
  for (const id of ['district-labels', 'region-labels']) if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', 'none')
  map.addSource('district-points', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addSource('tier', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'tier-outline', type: 'line', source: 'tier', paint: { 'line-color': '#80deea', 'line-width': 2.5 } })
  // grids: visible from the district view on, solid enough to read
  if (map.getLayer('grids-line')) {
    map.setLayerZoomRange('grids-line', 12, 24)
    map.setPaintProperty('grids-line', 'line-color', '#4f6d8f')
    map.setPaintProperty('grids-line', 'line-width', ['interpolate', ['linear'], ['zoom'], 12, 0.6, 16, 1.4])
    map.setPaintProperty('grids-line', 'line-dasharray', [3, 2])
  }
  if (map.getLayer('devices')) {
    map.setPaintProperty('devices', 'circle-color', ['match', ['get', 'kind'], ...Object.entries(DEVICE_COLOURS).flat(), '#b0bec5'])
    map.setLayerZoomRange('devices', 13, 24)
  }
  map.addSource('history', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'history-line', type: 'line', source: 'history', filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': '#ffffff', 'line-width': 2.5, 'line-dasharray': [2, 1] } })
  map.addLayer({ id: 'history-points', type: 'circle', source: 'history', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-color': '#ffffff', 'circle-radius': 2.5 } })
  map.addLayer({
    id: 'ws-workers', type: 'circle', source: 'ws-workers',
    paint: { 'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 3, 15, 7], 'circle-color': ['match', ['get', 'status'], ...Object.entries(WORKER_COLOURS).flat(), '#78909c'], 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 1 },
  })
  map.addLayer({
    id: 'ws-vehicles', type: 'circle', source: 'ws-vehicles',
    paint: { 'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 2.5, 15, 7], 'circle-color': ['match', ['get', 'kind'], ...Object.entries(VEHICLE_COLOURS).flat(), '#eceff1'], 'circle-stroke-color': '#0b1020', 'circle-stroke-width': 1 },
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
      'circle-color': colourExpr('severity'), 'circle-opacity': 0.35, 'circle-stroke-color': colourExpr('severity'), 'circle-stroke-width': 2.5,
    },
  })
  map.addSource('selected', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } })
  map.addLayer({ id: 'selected-ring', type: 'circle', source: 'selected', paint: { 'circle-radius': 16, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#80deea', 'circle-stroke-width': 3 } })
  map.addLayer({
    id: 'district-names', type: 'symbol', source: 'district-points',
    layout: { 'text-field': ['get', 'label'], 'text-font': ['Noto Sans Regular'], 'text-size': ['interpolate', ['linear'], ['zoom'], 9, 13, 13, 18], 'text-allow-overlap': false },
    paint: { 'text-color': '#e3f2fd', 'text-halo-color': '#0b1020', 'text-halo-width': 2 },
  })
}

/** Set the district label points (one per district) in the current language. */
export function setDistrictLabels(map, districts) {
  const src = map.getSource('district-points')
  if (!src) return
  src.setData({
    type: 'FeatureCollection',
    features: districts.map((d) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: labelPoint(d.geometry) || [0, 0] }, properties: { label: i18n.name(d.properties, d.properties.code) } })),
  })
}

// Layer toggles: catalogue key -> the style/page layers it switches.
export const TOGGLES = [
  ['buildings', ['buildings-3d']], ['roads', ['roads']], ['rivers', ['rivers-fill', 'rivers-line']],
  ['bridges', ['bridges', 'bridges-glow', 'bridge-labels']], ['regions', ['regions-fill', 'regions-city', 'regions-district', 'regions-street', 'tier-outline', 'district-names']],
  ['grids', ['grids-line']], ['devices', ['devices']], ['vehicles', ['ws-vehicles']], ['workers', ['ws-workers']],
  ['incidents', ['ws-incidents']], ['alerts', ['ws-alerts']],
]

export function buildToggles(map, box) {
  const on = new Map()
  const draw = () => {
    box.innerHTML = TOGGLES.map(([name]) => `<label><input type="checkbox" data-layer="${name}" ${on.get(name) === false ? '' : 'checked'}> ${esc(t('layers.' + name))}</label>`).join('')
  }
  draw()
  box.addEventListener('change', (e) => {
    const name = e.target.dataset.layer
    on.set(name, e.target.checked)
    const ids = TOGGLES.find((x) => x[0] === name)[1]
    for (const id of ids) if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', e.target.checked ? 'visible' : 'none')
  })
  return { relabel: draw }
}

export function buildLegend(box) {
  const ring = (px) => `<span class="ring-box"><span class="ring" style="width:${2 * px}px;height:${2 * px}px"></span></span>`
  const dot = (c, extra = '') => `<span class="dot" style="background:${c};${extra}"></span>`
  box.innerHTML = `<h4>${esc(t('legend.risk'))}</h4><div class="risks">` + RISK.map((r) => `<div>${dot(r.hex)}${esc(t('colour.' + r.name))}</div>`).join('') + '</div>' +
    `<h4>${esc(t('legend.alert_tier'))}</h4><div class="tiers">` + Object.entries(TIER_RADIUS).map(([tr, px]) => `<div class="tier-entry" data-tier="${tr}">${ring(px)}${esc(t('tier.' + tr))}</div>`).join('') + '</div>' +
    `<h4>${esc(t('legend.title'))}</h4><div class="cols">` +
    Object.entries(VEHICLE_COLOURS).map(([k, c]) => `<div>${dot(c)}${esc(i18n.term('kinds', k))}</div>`).join('') +
    Object.entries(WORKER_COLOURS).map(([k, c]) => `<div>${dot(c)}${esc(t('legend.worker'))} · ${esc(i18n.term('state', k))}</div>`).join('') +
    `<div>${dot('#ff7043', 'border:2px solid #fff')}${esc(t('legend.incident'))}</div>` +
    Object.entries(DEVICE_COLOURS).map(([k, c]) => `<div>${dot(c)}${esc(i18n.term('kinds', k))}</div>`).join('') + '</div>'
}
