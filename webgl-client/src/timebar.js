// Time bar (issue 17): pick a past moment and replay the city from it over
// the websocket (CONTRACT §6 "at", "speed"), play, pause, change speed, go
// back to live; "replay from here" buttons ([data-replay-from] anywhere in
// the page, e.g. an alert's or incident's inspector) start a replay at
// their time. The map draws the replayed layers from the same LiveStore as
// live, so risk colours and every other style apply unchanged.
import { cityISO, CITY_OFFSET } from './i18n.js'

export const SPEEDS = [1, 10, 60, 600, 3600]

/**
 * @param {object} o
 * @param {HTMLElement} o.root where the bar goes (appended)
 * @param {import('./live.js').LiveLink[]} o.links the links to replay together
 * @param {(key:string, vars?:object) => string} o.t catalogue lookup
 * @param {{time:(v:any, style?:string) => string}} o.i18n
 * @param {Document} [o.doc]
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
    el.innerHTML = `<button type="button" data-tb="live" class="badge ${replaying ? 'stale' : 'ok'}">${o.t('replay.live')}</button>
      <input type="datetime-local" step="1" data-tb="at" aria-label="${o.t('replay.pick')}">
      <button type="button" data-tb="go">${o.t('replay.go')}</button>
      <button type="button" data-tb="play" ${replaying ? '' : 'disabled'}>${paused || ended ? o.t('replay.play') : o.t('replay.pause')}</button>
      <select data-tb="speed" aria-label="${o.t('replay.speed')}">${SPEEDS.map((s) => `<option value="${s}" ${s === speed ? 'selected' : ''}>${s}×</option>`).join('')}</select>
      <span class="tb-clock"></span>`
    const input = el.querySelector('[data-tb="at"]')
    input.value = cityISO(replaying ? o.links[0].replayNow() : Date.now() - 3600e3).slice(0, 19)
    tick()
  }

  function tick() {
    const c = el.querySelector('.tb-clock')
    if (!c) return
    const l = o.links.find((x) => x.replay)
    c.textContent = l ? o.t(ended ? 'replay.ended' : 'replay.replaying', { t: o.i18n.time(l.replayNow(), 'datetime') }) : ''
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
    else if (b.dataset.tb === 'go') {
      const v = el.querySelector('[data-tb="at"]').value
      if (v) replayFrom(v.length === 16 ? `${v}:00${CITY_OFFSET}` : `${v}${CITY_OFFSET}`)
    }
  })
  el.addEventListener('change', (e) => {
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
  return { el, replayFrom, live, togglePlay, relabel: render, stop: () => clearInterval(timer), get speed() { return speed }, get paused() { return paused } }
}
