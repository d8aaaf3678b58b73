// Directives (issue 15 item 5, CONTRACT §8): the operator sends an order
// from the map and follows its roll-up live.
// - "下达指令" (a button on the map and in the panel) opens a form over the
//   map's left edge: title, text, due time typed in Beijing time, whether
//   acknowledge and report are required, and the targets chosen by tier
//   (all districts of the issuer, or the streets of one district) or by
//   clicking regions on the map (picked ones are outlined); it POSTs
//   /api/directives and shows the server's JSON error in the form.
// - The panel lists the directives the tier store holds (they are a live
//   layer: each change of one of their tasks rewrites the directive's
//   roll-up, which the websocket brings) with acknowledged n/m, reported
//   n/m and overdue; a row opens the directive in the inspector, where
//   GET /api/directives/{name} gives the per-target rows, drilling down
//   into the regions a target forwarded to. That view is fetched again
//   when a task of the directive changes on the websocket, never polled.
import { esc, toast } from '../common.js'
import { api, isDemo, getToken } from '../api.js'
import { i18n, t } from '../i18n.js'
import { cityLocalToISO, defaultDue, dueText, dueChoice, tierTargets, regionAt, toggle, rollupRows, ratio, insideRegion, tokenRegion } from '../loops.js'

const EMPTY = { type: 'FeatureCollection', features: [] }

/**
 * @param {object} o
 * @param {HTMLElement} o.root the panel's section
 * @param {HTMLElement} o.host where the form floats (the map's column)
 * @param {object} o.map the MapLibre map
 * @param {() => object[]} o.regions region features (code, level, parent, name)
 * @param {(code:string) => string} o.regionName
 * @param {() => string} o.tier the chosen tier's code
 * @param {() => object[]} o.directives the directives the tier store holds
 * @param {(id:string) => void} o.open open an object in the inspector
 */
