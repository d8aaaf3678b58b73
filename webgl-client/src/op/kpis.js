// Big numbers, trend and district ranking of the chosen tier (issue 14
// item 5): open alerts by colour, incidents by state, 1-5-10 compliance,
// workers online / on a task, devices online, readable from across the
// room in wall mode. The trend keeps the summaries polled since the page
// opened (or the server's indicator history when it has one).
import { esc, RISK } from '../common.js'
import { api } from '../api.js'
import { i18n, t } from '../i18n.js'
import { rankDistricts } from '../triage.js'
import { workerCounts, hourlySeries, sparkline } from './figures.js'

const TREND_MAX = 2160 // 3 h of 5 s samples
const INCIDENT_STATES = ['reported', 'dispatched', 'accepted', 'arrived', 'resolved']

/**
 * @param {object} o
 * @param {HTMLElement} o.kpis the strip above the map
 * @param {HTMLElement} o.side the indicators section (ranking, trend, detail)
 * @param {() => string} o.tierCode
 * @param {() => {code:string, name:string}[]} o.districts
 * @param {() => object[]} o.alerts open alerts of the city (tier store)
 * @param {() => object[]} o.overdue overdue incidents
 * @param {(code:string) => string} o.regionName
 */
export function createKpis(o) {
  let last = null
  /** the server's hourly indicator series of the tier (GET /api/regions/{code}/indicators) */
  let hourly = null
  let hourlyAt = 0
  const trend = new Map() // tier code -> [{t, alerts, red, sla}]

  function sample(s) {
    let arr = trend.get(s.code)
    if (!arr) trend.set(s.code, (arr = []))
    const open = Object.values(s.alerts_open || {}).reduce((a, b) => a + b, 0)
    arr.push({ t: Date.now(), alerts: open, red: (s.alerts_open || {}).red || 0, incidents: Object.entries(s.incidents_by_state || {}).filter(([k]) => k !== 'closed' && k !== 'resolved').reduce((a, [, b]) => a + b, 0) })
    if (arr.length > TREND_MAX) arr.splice(0, arr.length - TREND_MAX)
  }

  // The hourly series changes slowly: fetch it once a minute, and at once
  // when the tier changes.
  async function refreshHourly(code) {
    if (hourly && hourly.region === code && Date.now() - hourlyAt < 60000) return
    hourlyAt = Date.now()
    try {
      const h = await api(`/api/regions/${encodeURIComponent(code)}/indicators?step=hour`)
      if (code === o.tierCode()) hourly = h
    } catch (err) {
      console.warn('indicators:', err.message)
    }
  }

  async function refresh() {
    const code = o.tierCode()
    refreshHourly(code).then(render)
    try {
      const s = await api(`/api/regions/${encodeURIComponent(code)}/summary`)
      if (code !== o.tierCode()) return
      last = s
      sample(s)
      render()
    } catch (err) {
      o.side.querySelector('.ind-detail').innerHTML = `<div class="muted">${esc(i18n.error(err))}</div>`
    }
  }

  function big(label, value, sub = '', cls = '') {
    return `<div class="kpi ${cls}"><div class="kpi-label">${esc(label)}</div><div class="kpi-value">${value}</div><div class="kpi-sub">${sub}</div></div>`
  }

  function render() {
    const s = last
    if (!s) return
    const al = s.alerts_open || {}
    const totalAlerts = Object.values(al).reduce((a, b) => a + b, 0)
    const colours = RISK.filter((r) => al[r.name]).map((r) => `<span class="kc" style="color:${r.hex}">${esc(i18n.num(al[r.name]))}</span>`).join('<span class="muted"> / </span>') || '0'
    const st = s.incidents_by_state || {}
    const active = INCIDENT_STATES.filter((k) => k !== 'resolved').reduce((a, k) => a + (st[k] || 0), 0)
    const incSub = INCIDENT_STATES.filter((k) => st[k]).map((k) => `${esc(i18n.term('state', k))} ${esc(st[k])}`).join(' · ')
    const sla = s.sla || {}
    const w = workerCounts(s.workers_by_status)
    const dev = s.devices || {}
    const slaCls = sla.compliance == null ? '' : sla.compliance >= 0.9 ? 'good' : sla.compliance >= 0.7 ? 'warn' : 'bad'
    o.kpis.innerHTML = `<div class="kpi-title">${esc(o.regionName(s.code) || s.name || s.code)}</div>` +
      big(t('ind.open_alerts'), `<span data-k="alerts">${esc(i18n.num(totalAlerts))}</span>`, colours) +
      big(t('ind.incidents'), `<span data-k="incidents">${esc(i18n.num(active))}</span>`, incSub) +
      big(t('ind.sla'), `<span data-k="sla">${esc(i18n.pct(sla.compliance))}</span>`, esc(t('ind.sla_detail', { met: sla.met ?? 0, breached: sla.breached ?? 0, total: sla.incidents ?? 0 })), slaCls) +
      big(t('ind.workers_online'), `<span data-k="workers">${esc(i18n.num(w.online))}</span>`, `${esc(t('ind.on_duty'))} ${esc(i18n.num(w.busy))}`) +
      big(t('ind.devices_online'), `<span data-k="devices">${esc(i18n.num(dev.online ?? 0))}</span>`, `${esc(t('ind.of_total', { n: i18n.num(dev.total ?? 0) }))} · ${esc(t('ind.devices_offline', { n: i18n.num(dev.offline ?? 0) }))}`)
    // ranking and trend
    const rank = rankDistricts(o.districts(), o.alerts(), o.overdue())
    const top = rank[0] && rank[0].score > 0 ? rank[0].score : 1
    const arr = trend.get(s.code) || []
    const series = arr.map((x) => x.alerts)
    const span = arr.length > 1 ? Math.round((arr.at(-1).t - arr[0].t) / 60000) : 0
    const hours = hourly && hourly.region === s.code ? hourlySeries(hourly) : null
    o.side.querySelector('.ind-rank').innerHTML = `<h4>${esc(t('ind.ranking'))} <span class="muted small">${esc(t('ind.ranking_hint'))}</span></h4><ol class="rank">${rank.map((r) =>
      `<li data-code="${esc(r.code)}"><span class="r-name">${esc(r.name)}</span><span class="bar"><span style="width:${(100 * r.score / top).toFixed(0)}%"></span></span><b>${esc(r.alerts)}</b>${r.red ? `<span class="kc" style="color:#e53935"> ${esc(r.red)}</span>` : ''}</li>`).join('')}</ol>`
    const trendHTML = hours && hours.buckets >= 2
      ? `<h4>${esc(t('ind.trend'))} <span class="muted small">${esc(t('ind.last_hours', { n: hours.buckets }))}</span></h4>` +
        `<div class="trend-row"><span class="muted small">${esc(t('ind.alerts_raised_h'))} · ${esc(i18n.num(hours.raised.at(-1)))}</span>${sparkline(hours.raised)}</div>` +
        `<div class="trend-row"><span class="muted small">${esc(t('ind.incidents_h'))} · ${esc(i18n.num(hours.incidents.at(-1)))}</span>${sparkline(hours.incidents)}</div>` +
        (hours.sla.some((v) => v != null) ? `<div class="trend-row"><span class="muted small">${esc(t('ind.sla'))} · ${esc(i18n.pct(hours.sla.filter((v) => v != null).at(-1)))}</span>${sparkline(hours.sla.map((v) => (v == null ? 0 : v * 100)))}</div>` : '')
      : `<h4>${esc(t('ind.trend'))} <span class="muted small">${span ? esc(t('ind.last_minutes', { n: i18n.num(span) })) : ''}</span></h4>` +
        (series.length > 1 ? `<div class="trend-row"><span class="muted small">${esc(t('ind.open_alerts'))}</span>${sparkline(series)}</div>` : `<div class="muted small">${esc(t('ind.no_trend'))}</div>`)
    o.side.querySelector('.ind-trend').innerHTML = trendHTML
    const chips = (obj, colour) => Object.entries(obj || {}).sort().map(([k, v]) =>
      `<span class="chip">${colour ? `<span class="dot" style="background:${RISK.find((r) => r.name === k)?.hex || '#b0bec5'}"></span>` : ''}${esc(colour ? i18n.term('colour_short', k) : i18n.term('state', k))} <b>${esc(v)}</b></span>`).join('') || `<span class="muted">${esc(t('app.none'))}</span>`
    o.side.querySelector('.ind-detail').innerHTML = `
      <div class="ind"><span>${esc(t('ind.vehicles'))}</span><div><b data-k="vehicles">${esc(i18n.num(s.vehicles ?? 0))}</b></div></div>
      <div class="ind"><span>${esc(t('ind.workers'))}</span><div>${chips(s.workers_by_status)}</div></div>
      <div class="ind"><span>${esc(t('ind.buildings_by_risk'))}</span><div>${chips(s.buildings_by_risk, true)}</div></div>`
  }

  return { refresh, render, summary: () => last, trend: (code) => trend.get(code) || [] }
}
