// Time bar (issue 17): pick a past moment and replay the city from it over
// the websocket (CONTRACT §6 "at", "speed"), play, pause, change speed, go
// back to live; "replay from here" buttons ([data-replay-from] anywhere in
// the page, e.g. an alert's or incident's inspector) start a replay at
// their time. The map draws the replayed layers from the same LiveStore as
// live, so risk colours and every other style apply unchanged.
//
// The moment is typed into a plain text field in the city's time
// (Asia/Shanghai, "2026-11-23 08:00:00"), not a datetime-local input: that
// one follows the browser's locale and zone (an English browser shows
// "11/23/2026, 08:00 AM" on a Chinese wall). Presets pick recent moments.
import { cityInputValue, parseCityTime } from './i18n.js'

export const SPEEDS = [1, 10, 60, 600, 3600]
/** Preset moments: seconds before now, or "today" (00:00 in the city). */
export const PRESETS = ['900', '3600', '21600', 'today']

/**
 * @param {object} o
 * @param {HTMLElement} o.root where the bar goes (appended)
 * @param {import('./live.js').LiveLink[]} o.links the links to replay together
 * @param {(key:string, vars?:object) => string} o.t catalogue lookup
 * @param {{time:(v:any, style?:string) => string}} o.i18n
 * @param {Document} [o.doc]
 * @param {() => void} [o.onChange] told when a replay starts, pauses, ends or goes live (the header badge)
 */
export function createTimebar(o) {
  const doc = o.doc || document
  const el = doc.createElement('div')
  el.id = 'timebar'
  el.className = 'timebar'
  o.root.appendChild(el)
  let speed = 60
  let paused = false
  let ended = false

  function render() {
    const replaying = o.links.some((l) => l.replay)
    el.classList.toggle('replaying', replaying)
    el.innerHTML = `<button type="button" data-tb="live" class="badge ${replaying ? 'back' : 'ok'}" ${replaying ? '' : 'disabled'}>${o.t(replaying ? 'replay.back_live' : 'replay.live')}</button>
      <label class="tb-at"><span class="muted small">${o.t('replay.city_time')}</span>
      <input type="text" data-tb="at" inputmode="numeric" spellcheck="false" autocomplete="off" size="19" maxlength="24" placeholder="${o.t('replay.format')}" title="${o.t('replay.format_hint')}" aria-label="${o.t('replay.pick')}"></label>
      <select data-tb="preset" aria-label="${o.t('replay.presets')}"><option value="">${o.t('replay.presets')}</option>${PRESETS.map((p) => `<option value="${p}">${o.t('replay.preset_' + p)}</option>`).join('')}</select>
      <button type="button" data-tb="go">${o.t('replay.go')}</button>
      <button type="button" data-tb="play" ${replaying ? '' : 'disabled'}>${paused || ended ? o.t('replay.play') : o.t('replay.pause')}</button>
      <select data-tb="speed" aria-label="${o.t('replay.speed')}">${SPEEDS.map((s) => `<option value="${s}" ${s === speed ? 'selected' : ''}>${s}×</option>`).join('')}</select>
      <span class="tb-clock"></span><span class="tb-err" role="alert"></span>`
    const input = el.querySelector('[data-tb="at"]')
    input.value = cityInputValue(replaying ? o.links[0].replayNow() : Date.now() - 3600e3)
    tick()
    if (o.onChange) o.onChange()
  }

  function tick() {
    const c = el.querySelector('.tb-clock')
    if (!c) return
    const l = o.links.find((x) => x.replay)
    c.textContent = l ? o.t(ended ? 'replay.ended' : paused ? 'replay.paused' : 'replay.replaying', { t: o.i18n.time(l.replayNow(), 'datetime') }) : ''
  }

  function showError(msg) {
    const e = el.querySelector('.tb-err')
    if (e) e.textContent = msg
    el.querySelector('[data-tb="at"]')?.classList.toggle('invalid', !!msg)
  }

  /** Replay every link from at (ms, Date or ISO) at the chosen speed, on into live. */
  function replayFrom(at) {
    const ms = typeof at === 'number' ? at : new Date(at).getTime()
    if (isNaN(ms)) return
    paused = ended = false
    for (const l of o.links) l.setReplay({ at: Math.min(ms, Date.now()), speed, live: true })
    render()
  }

  function live() {
    paused = ended = false
    for (const l of o.links) l.setReplay(null)
    render()
  }

  function togglePlay() {
    if (ended) return replayFrom(o.links[0].replayNow())
    paused = !paused
    for (const l of o.links) l.send({ op: paused ? 'pause' : 'play' })
    render()
  }

  el.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-tb]')
    if (!b) return
    if (b.dataset.tb === 'live') live()
    else if (b.dataset.tb === 'play') togglePlay()
    else if (b.dataset.tb === 'go') go()
  })
  function go() {
    const at = parseCityTime(el.querySelector('[data-tb="at"]').value)
    if (isNaN(at)) return showError(o.t('replay.bad_time'))
    if (at > Date.now()) return showError(o.t('replay.future'))
    showError('')
    replayFrom(at)
  }
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.dataset.tb === 'at') go()
  })
  el.addEventListener('change', (e) => {
    if (e.target.dataset.tb === 'preset') {
      const v = e.target.value
      if (!v) return
      const at = v === 'today' ? parseCityTime('00:00') : Date.now() - Number(v) * 1000
      el.querySelector('[data-tb="at"]').value = cityInputValue(at)
      e.target.value = ''
      showError('')
      return
    }
    if (e.target.dataset.tb !== 'speed') return
    speed = Number(e.target.value) || 1
    for (const l of o.links) if (l.replay) l.send({ op: 'speed', speed })
  })
  doc.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest('[data-replay-from]')
    if (b) replayFrom(b.dataset.replayFrom)
  })
  for (const l of o.links) {
    const prev = l.onMessage
    l.onMessage = (m, link) => {
      if (prev) prev(m, link)
      if (link !== o.links[0]) return
      if (m.op === 'end') { ended = true; render() }
      if (m.op === 'live') { paused = ended = false; render() }
    }
  }
  const timer = setInterval(tick, 250)
  render()
  return {
    el, replayFrom, live, togglePlay, relabel: render, stop: () => clearInterval(timer),
    get speed() { return speed }, get paused() { return paused }, get ended() { return ended },
    /** Whether the links replay the past. */
    get replaying() { return o.links.some((l) => l.replay) },
    /** The replayed moment (ms), or now when live. */
    now: () => { const l = o.links.find((x) => x.replay); return l ? l.replayNow() : Date.now() },
  }
}