export function createDirectives(o) {
  const form = document.createElement('form')
  form.className = 'dir-form'
  form.id = 'dir-form'
  form.hidden = true
  form.noValidate = true
  o.host.appendChild(form)
  const fab = document.createElement('button')
  fab.type = 'button'
  fab.id = 'dir-open'
  fab.className = 'map-action'
  o.host.appendChild(fab)

  let targets = []
  let mode = 'districts'
  let district = ''
  let pickLevel = 'district'
  let sending = false
  let shown = [] // ids of the listed rows
  let lastHTML = ''

  const regions = () => o.regions() || []
  // The issuing tier: the region of the token given in the URL; the demo's
  // operator tokens are the city's. The server checks it anyway (404).
  const issuer = () => (isDemo() ? '' : tokenRegion(getToken())) || '500000'
  const districtsOf = () => regions().filter((f) => f.properties.level === 'district' && insideRegion(f.properties.code, issuer()))
    .sort((a, b) => String(a.properties.code).localeCompare(String(b.properties.code)))

  // ---- the panel -------------------------------------------------------------

  function render() {
    const ds = [...o.directives()].sort((a, b) => String((b.properties || {}).issued_at || '').localeCompare(String((a.properties || {}).issued_at || ''))).slice(0, 8)
    shown = ds.map((d) => d.id)
    const html = `<div class="dir-head"><h3>${esc(t('loops.directives'))} <span class="count">${esc(i18n.num(o.directives().length))}</span></h3><button type="button" class="dir-new">${esc(t('loops.issue'))}</button></div>` +
      (ds.length ? `<ul class="list dir-list">${ds.map(rowHTML).join('')}</ul>` : `<div class="muted small empty">${esc(t('loops.none'))}</div>`)
    if (html !== lastHTML) { o.root.innerHTML = html; lastHTML = html } // unchanged: leave rows (and focus) alone
  }

  function rowHTML(d) {
    const p = d.properties || {}
    const over = Number(p.overdue) || 0
    const targets = Array.isArray(p.targets) ? p.targets : []
    return `<li class="row dir-row" data-id="${esc(d.id)}" tabindex="0"><div class="grow"><b>${esc(p.title || '')}</b>
      <div class="muted small">${esc(t('loops.from_issuer', { issuer: o.regionName(p.issuer) || p.issuer || '' }))} · ${esc(t('loops.n_objects', { n: targets.length }))} · ${esc(t('loops.due_short'))} ${i18n.timeHTML(p.due, 'datetime')}</div>
      <div class="dir-counts"><span class="dc" data-k="acked">${esc(t('loops.acked'))} <b>${esc(ratio(p, 'acked'))}</b></span><span class="dc" data-k="reported">${esc(t('loops.reported'))} <b>${esc(ratio(p, 'reported'))}</b></span><span class="dc ${over ? 'bad' : ''}" data-k="overdue">${esc(t('loops.overdue'))} <b>${esc(over)}</b></span></div></div></li>`
  }

  o.root.addEventListener('click', (e) => {
    if (e.target.closest('.dir-new')) return openForm()
    const li = e.target.closest('li[data-id]')
    if (li) o.open(li.dataset.id)
  })
  o.root.addEventListener('keydown', (e) => {
    const li = e.target.closest('li[data-id]')
    if (li && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); o.open(li.dataset.id) }
  })
  fab.addEventListener('click', () => (form.hidden ? openForm() : closeForm()))

  // ---- the form ----------------------------------------------------------------

  function openForm() {
    if (!form.hidden) return form.querySelector('#dir-title').focus()
    targets = []
    mode = 'districts'
    const tierCode = o.tier()
    const ds = districtsOf()
    district = ds.some((f) => f.properties.code === tierCode) ? tierCode : ds.length ? ds[0].properties.code : ''
    if (district === tierCode && tierCode !== '500000') mode = 'streets'
    form.innerHTML = formHTML()
    form.hidden = false
    fab.classList.add('on')
    setTargets(tierTargets(regions(), { mode, issuer: issuer(), district }))
    form.querySelector('#dir-title').focus()
  }

  function closeForm() {
    form.hidden = true
    fab.classList.remove('on')
    targets = []
    showTargets()
    o.map.getCanvas().style.cursor = ''
  }

  function formHTML() {
    const opt = (v, label, cur) => `<option value="${esc(v)}"${v === cur ? ' selected' : ''}>${esc(label)}</option>`
    return `<div class="dir-form-head"><b>${esc(t('loops.issue_title'))}</b><button type="button" class="dir-x" aria-label="${esc(t('loops.cancel'))}">×</button></div>
      <label for="dir-title">${esc(t('loops.title'))}</label><input id="dir-title" type="text" maxlength="60" placeholder="${esc(t('loops.title_ph'))}">
      <label for="dir-text">${esc(t('loops.text'))}</label><textarea id="dir-text" rows="3" placeholder="${esc(t('loops.text_ph'))}"></textarea>
      <label for="dir-due">${esc(t('loops.due'))}</label><input id="dir-due" type="text" inputmode="numeric" autocomplete="off" placeholder="${esc(t('loops.due_ph'))}" value="${esc(dueText(defaultDue(Date.now())))}">
      <div class="dir-quick">${['2h', 'today18', 'tomorrow12', '3d'].map((k) => `<button type="button" class="chipbtn" data-due="${k}">${esc(t('loops.quick_' + k))}</button>`).join('')}</div>
      <div class="dir-req"><span>${esc(t('loops.requires'))}</span><label><input type="checkbox" id="dir-ack" checked> ${esc(t('loops.req_ack'))}</label><label><input type="checkbox" id="dir-report" checked> ${esc(t('loops.req_report'))}</label></div>
      <label>${esc(t('loops.targets'))}</label>
      <div class="dir-modes" role="radiogroup">${['districts', 'streets', 'map'].map((m) => `<label><input type="radio" name="dir-mode" value="${m}"${m === mode ? ' checked' : ''}> ${esc(t('loops.mode_' + m))}</label>`).join('')}</div>
      <div class="dir-mode-opts"><select id="dir-district"${mode === 'streets' ? '' : ' hidden'}>${districtsOf().map((f) => opt(f.properties.code, i18n.name(f.properties, f.properties.code), district)).join('')}</select>
        <span id="dir-pick"${mode === 'map' ? '' : ' hidden'}><select id="dir-level">${opt('district', t('level.district'), pickLevel)}${opt('street', t('level.street'), pickLevel)}</select> <span class="muted small">${esc(t('loops.pick_hint'))}</span></span></div>
      <div id="dir-targets" class="dir-targets"></div>
      <div id="dir-error" class="dir-error" role="alert" hidden></div>
      <div class="form-row dir-buttons"><button type="button" class="dir-cancel">${esc(t('loops.cancel'))}</button><button type="submit" class="primary" id="dir-send">${esc(t('loops.send'))}</button></div>`
  }

  function setTargets(list) {
    targets = [...new Set(list)]
    showTargets()
  }

  function showTargets() {
    const box = form.querySelector('#dir-targets')
    if (box) {
      box.innerHTML = `<div class="muted small">${esc(t('loops.n_targets', { n: targets.length }))}</div>` + targets.map((c) =>
        `<span class="chip dir-chip" data-code="${esc(c)}">${esc(o.regionName(c) || c)}<button type="button" class="link" data-drop="${esc(c)}" aria-label="${esc(t('loops.cancel'))}">×</button></span>`).join('')
    }
    const src = o.map.getSource('dir-targets')
    if (src) {
      const set = new Set(targets)
      src.setData({ type: 'FeatureCollection', features: regions().filter((f) => set.has(f.properties.code)).map((f) => ({ type: 'Feature', properties: { code: f.properties.code }, geometry: f.geometry })) })
    }
  }

  function showError(msg) {
    const el = form.querySelector('#dir-error')
    el.textContent = msg || ''
    el.hidden = !msg
  }

  form.addEventListener('change', (e) => {
    const el = e.target
    if (el.name === 'dir-mode') {
      mode = el.value
      form.querySelector('#dir-district').hidden = mode !== 'streets'
      form.querySelector('#dir-pick').hidden = mode !== 'map'
      o.map.getCanvas().style.cursor = mode === 'map' ? 'crosshair' : ''
      setTargets(mode === 'map' ? [] : tierTargets(regions(), { mode, issuer: issuer(), district }))
    } else if (el.id === 'dir-district') {
      district = el.value
      setTargets(tierTargets(regions(), { mode, issuer: issuer(), district }))
    } else if (el.id === 'dir-level') {
      pickLevel = el.value
    }
  })
  form.addEventListener('click', (e) => {
    if (e.target.closest('.dir-x, .dir-cancel')) return closeForm()
    const drop = e.target.closest('[data-drop]')
    if (drop) setTargets(targets.filter((c) => c !== drop.dataset.drop))
    const quick = e.target.closest('[data-due]')
    if (quick) form.querySelector('#dir-due').value = dueText(dueChoice(quick.dataset.due, Date.now()))
  })
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    if (sending) return
    const title = form.querySelector('#dir-title').value.trim()
    const due = cityLocalToISO(form.querySelector('#dir-due').value)
    const requires = [form.querySelector('#dir-ack').checked && 'ack', form.querySelector('#dir-report').checked && 'report'].filter(Boolean)
    const dueRaw = form.querySelector('#dir-due').value.trim()
    const problem = !title ? 'loops.need_title' : !dueRaw ? 'loops.need_due' : !due ? 'loops.need_due_format' : !requires.length ? 'loops.need_requires' : !targets.length ? 'loops.no_targets' : ''
    if (problem) return showError(t(problem))
    showError('')
    sending = true
    form.querySelector('#dir-send').disabled = true
    try {
      const v = await api('/api/directives', { method: 'POST', action: true, role: 'operator', body: { title, text: form.querySelector('#dir-text').value.trim(), targets, due, requires } })
      toast(t('loops.sent', { title, n: targets.length }))
      closeForm()
      if (v && v.directive && v.directive.id) o.open(v.directive.id)
    } catch (err) {
      showError(serverError(err)) // the server's {"error","detail"}
    } finally {
      sending = false
      const b = form.querySelector('#dir-send')
      if (b) b.disabled = false
    }
  })

  /** A click on the map while picking: the region under it joins or leaves the targets. Returns true when used. */
  function mapClick(lngLat) {
    if (form.hidden || mode !== 'map') return false
    const code = regionAt(regions(), [lngLat.lng, lngLat.lat], pickLevel)
    if (code && insideRegion(code, issuer())) setTargets(toggle(targets, code))
    return true
  }

  function addLayers() {
    if (o.map.getSource('dir-targets')) return
    o.map.addSource('dir-targets', { type: 'geojson', data: EMPTY })
    o.map.addLayer({ id: 'dir-targets-fill', type: 'fill', source: 'dir-targets', paint: { 'fill-color': '#ffca28', 'fill-opacity': 0.18 } })
    o.map.addLayer({ id: 'dir-targets-line', type: 'line', source: 'dir-targets', paint: { 'line-color': '#ffca28', 'line-width': 2 } })
  }

  function relabel() {
    fab.textContent = t('loops.issue')
    render()
    if (!form.hidden) {
      const keep = { title: form.querySelector('#dir-title').value, text: form.querySelector('#dir-text').value, due: form.querySelector('#dir-due').value }
      form.innerHTML = formHTML()
      form.querySelector('#dir-title').value = keep.title
      form.querySelector('#dir-text').value = keep.text
      form.querySelector('#dir-due').value = keep.due
      showTargets()
    }
  }
  relabel()

  return {
    render,
    relabel,
    addLayers,
    mapClick,
    openForm,
    closeForm,
    get picking() { return !form.hidden && mode === 'map' },
    targets: () => [...targets],
    listed: () => [...shown],
  }
}

