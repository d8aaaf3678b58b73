// The inspector (issue 14 item 4): each object as an operator reads it, not
// as a key/value dump. A building: name, fire code, risk colour and why,
// responsible persons, open hazards, its alerts. An incident: its 1-5-10
// clock, assignee and the actions dispatch / reassign / escalate / close. A
// worker or vehicle: live position and latest track. An alert: rule, colour,
// tier, subject (one click to the subject), ack / close. Internal ids are
// never the heading; they appear at most as a small code for support.
import { esc, colourHex, fmtValue, toast, geomCenter, geomBBox } from '../common.js'
import { api } from '../api.js'
import { i18n, t } from '../i18n.js'
import { formatCountdown, runningDeadline } from '../sla.js'
import { evidenceHTML, loadEvidence } from '../evidence.js'
import { taskHTML, taskListHTML, fetchTasks, actTask, caseFeatures, emptyCase } from './tasks.js'
import { directiveHTML } from './directives.js'
import { tasksOf } from '../loops.js'

const TRACK_LAYERS = new Set(['vehicles', 'workers'])
const HISTORY_LAYERS = new Set(['vehicles', 'workers', 'devices'])

/**
 * @param {object} o
 * @param {HTMLElement} o.box
 * @param {(id:string) => object|undefined} o.live the live copy (websocket stores)
 * @param {() => object[]} o.alerts all alerts the panels hold
 * @param {(code:string) => string} o.regionName
 * @param {(fc:object) => void} o.showTrack draw a track (FeatureCollection) on the map; empty clears
 * @param {(c:number[]) => void} o.flyTo
 * @param {(id:string) => string} o.nameOf display name of an object id (a worker's name)
 * @param {(id:string) => object|undefined} [o.lookup] the page's copy of an object, if it holds one
 * @param {(fc:object) => void} [o.showCase] draw an enforcement case's evidence (track, cameras); empty clears
 * @param {(b:number[]) => void} [o.fitBounds] show a [w,s,e,n] box
 * @param {() => object[]} [o.tasks] the tasks the panels' store holds (live)
 */
