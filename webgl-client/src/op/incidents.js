// The incidents panel: the tier's incidents not closed, the most urgent 1-5-10
// clock first, each row keyed and updated in place; the countdown ticks
// without rebuilding the row (issue 14 item 7).
import { esc } from '../common.js'
import { i18n, t } from '../i18n.js'
import { selectIncidents } from '../panels.js'
import { formatCountdown } from '../sla.js'
import { reconcile, setText } from '../keyed.js'

const MAX_ROWS = 150

/**
 * @param {object} o
 * @param {HTMLElement} o.root
 * @param {() => object[]} o.incidents
 * @param {() => {code:string, isCity:boolean}} o.tier
 * @param {(code:string) => string} o.regionName
 * @param {(id:string) => void} o.open
 * @param {(id:string) => string} o.nameOf display name of an object id (the assignee)
 * @param {() => number} [o.now] the panel's "now" (ms): the replayed moment during a replay, so ages and 1-5-10 clocks are as they were
 */
export function createIncidentsPanel(o) {
  const { root } = o
  root.innerHTML = `<h3><span data-i18n="panel.incidents"></span> <span class="count" id="incidents-count">0</span>
    <span class="muted small" id="incidents-hidden"></span><span class="inc-states small"></span></h3>
    <ul id="incidents" class="list"></ul><div id="incidents-empty" class="muted empty" data-i18n="panel.empty_incidents"></div>`
  i18n.apply(root)
  const ul = root.querySelector('#incidents')
  ul.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.matches('li.row')) o.open(e.target.dataset.id)
  })
  ul.addEventListener('click', (e) => {
    const row = e.target.closest('li.row')
    if (row) o.open(row.dataset.id)
  })

  function renderRow(li, { feature: f }) {
    const p = f.properties
    const path = Array.isArray(f.region) ? f.region : []
    const where = path.length > 1 ? o.regionName(path[path.length - 1]) : ''
    const who = p.assignee ? o.nameOf(p.assignee) : t('insp.unassigned')
    li.className = 'row'
    li.dataset.id = f.id
    li.tabIndex = 0
    li.innerHTML = `<div class="grow"><div><b>${esc(i18n.term('types', p.type))}</b> <span class="state ${esc(p.state)}">${esc(i18n.term('state', p.state))}</span>${p.reports > 1 ? ` <span class="muted">×${esc(p.reports)}</span>` : ''}</div>
      <div class="muted small">${esc(where)} · ${esc(who)} · <span class="age"></span></div></div><span class="sla"></span>`
  }

  function render() {
    const now = o.now ? o.now() : Date.now()
    const list = selectIncidents(o.incidents(), now, o.tier())
    setText(root.querySelector('#incidents-count'), i18n.num(list.length))
    setText(root.querySelector('#incidents-hidden'), list.length > MAX_ROWS ? t('panel.hidden', { n: i18n.num(list.length - MAX_ROWS) }) : '')
    reconcile(ul, list.slice(0, MAX_ROWS), {
      key: (x) => x.feature.id,
      sig: (x) => [i18n.lang, x.feature.properties.state, x.feature.properties.assignee && o.nameOf(x.feature.properties.assignee), x.feature.properties.reports, x.feature.properties.type].join('|'),
      render: renderRow,
      patch: (li, x) => {
        const s = li.querySelector('.sla')
        const text = x.sla ? `${i18n.term('step', x.sla.step)} ${formatCountdown(x.sla.leftMs)}` : ''
        setText(s, text)
        const cls = x.sla && x.sla.overdue ? 'sla overdue' : 'sla'
        if (s.className !== cls) s.className = cls
        const p = x.feature.properties
        setText(li.querySelector('.age'), i18n.age(p.reported_at || p.opened_at || x.feature.updated, now))
      },
    })
    root.querySelector('#incidents-empty').hidden = list.length > 0
  }

  return {
    render,
    relabel() {
      i18n.apply(root)
      for (const el of ul.children) el._sig = null
      render()
    },
  }
}