/**
 * The server's JSON error as the form shows it: the catalogue's words for
 * its `error`, a Chinese reading of the details this form can cause, and
 * the server's own detail after it.
 */
export function serverError(err) {
  const d = String((err && err.body && err.body.detail) || '')
  const hint = /in the past/.test(d) ? 'loops.err_past' : /target region .*not found/.test(d) ? 'loops.err_target' : /title/.test(d) ? 'loops.err_title' : ''
  const base = err && err.body && err.body.error && i18n.has(`errors.${err.body.error}`) ? t(`errors.${err.body.error}`) : ''
  if (!base) return i18n.error(err)
  return `${base}${hint ? '：' + t(hint) : ''}${d ? `（${d}）` : ''}`
}

/**
 * A directive's roll-up in the inspector (GET /api/directives/{name}):
 * totals, then one row per target with its counts and state, drilling
 * down (▸) into the regions it was forwarded to.
 * @param {object} v the view
 * @param {object} ctx head(title, kind), row(key, html), regionName(code), opened (Set of codes)
 */
export function directiveHTML(v, ctx) {
  const d = v.directive || {}
  const p = d.properties || {}
  const tot = v.totals || {}
  const rows = rollupRows(v, (code) => ctx.opened.has(code))
  const req = Array.isArray(p.requires) ? p.requires : ['ack', 'report']
  const cell = (c, k) => `<td class="num">${esc(ratio(c, k))}</td>`
  return ctx.head(p.title || '', t('loops.directive')) + `<table class="kv">
      ${ctx.row('loops.issuer', esc(ctx.regionName(p.issuer) || p.issuer || ''))}
      ${ctx.row('loops.issued_at', i18n.timeHTML(p.issued_at, 'datetime'))}
      ${ctx.row('loops.due', i18n.timeHTML(p.due, 'datetime'))}
      ${ctx.row('loops.requires', req.map((r) => esc(t('loops.req_' + r))).join('、'))}
      ${ctx.row('loops.text', esc(p.text || ''))}
    </table>
    <div class="dir-totals" id="dir-totals"><span class="dc" data-k="acked">${esc(t('loops.acked'))} <b>${esc(ratio(tot, 'acked'))}</b></span><span class="dc" data-k="reported">${esc(t('loops.reported'))} <b>${esc(ratio(tot, 'reported'))}</b></span><span class="dc ${Number(tot.overdue) ? 'bad' : ''}" data-k="overdue">${esc(t('loops.overdue'))} <b>${esc(Number(tot.overdue) || 0)}</b></span></div>
    <h4>${esc(t('loops.rollup'))}</h4>
    <table class="hist rollup"><tr><th>${esc(t('loops.target'))}</th><th>${esc(t('loops.acked'))}</th><th>${esc(t('loops.reported'))}</th><th>${esc(t('loops.overdue'))}</th><th>${esc(t('loops.state'))}</th></tr>
    ${rows.map((r) => {
      const st = r.task ? (r.task.properties || {}).state : ''
      const over = Number(r.counts.overdue) || 0
      const name = ctx.regionName(r.code) || r.name || r.code
      return `<tr class="depth-${r.depth}" data-code="${esc(r.code)}"><td style="padding-left:${4 + r.depth * 14}px">${r.forwarded ? `<button type="button" class="link tw" data-toggle="${esc(r.code)}" aria-expanded="${ctx.opened.has(r.code)}">${ctx.opened.has(r.code) ? '▾' : '▸'}</button>` : ''}${r.task ? `<a href="#" data-open="${esc(r.task.id)}">${esc(name)}</a>` : esc(name)}</td>${cell(r.counts, 'acked')}${cell(r.counts, 'reported')}<td class="num ${over ? 'overdue' : ''}">${esc(over)}</td><td>${st ? `<span class="state task-${esc(st)}">${esc(r.forwarded ? t('loops.forwarded') : i18n.term('task_state', st))}</span>` : ''}</td></tr>`
    }).join('')}</table>`
}
