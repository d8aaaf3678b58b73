// The alerts panel (issue 14 item 3): the tier's open and acknowledged
// alerts, filtered by colour / tier / district, grouped by rule and tier
// with counts per colour, a bulk "ack all" per group, and always a word on
// how many rows are not shown. Rows are keyed and updated in place (item 7).
import { esc, colourHex, RISK, toast } from '../common.js'
import { api } from '../api.js'
import { i18n, t } from '../i18n.js'
import { selectAlerts, alertSince } from '../panels.js'
import { filterAlerts, groupAlerts, visibleRows } from '../triage.js'
import { reconcile, setText } from '../keyed.js'

const COLLAPSED_ROWS = 3
const EXPANDED_ROWS = 60

/**
 * @param {object} o
 * @param {HTMLElement} o.root the panel's section
 * @param {() => object[]} o.alerts the tier store's alerts
 * @param {() => {code:string, isCity:boolean}} o.tier
 * @param {(code:string) => string} o.regionName display name of a region code
 * @param {(id:string) => void} o.open open an object in the inspector
 * @param {(id:string) => object|undefined} [o.lookup] the page's copy of an object (an alert's subject), if it holds one
 * @param {() => number} [o.now] the panel's "now" (ms): the replayed moment during a replay
 */
export function createAlertsPanel(o) {
  const { root } = o
  root.innerHTML = `<h3><span data-i18n="panel.alerts"></span> <span class="count" id="alerts-count">0</span>
      <span class="muted small" id="alerts-hidden"></span></h3>
    <div class="filters">
      <span class="colours">${RISK.map((r) => `<button type="button" class="chipbtn" data-colour="${r.name}" aria-pressed="false"><span class="dot" style="background:${r.hex}"></span><span data-i18n="colour_short.${r.name}"></span> <b class="n">0</b></button>`).join('')}</span>
      <select id="f-tier" data-i18n-aria="panel.tier_filter"><option value="" data-i18n="panel.all_tiers"></option><option value="street" data-i18n="tier.street"></option><option value="district" data-i18n="tier.district"></option><option value="city" data-i18n="tier.city"></option></select>
      <select id="f-district" data-i18n-aria="panel.district_filter"><option value="" data-i18n="panel.all_districts"></option></select>
    </div>
    <div id="alert-groups" class="groups"></div>
    <div id="alerts-empty" class="muted empty" data-i18n="panel.empty_alerts"></div>`
  i18n.apply(root)
  const groupsEl = root.querySelector('#alert-groups')
  const colours = new Set()
  const expanded = new Set()
  let districts = []
  let lastGroups = []

  root.querySelector('.colours').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-colour]')
    if (!b) return
    const c = b.dataset.colour
    if (colours.has(c)) colours.delete(c)
    else colours.add(c)
    b.setAttribute('aria-pressed', String(colours.has(c)))
    render()
  })
  root.querySelector('#f-tier').addEventListener('change', render)
  root.querySelector('#f-district').addEventListener('change', render)

  groupsEl.addEventListener('click', async (e) => {
    const ack = e.target.closest('button.ack')
    if (ack) {
      e.stopPropagation()
      ack.disabled = true
      try {
        await api(`/api/alerts/${encodeURIComponent(ack.dataset.name)}/ack`, { method: 'POST', action: true, role: 'operator' })
        toast(t('panel.acked_one', { name: ack.dataset.label || ack.dataset.name }))
      } catch (err) {
        toast(i18n.error(err), true)
        ack.disabled = false
      }
      return
    }
    const bulk = e.target.closest('button.ack-group')
    if (bulk) {
      e.stopPropagation()
      const g = lastGroups.find((x) => x.key === bulk.closest('.group').dataset.key)
      const names = g ? g.alerts.filter((f) => f.properties.state === 'open').map((f) => f.id.slice('alerts/'.length)) : []
      if (!names.length) return
      bulk.disabled = true
      try {
        const res = await api('/api/alerts/ack', { method: 'POST', action: true, role: 'operator', body: { names: names.slice(0, 1000) } })
        toast(t('panel.acked_n', { n: res.acked.length }) + (res.failed.length ? ` · ${res.failed.length} ✗` : ''), res.failed.length > 0 && res.acked.length === 0)
      } catch (err) {
        toast(i18n.error(err), true)
      }
      bulk.disabled = false
      return
    }
    const more = e.target.closest('.more, .group-head')
    if (more) {
      const key = more.closest('.group').dataset.key
      if (expanded.has(key)) expanded.delete(key)
      else expanded.add(key)
      render()
      return
    }
    const row = e.target.closest('li.row')
    if (row) o.open(row.dataset.id)
  })

  // keyboard: Enter or Space on a group heading or a row does what a click does
  groupsEl.addEventListener('keydown', (e) => {
    if ((e.key !== 'Enter' && e.key !== ' ') || !e.target.matches('.group-head, li.row')) return
    e.preventDefault()
    e.target.click()
  })

  function filterState() {
    return { colours, tier: root.querySelector('#f-tier').value, district: root.querySelector('#f-district').value }
  }

  // what the row calls its subject: the plate and name of a truck, a
  // building's name, never the internal id (names.js alertSubject)
  const subjectOf = (p) => i18n.subject(p, o.lookup)
  const subjectSig = (p) => { const s = subjectOf(p); return [s.plate, s.name, s.building].join('/') }

  function renderRow(li, f) {
    const p = f.properties
    const s = subjectOf(p)
    const path = Array.isArray(f.region) ? f.region : []
    const where = path.length > 1 ? path.slice(1).map(o.regionName).filter(Boolean).join(' ') : ''
    const label = [s.plate, s.name].filter(Boolean).join(' ')
    li.className = 'row'
    li.tabIndex = 0
    li.dataset.id = f.id
    li.dataset.rule = p.rule || ''
    li.dataset.subject = p.subject || ''
    li.innerHTML = `<span class="dot" style="background:${colourHex(p.severity)}"></span>
      <div class="grow"><div class="subj"><span class="muted">${esc(s.kind)}</span> ${s.plate ? `<b class="plate">${esc(s.plate)}</b> ` : ''}${s.name ? `<span class="sname">${esc(s.name)}</span>` : ''}${p.count > 1 ? ` <span class="muted">×${esc(p.count)}</span>` : ''}</div>
      <div class="muted small sub">${s.building ? `${esc(s.building)} · ` : ''}<span class="age"></span> · ${esc(i18n.term('state', p.state))}${where ? ` · ${esc(where)}` : ''}</div></div>
      ${p.state === 'open' ? `<button type="button" class="ack" data-name="${esc(f.id.slice('alerts/'.length))}" data-label="${esc(label || s.kind)}">${esc(t('panel.ack'))}</button>` : ''}`
  }

  function renderGroup(el, g) {
    el.className = 'group'
    el.innerHTML = `<div class="group-head" role="button" tabindex="0"><span class="dot big" style="background:${colourHex(g.worst)}"></span>
      <div class="grow"><b class="g-title"></b> <span class="muted g-tier"></span><div class="g-colours small"></div></div>
      <span class="count g-count"></span><button type="button" class="ack-group"></button></div>
      <ul class="list"></ul><button type="button" class="more link small"></button>`
  }

  function patchGroup(el, g) {
    const now = o.now ? o.now() : Date.now()
    setText(el.querySelector('.g-title'), i18n.rule(g.rule))
    setText(el.querySelector('.g-tier'), i18n.term('tier', g.tier))
    setText(el.querySelector('.g-count'), i18n.num(g.count))
    const cs = RISK.filter((r) => g.byColour[r.name]).map((r) => `<span class="dot" style="background:${r.hex}"></span>${g.byColour[r.name]}`).join(' ')
    const gc = el.querySelector('.g-colours')
    if (gc._html !== cs) { gc.innerHTML = cs; gc._html = cs }
    const bulk = el.querySelector('.ack-group')
    setText(bulk, `${t('panel.ack_group')} (${g.open})`)
    bulk.hidden = g.open === 0
    const big = el.querySelector('.dot.big')
    big.style.background = colourHex(g.worst)
    const { shown, hidden } = visibleRows(g, expanded.has(g.key) ? EXPANDED_ROWS : COLLAPSED_ROWS)
    reconcile(el.querySelector('ul'), shown, {
      key: (f) => f.id,
      sig: (f) => [i18n.lang, f.properties.state, f.properties.severity, f.properties.count, (f.region || []).join(), subjectSig(f.properties)].join('|'),
      render: renderRow,
      patch: (li, f) => setText(li.querySelector('.age'), i18n.age(alertSince(f), now)),
    })
    const more = el.querySelector('.more')
    more.hidden = hidden === 0 && !expanded.has(g.key)
    setText(more, hidden > 0 ? t('panel.hidden', { n: i18n.num(hidden) }) : '▲')
  }

  function render() {
    const all = selectAlerts(o.alerts(), o.tier())
    // colour chip counts follow the other filters, so they say what a click would show
    const fs = filterState()
    const byColour = {}
    for (const f of filterAlerts(all, { ...fs, colours: new Set() })) byColour[f.properties.severity] = (byColour[f.properties.severity] || 0) + 1
    for (const b of root.querySelectorAll('.colours button')) setText(b.querySelector('.n'), String(byColour[b.dataset.colour] || 0))
    const list = filterAlerts(all, fs)
    const groups = groupAlerts(list)
    lastGroups = groups
    let shownRows = 0
    for (const g of groups) shownRows += Math.min(g.alerts.length, expanded.has(g.key) ? EXPANDED_ROWS : COLLAPSED_ROWS)
    setText(root.querySelector('#alerts-count'), i18n.num(list.length))
    const hiddenN = all.length - shownRows
    setText(root.querySelector('#alerts-hidden'), hiddenN > 0 ? t('panel.hidden', { n: i18n.num(hiddenN) }) : '')
    reconcile(groupsEl, groups, { key: (g) => g.key, sig: () => 'g', render: renderGroup, patch: patchGroup, tag: 'div' })
    root.querySelector('#alerts-empty').hidden = groups.length > 0
  }

  return {
    render,
    /** District choices of the filter: [{code, name}]. */
    setDistricts(list) {
      districts = list
      const sel = root.querySelector('#f-district')
      const v = sel.value
      sel.innerHTML = `<option value="">${esc(t('panel.all_districts'))}</option>` + districts.map((d) => `<option value="${esc(d.code)}">${esc(d.name)}</option>`).join('')
      sel.value = v
    },
    /** Expand every group (the e2e test looks for one row among many). */
    expandAll() {
      for (const g of lastGroups) expanded.add(g.key)
      render()
    },
    relabel() {
      i18n.apply(root)
      this.setDistricts(districts)
      for (const el of groupsEl.children) el._sig = null
      render()
    },
  }
}