export function createInspector(o) {
  const { box } = o
  let current = null // id
  let feature = null
  // work loops: a directive's roll-up view, the drill-down rows opened,
  // the tasks about the inspected object, display names a case needs
  let view = null
  const opened = new Set()
  let subjectTasks = null
  const names = new Map() // object id -> display name (bridges, cameras)
  let again = false // the directive changed while its view was being fetched
  let refetching = false
  let lastHTML = ''
  let seenVersion = null // the inspected directive's version its view was fetched at
  const showCase = o.showCase || (() => {})

  box.addEventListener('click', async (e) => {
    if (e.target.closest('#insp-close')) return close()
    const link = e.target.closest('[data-open]')
    if (link) return open(link.dataset.open)
    const act = e.target.closest('button[data-act]')
    if (act) return act.dataset.kind === 'alert' ? alertAction(act) : incidentAction(act)
    const tact = e.target.closest('button[data-task-act]')
    if (tact) return taskAction(tact)
    const tw = e.target.closest('button[data-toggle]')
    if (tw) {
      const c = tw.dataset.toggle
      if (opened.has(c)) opened.delete(c)
      else opened.add(c)
      return render()
    }
  })

  function close() {
    current = null
    feature = null
    box.classList.remove('open')
    box.innerHTML = ''
    lastHTML = ''
    o.showTrack({ type: 'FeatureCollection', features: [] })
    showCase(emptyCase)
    view = null
    subjectTasks = null
  }

  async function open(id) {
    current = id
    lastHTML = ''
    const [layer, ...rest] = id.split('/')
    const name = rest.join('/')
    box.classList.add('open')
    if (view && layer !== 'directives') view = null
    if (layer !== 'directives') opened.clear()
    subjectTasks = null
    showCase(emptyCase)
    let f = o.live(id)
    try {
      if (layer === 'directives') {
        // the roll-up per target with the forwarded children
        view = await api(`/api/directives/${encodeURIComponent(name)}`)
        f = view.directive
        seenVersion = f && f.version
      }
      // the live copy of a panel row is complete; other objects (buildings, devices) come from the API
      if (!f) f = await api(layer === 'tasks' ? `/api/tasks/${encodeURIComponent(name)}` : `/api/entities/${encodeURIComponent(layer)}/${encodeURIComponent(name)}`)
    } catch (err) {
      if (current !== id) return
      box.innerHTML = head(t('insp.not_found'), '') + `<div class="muted">${esc(i18n.error(err))}</div>`
      return
    }
    if (current !== id) return
    feature = f
    render()
    if (TRACK_LAYERS.has(layer) || HISTORY_LAYERS.has(layer)) loadHistory(layer, name, id)
    else o.showTrack({ type: 'FeatureCollection', features: [] })
    if (layer === 'buildings' || (layer === 'vehicles' && (f.properties || {}).kind === 'muck_truck') || (layer === 'alerts' && f.properties && f.properties.rule === 'bridge-muck')) loadSubjectTasks(id)
    if (layer === 'tasks' && (f.properties || {}).kind === 'enforcement') drawCase(id, true)
  }

  function head(title, kind, colour) {
    return `<div class="insp-head">${colour ? `<span class="dot big" style="background:${colourHex(colour)}"></span>` : ''}<div class="grow"><div class="insp-kind muted small">${esc(kind)}</div><b class="insp-title">${esc(title)}</b></div><button id="insp-close" type="button" aria-label="${esc(t('app.close'))}">×</button></div>`
  }
  const row = (k, v) => (v === '' || v == null ? '' : `<tr><th>${esc(t(k))}</th><td>${v}</td></tr>`)
  const where = (f) => (Array.isArray(f.region) ? f.region.slice(1).map(o.regionName).filter(Boolean).join(' › ') : '')
  // a link to another object, by its display name (names.js), never its id;
  // carried: names the referring object carries for it (an alert's subject_*)
  const objLink = (ref, carried) => {
    if (!ref) return ''
    const l = String(ref).split('/')[0]
    const live = o.lookup ? o.lookup(ref) : null
    const props = { ...((live && live.properties) || {}), ...(carried || {}) }
    const name = l === 'vehicles' ? i18n.vehicle(props) || i18n.label({ id: ref, properties: props }) : i18n.label({ id: ref, properties: props })
    return `<a href="#" data-open="${esc(ref)}">${esc(i18n.term('obj', l))} ${esc(name)}</a>`
  }
  const carriedNames = (p, prefix) => {
    const out = {}
    for (const k of ['name', 'name_zh', 'title', 'plate']) if (p[prefix + k]) out[k] = p[prefix + k]
    return out
  }

  function render() {
    const f = feature
    if (!f) return
    const layer = f.layer || String(f.id).split('/')[0]
    const fn = { buildings: building, incidents: incident, alerts: alert, workers: mover, vehicles: mover, devices: device, tasks: task, directives: directive }[layer] || generic
    const html = fn(f, layer)
    // a live refresh that changes nothing leaves the DOM alone (a click in
    // flight must not land on a replaced button)
    if (html === lastHTML && box.firstChild) return
    lastHTML = html
    // keep the history folds as they were across a live re-render
    const folds = [...box.querySelectorAll('details.task-hist')].map((d) => d.open)
    box.innerHTML = html
    box.querySelectorAll('details.task-hist').forEach((d, i) => { if (i < folds.length) d.open = folds[i] })
    if (layer === 'incidents') loadEvidence(box, String(f.id).split('/').slice(1).join('/'))
    if (layer === 'tasks') loadEvidence(box, String(f.id).split('/').slice(1).join('/'), 'tasks')
  }

  // ---- work loops: tasks, cases, directives ------------------------------------

  const loopCtx = () => ({
    head, row, objLink, regionName: o.regionName, opened,
    bridgeName: (id) => nameFor(id, (f) => i18n.name(f.properties, String(id).split('/').pop())),
    cameraName: (id) => `${t('loops.camera')} ${String(id).split('/').pop().replace(/^cam-/, '')}`,
  })
  /** A display name fetched once per object (bridges: name_zh); the short name until it comes. */
  function nameFor(id, fmt) {
    if (names.has(id)) return names.get(id) || String(id).split('/').pop()
    names.set(id, null)
    const [l, ...r] = String(id).split('/')
    api(`/api/entities/${encodeURIComponent(l)}/${encodeURIComponent(r.join('/'))}`).then((f) => {
      names.set(id, fmt(f))
      if (current && feature && (feature.properties || {}).bridge === id) render()
    }, () => {})
    return String(id).split('/').pop()
  }

  function task(f) { return taskHTML(f, loopCtx()) }

  function directive() {
    return view ? directiveHTML(view, loopCtx()) : head(t('loops.loading'), t('loops.directive'))
  }

  /** The tasks about the inspected object: the fetched list, with the live copies the panels' store holds. */
  function subjectSection(id) {
    if (!subjectTasks || subjectTasks.id !== id) return `<div class="muted small">${esc(t('app.loading'))}</div>`
    const live = new Map((o.tasks ? o.tasks() : []).filter((x) => (x.properties || {}).subject === id).map((x) => [x.id, x]))
    const list = subjectTasks.list.map((x) => live.get(x.id) || x)
    for (const [k, x] of live) if (!list.some((y) => y.id === k)) list.push(x)
    const layer = id.split('/')[0]
    if (layer === 'buildings') return taskListHTML(tasksOf(list, id, 'rectification'), t('loops.no_tasks'))
    let cases = tasksOf(list, id, 'enforcement')
    if (layer === 'alerts') cases = tasksOf(list.filter((x) => (x.properties || {}).alert === id), (feature.properties || {}).subject, 'enforcement')
    return taskListHTML(cases, t('app.none'))
  }

  async function loadSubjectTasks(id) {
    const subject = id.startsWith('alerts/') ? (feature.properties || {}).subject : id
    if (!subject) return
    try {
      const list = await fetchTasks(subject)
      if (current !== id) return
      subjectTasks = { id, list }
      setSubject(id)
    } catch (err) {
      const el = box.querySelector('#insp-tasks')
      if (current === id && el) el.textContent = i18n.error(err)
    }
  }

  async function drawCase(id, fit) {
    const f = feature
    if (!f || f.id !== id) return
    const fc = await caseFeatures(f.properties || {}, loopCtx().cameraName)
    if (current !== id) return
    showCase(fc)
    const track = fc.features.find((x) => x.properties.what === 'track')
    const b = track && geomBBox(track.geometry)
    if (fit && b && o.fitBounds) o.fitBounds(b)
  }

  async function taskAction(btn) {
    const f = feature
    if (!f || !String(f.id).startsWith('tasks/')) return
    const act = btn.dataset.taskAct
    const outcome = btn.dataset.outcome
    btn.disabled = true
    try {
      const r = await actTask(f, act, outcome)
      const label = outcome ? t(outcome === 'penalised' ? 'loops.close_penalised' : 'loops.close_rectified') : t('task_action.' + act)
      toast(t('loops.done', { action: label, title: (f.properties || {}).title || '' }))
      if (r && r.id === current) { feature = r; render() }
    } catch (err) {
      toast(i18n.error(err), true)
      btn.disabled = false
    }
  }

  /** Fill the inspected object's task list (only when it changed). */
  function setSubject(id) {
    const el = box.querySelector('#insp-tasks')
    if (!el) return
    const html = subjectSection(id)
    if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html }
  }

  /**
   * Fetch the inspected directive's roll-up again: its version moved (each
   * change of one of its tasks rewrites the directive's roll-up, and the
   * websocket brings the directive). One fetch at a time; a change during
   * one fetches once more after it.
   */
  function refetchDirective(version) {
    if (!current || !current.startsWith('directives/')) return
    if (version != null && version === seenVersion) return
    if (refetching) { again = true; return }
    refetching = true
    const id = current
    api(`/api/directives/${encodeURIComponent(id.slice('directives/'.length))}`).then((v) => {
      if (current !== id) return
      view = v
      feature = v.directive
      seenVersion = v.directive && v.directive.version
      render()
    }, () => { /* keep what is shown */ }).finally(() => {
      refetching = false
      if (again) { again = false; refetchDirective() }
    })
  }

  function building(f) {
    const p = f.properties || {}
    const alerts = o.alerts().filter((a) => a.properties && (a.properties.subject === f.id || a.properties.attached_to === f.id) && a.properties.state !== 'closed')
    const hazards = Array.isArray(p.hazards) ? p.hazards : []
    const why = []
    for (const a of alerts) why.push(`<span class="dot" style="background:${colourHex(a.properties.severity)}"></span>${esc(i18n.rule(a.properties.rule))}`)
    const overdue = hazards.filter((h) => h && h.deadline && Date.parse(h.deadline) < Date.now())
    for (const h of overdue) why.push(`${esc(h.name || h.type || '')} ${esc(t('state.open'))} · ${i18n.timeHTML(h.deadline, 'datetime')}`)
    const owners = Array.isArray(p.owners_zh) && i18n.zh ? p.owners_zh : Array.isArray(p.owners) ? p.owners : []
    return head(i18n.label(f), t('insp.building'), p.risk_color) + `<table class="kv">
      ${row('insp.fire_code', esc(p.fire_code || '–'))}
      ${row('insp.risk', `<span class="dot" style="background:${colourHex(p.risk_color)}"></span>${esc(i18n.term('colour', p.risk_color))}`)}
      ${row('insp.risk_why', why.length ? why.join('<br>') : esc(t('insp.risk_none')))}
      ${row('insp.owners', owners.map((x) => esc(x)).join('、') || '–')}
      ${row('insp.height', p.height_m != null ? `${esc(fmtValue(p.height_m))} m · ${esc(t('insp.floors', { n: p.levels ?? '?' }))}` : '')}
      ${row('insp.region', esc(where(f)))}
      ${row('insp.updated', i18n.timeHTML(f.updated))}
    </table>
    <h4>${esc(t('insp.hazards'))}</h4>${hazards.length ? `<ul class="plain">${hazards.map((h) => `<li>${esc(h.name || h.type || JSON.stringify(h))}${h.deadline ? ` · ${i18n.timeHTML(h.deadline, 'datetime')}` : ''}</li>`).join('')}</ul>` : `<div class="muted small">${esc(t('insp.no_hazards'))}</div>`}
    <h4>${esc(t('insp.alerts_here'))}</h4>${alerts.length ? `<ul class="plain">${alerts.map((a) => `<li><a href="#" data-open="${esc(a.id)}"><span class="dot" style="background:${colourHex(a.properties.severity)}"></span>${esc(i18n.rule(a.properties.rule))}</a> · ${esc(i18n.term('state', a.properties.state))}</li>`).join('')}</ul>` : `<div class="muted small">${esc(t('app.none'))}</div>`}
    <h4>${esc(t('loops.tasks'))}</h4><div id="insp-tasks">${subjectSection(f.id)}</div>`
  }

  function clock(p) {
    const d = runningDeadline(p)
    if (!d) return esc(i18n.term('state', p.state))
    const left = d.by.getTime() - Date.now()
    return `<span class="sla big ${left < 0 ? 'overdue' : ''}" data-clock="${esc(d.by.toISOString())}">${esc(i18n.term('step', d.step))} ${esc(formatCountdown(left))}</span> <span class="muted small">≤ ${i18n.timeHTML(d.by, 'time')}</span>`
  }

  function incident(f) {
    const p = f.properties || {}
    const hist = Array.isArray(p.history) ? p.history : []
    const canDispatch = p.state === 'reported' || p.state === 'dispatched'
    const acts = [
      canDispatch && !p.assignee ? ['dispatch', t('action.dispatch')] : null,
      canDispatch && p.assignee ? ['reassign', t('action.reassign')] : null,
      p.state !== 'closed' && p.state !== 'resolved' && p.tier !== 'city' ? ['escalate', t('action.escalate')] : null,
      p.state !== 'closed' ? ['close', t('action.close')] : null,
    ].filter(Boolean)
    return head(i18n.term('types', p.type), t('insp.incident')) + `<table class="kv">
      ${row('insp.state', `<span class="state ${esc(p.state)}">${esc(i18n.term('state', p.state))}</span>`)}
      ${row('insp.clock', clock(p))}
      ${row('insp.assignee', p.assignee ? `<a href="#" data-open="${esc(p.assignee)}">${esc(o.nameOf(p.assignee))}</a>` : esc(t('insp.unassigned')))}
      ${row('insp.tier', esc(i18n.term('tier', p.tier)))}
      ${row('insp.reports', esc(p.reports ?? 1))}
      ${row('insp.description', esc(p.description || ''))}
      ${row('insp.region', esc(where(f)))}
      ${row('insp.since', p.reported_at ? `${i18n.timeHTML(p.reported_at)} · ${esc(i18n.age(p.reported_at))}` : '')}
    </table>
    <div class="actions">${acts.map(([a, label]) => `<button type="button" data-kind="incident" data-act="${a}">${esc(label)}</button>`).join('')}
      ${p.reported_at ? `<button type="button" data-replay-from="${esc(p.reported_at)}">${esc(t('replay.from_here'))}</button>` : ''}
      <select id="insp-worker" hidden></select></div>
    ${evidenceHTML(p)}
    <h4>${esc(t('insp.timeline'))}</h4><ol class="timeline">${hist.map((h) => `<li>${i18n.timeHTML(h.at, 'datetime')} · ${esc(i18n.term('action', h.action))}${h.actor ? ` · <span class="muted">${esc(i18n.actor(h.actor, o.nameOf, o.regionName))}</span>` : ''}${h.note ? ` · ${esc(h.note)}` : ''}</li>`).join('')}</ol>`
  }

  function alert(f) {
    const p = f.properties || {}
    const hist = Array.isArray(p.history) ? p.history : []
    return head(i18n.rule(p.rule), t('insp.alert'), p.severity) + `<table class="kv">
      ${row('insp.severity', `<span class="dot" style="background:${colourHex(p.severity)}"></span>${esc(i18n.term('colour', p.severity))}`)}
      ${row('insp.tier', esc(i18n.term('tier', p.tier)))}
      ${row('insp.state', esc(i18n.term('state', p.state)))}
      ${row('insp.subject', objLink(p.subject, carriedNames(p, 'subject_')))}
      ${row('insp.plate', p.subject_plate ? `<b class="plate">${esc(p.subject_plate)}</b>` : '')}
      ${row('insp.attached_to', p.attached_to ? objLink(p.attached_to, carriedNames(p, 'attached_')) : '')}
      ${row('insp.since', p.first ? `${i18n.timeHTML(p.first)} · ${esc(i18n.age(p.first))}` : '')}
      ${row('insp.count', esc(p.count ?? 1))}
      ${row('insp.region', esc(where(f)))}
    </table>
    ${p.rule === 'bridge-muck' ? `<h4>${esc(t('loops.cases'))}</h4><div id="insp-tasks">${subjectSection(f.id)}</div>` : ''}
    <div class="actions">${p.state === 'open' ? `<button type="button" data-kind="alert" data-act="ack">${esc(t('panel.ack'))}</button>` : ''}${p.state !== 'closed' ? `<button type="button" data-kind="alert" data-act="close">${esc(t('action.close'))}</button>` : ''}${p.first ? `<button type="button" data-replay-from="${esc(p.first)}">${esc(t('replay.from_here'))}</button>` : ''}</div>
    <h4>${esc(t('insp.timeline'))}</h4><ol class="timeline">${hist.map((h) => `<li>${i18n.timeHTML(h.at, 'datetime')} · ${esc(i18n.term('event', h.event))}${h.severity ? ` <span class="dot" style="background:${colourHex(h.severity)}"></span>` : ''}${h.by ? ` · <span class="muted">${esc(i18n.actor(h.by, o.nameOf, o.regionName))}</span>` : ''}</li>`).join('')}</ol>`
  }

  function mover(f, layer) {
    const p = f.properties || {}
    const c = geomCenter(f.geometry)
    const title = layer === 'vehicles' ? i18n.vehicle(p) || i18n.label(f) : i18n.label(f)
    return head(title, layer === 'workers' ? t('insp.worker') : i18n.term('kinds', p.kind) || t('insp.vehicle')) + `<table class="kv">
      ${layer === 'workers' ? row('insp.status', esc(i18n.term('state', p.status))) : row('insp.kind', esc(i18n.term('kinds', p.kind)))}
      ${layer === 'vehicles' ? row('insp.plate', p.plate ? `<b class="plate">${esc(p.plate)}</b>` : '') : ''}
      ${row('insp.grid', esc(p.grid || ''))}
      ${row('insp.position', c ? `<span class="live-pos">${c[1].toFixed(5)}, ${c[0].toFixed(5)}</span> <a href="#" class="fly">◎</a>` : '')}
      ${row('insp.speed_kmh', p.speed_kmh != null ? `${esc(fmtValue(p.speed_kmh))} km/h` : '')}
      ${row('insp.region', esc(where(f)))}
      ${row('insp.updated', `<span class="live-upd">${i18n.timeHTML(f.updated, 'time')}</span>`)}
    </table>${layer === 'vehicles' && p.kind === 'muck_truck' ? `<h4>${esc(t('loops.cases'))}</h4><div id="insp-tasks">${subjectSection(f.id)}</div>` : ''}<h4>${esc(t('insp.history'))}</h4><div id="insp-history" class="muted small">${esc(t('app.loading'))}</div>`
  }

  function device(f) {
    const p = f.properties || {}
    const values = p.values && typeof p.values === 'object' ? p.values : {}
    const units = p.units && typeof p.units === 'object' ? p.units : {}
    return head(i18n.term('kinds', p.kind), t('insp.device')) + `<table class="kv">
      ${row('insp.status', esc(i18n.term('state', p.status)))}
      ${row('insp.attached_to', p.attached_to ? objLink(p.attached_to) : '')}
      ${row('insp.region', esc(where(f)))}
      ${row('insp.updated', i18n.timeHTML(f.updated))}
    </table><h4>${esc(t('insp.latest'))}</h4><table class="kv">${Object.entries(values).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmtValue(v))} ${esc(units[k] || '')}</td></tr>`).join('')}</table>
    <h4>${esc(t('insp.history'))}</h4><div id="insp-history" class="muted small">${esc(t('app.loading'))}</div>`
  }

  // a property's value as an operator reads it: terms, yes/no, city times, region names
  const PROP_TERMS = { kind: 'kinds', state: 'state', status: 'state', type: 'types', level: 'level', tier: 'tier', class: 'road_class', risk_color: 'colour', severity: 'colour' }
  function propValue(k, v) {
    if (typeof v === 'boolean') return t(v ? 'app.yes' : 'app.no')
    if (typeof v !== 'string') return fmtValue(v)
    if (PROP_TERMS[k]) return i18n.term(PROP_TERMS[k], v)
    if (/^\d{6}(\d{3})?$/.test(v) && ['parent', 'street', 'district', 'issuer', 'tier_code', 'assignee', 'code'].includes(k)) return o.regionName(v) || v
    if (/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return i18n.time(v, 'datetime')
    if (/^[a-z]+\/./.test(v)) return o.nameOf(v)
    return v
  }

  function generic(f, layer) {
    const p = f.properties || {}
    const keep = Object.entries(p).filter(([k, v]) => !/^(id|name|name_zh|title|title_zh|history|values)$/.test(k) && (typeof v !== 'object' || v === null)).slice(0, 10)
    return head(i18n.label(f), i18n.term('obj', layer)) + `<table class="kv">
      ${row('insp.region', esc(where(f)))}
      ${keep.map(([k, v]) => `<tr><th>${esc(i18n.has('prop.' + k) ? t('prop.' + k) : k)}</th><td>${esc(propValue(k, v))}</td></tr>`).join('')}</table>`
  }

  async function loadHistory(layer, name, id) {
    try {
      const h = await api(`/api/entities/${encodeURIComponent(layer)}/${encodeURIComponent(name)}/history?limit=50`) // newest first
      if (current !== id) return
      const feats = (h && h.features) || []
      const pts = feats.filter((x) => x.geometry && x.geometry.type === 'Point')
      const line = pts.length > 1 ? [{ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: pts.map((x) => x.geometry.coordinates) } }] : []
      o.showTrack({ type: 'FeatureCollection', features: [...line, ...pts] })
      const el = box.querySelector('#insp-history')
      if (!el) return
      el.innerHTML = feats.length === 0 ? esc(t('insp.history_none')) : `<table class="hist"><tr><th>${esc(t('insp.time'))}</th><th>${esc(t('insp.speed'))}</th><th>${esc(t('insp.values'))}</th></tr>${
        feats.slice(0, 30).map((x) => { const q = x.properties || {}; return `<tr><td>${i18n.timeHTML(q.ts, 'time')}</td><td>${esc(fmtValue(q.speed_kmh))}</td><td>${esc(q.values ? fmtValue(q.values) : '')}</td></tr>` }).join('')}</table>`
    } catch (err) {
      const el = box.querySelector('#insp-history')
      if (current === id && el) el.textContent = i18n.error(err)
    }
  }

  async function incidentAction(btn) {
    const name = feature.id.slice('incidents/'.length)
    const act = btn.dataset.act
    if (act === 'dispatch' || act === 'reassign') {
      const sel = box.querySelector('#insp-worker')
      if (sel.hidden) {
        // nearby available workers to choose from; "auto" lets the server pick the nearest
        const c = geomCenter(feature.geometry)
        const fc = c ? await api(`/api/nearby?layer=workers&lon=${c[0]}&lat=${c[1]}&radius_m=5000&limit=15`).catch(() => ({ features: [] })) : { features: [] }
        const ws = (fc.features || []).filter((w) => (w.properties || {}).status === 'available' && w.id !== feature.properties.assignee)
        sel.innerHTML = `<option value="">${esc(t('insp.auto'))}</option>` + ws.map((w) => `<option value="${esc(w.id.split('/')[1])}">${esc(i18n.name(w.properties, w.id.split('/')[1]))} · ${esc(Math.round(w.distance_m ?? (w.properties || {}).distance_m ?? 0))} m</option>`).join('')
        sel.hidden = false
        if (act === 'reassign' && ws.length) sel.value = ws[0].id.split('/')[1]
        return
      }
      return post(`/api/incidents/${encodeURIComponent(name)}/dispatch`, sel.value ? { worker: sel.value } : {}, act)
    }
    if (act === 'escalate') return post(`/api/incidents/${encodeURIComponent(name)}/escalate`, {}, act)
    return post(`/api/incidents/${encodeURIComponent(name)}/${act}`, {}, act)
  }

  async function alertAction(btn) {
    const name = feature.id.slice('alerts/'.length)
    return post(`/api/alerts/${encodeURIComponent(name)}/${btn.dataset.act}`, undefined, btn.dataset.act === 'ack' ? 'ack' : 'close')
  }

  async function post(path, body, act) {
    try {
      const r = await api(path, { method: 'POST', action: true, role: 'operator', body })
      toast(t('action.done', { action: act === 'ack' ? t('panel.ack') : t(`action.${act}`) }))
      const f = r && r.incident ? r.incident : r
      if (f && f.id === current) { feature = f; render() }
    } catch (err) {
      toast(i18n.error(err), true)
    }
  }

  return {
    open,
    close,
    get current() { return current },
    /** Live refresh: the inspected object changed in a store (position, state). */
    changed(f) {
      if (!current || !f || f.id !== current) return
      const layer = current.split('/')[0]
      if (layer === 'directives') return refetchDirective(f.version)
      feature = f
      if (TRACK_LAYERS.has(layer)) {
        // live position only: keep the loaded track table
        const c = geomCenter(f.geometry)
        const pos = box.querySelector('.live-pos')
        if (pos && c) pos.textContent = `${c[1].toFixed(5)}, ${c[0].toFixed(5)}`
        const upd = box.querySelector('.live-upd')
        if (upd) upd.innerHTML = i18n.timeHTML(f.updated, 'time')
        return
      }
      if (!box.contains(document.activeElement) || document.activeElement === document.body) render()
    },
    /** Tick the incident clock without re-rendering. */
    tick() {
      const el = box.querySelector('[data-clock]')
      if (!el || !feature) return
      const d = runningDeadline(feature.properties)
      if (!d) return
      const left = d.by.getTime() - Date.now()
      el.textContent = `${i18n.term('step', d.step)} ${formatCountdown(left)}`
      el.classList.toggle('overdue', left < 0)
    },
    relabel() { render() },
    /** Tasks changed on the websocket: a directive's roll-up, the inspected object's tasks follow. */
    tasksChanged() {
      if (!current || current.startsWith('directives/')) return // they follow the directive's version (changed)
      if (subjectTasks && subjectTasks.id === current) setSubject(current)
    },
    /** The inspected directive's roll-up view (test hook). */
    get view() { return view },
  }
}
