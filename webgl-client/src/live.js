// LiveLink keeps the /ws websocket (CONTRACT §6) open for a LiveStore:
// subscribes with the current view, re-subscribes on view changes (a fresh
// snapshot, since a resume only covers the same view), and on a dropped link
// reconnects with exponential backoff, resuming with `since` = the highest
// seq applied when the view did not change meanwhile. Status changes
// ('connecting', 'live', 'reconnecting') drive the stale badge.
//
// Replay (CONTRACT §6 "at"): setReplay({at, speed, live}) subscribes the
// same view at a past time; a view change or a reconnect re-subscribes at
// the replay clock's current time; setReplay(null) returns to live. The
// server's {"op":"clock"} messages keep `replayClock`; {"op":"live"} ends
// the replay (the live snapshot follows). onMessage sees every message.

export class LiveLink {
  /**
   * @param {object} o
   * @param {import('./store.js').LiveStore} o.store
   * @param {string[]} o.layers
   * @param {() => string} o.url websocket URL (read on each connect: the token may change)
   * @param {(status:string, info:object) => void} [o.onStatus]
   * @param {typeof WebSocket} [o.WebSocket]
   * @param {number} [o.minBackoffMs]
   * @param {number} [o.maxBackoffMs]
   */
  constructor(o) {
    this.store = o.store
    this.layers = o.layers
    this.url = o.url
    this.onStatus = o.onStatus || (() => {})
    this.onMessage = o.onMessage || null
    /** {at: ms, speed, live} while replaying, else null */
    this.replay = null
    /** the server's last replay clock: {at: ms, speed, paused, wall: ms} */
    this.replayClock = null
    this.WS = o.WebSocket || WebSocket
    this.minBackoffMs = o.minBackoffMs ?? 500
    this.maxBackoffMs = o.maxBackoffMs ?? 15000
    this.bbox = null
    this.viewChanged = true // nothing held yet: first subscribe takes a snapshot
    this.attempt = 0
    this.ws = null
    this.timer = null
    this.stopped = false
    this.status = 'connecting'
    this.messages = 0
    this.lastMessageAt = 0
  }

  start() {
    this.stopped = false
    this._connect()
  }

  stop() {
    this.stopped = true
    clearTimeout(this.timer)
    if (this.ws) this.ws.close(1000)
  }

  /** Change the view; re-subscribes at once when connected. */
  setBBox(bbox) {
    const rounded = bbox.map((v) => Math.round(v * 1e6) / 1e6)
    if (this.bbox && rounded.every((v, i) => v === this.bbox[i])) return
    this.bbox = rounded
    this.viewChanged = true
    if (this.ws && this.ws.readyState === 1) this._subscribe()
  }

  /** Replay from r.at (ms or ISO) at r.speed, on into live when r.live; null = live. */
  setReplay(r) {
    this.replay = r ? { at: typeof r.at === 'number' ? r.at : Date.parse(r.at), speed: r.speed || 1, live: !!r.live } : null
    this.replayClock = this.replay ? { at: this.replay.at, speed: this.replay.speed, paused: false, wall: Date.now() } : null
    this.viewChanged = true
    if (this.ws && this.ws.readyState === 1) this._subscribe()
  }

  /** The replay clock now (ms), estimated from the server's last clock message. */
  replayNow() {
    const c = this.replayClock
    if (!c) return Date.now()
    return c.paused ? c.at : c.at + (Date.now() - c.wall) * c.speed
  }

  /** Send a replay op (pause, play, seek, speed) when connected. */
  send(msg) {
    if (msg.op === 'speed' && this.replay) this.replay.speed = msg.speed
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg))
  }

  _setStatus(s) {
    this.status = s
    this.onStatus(s, { attempt: this.attempt })
  }

  _connect() {
    if (this.stopped) return
    this._setStatus(this.attempt === 0 ? 'connecting' : 'reconnecting')
    let ws
    try {
      ws = new this.WS(this.url())
    } catch (e) {
      this._retry()
      return
    }
    this.ws = ws
    ws.onopen = () => {
      this.attempt = 0
      this._setStatus('live')
      if (this.bbox) this._subscribe()
    }
    ws.onmessage = (ev) => {
      let msg
      try {
        msg = JSON.parse(ev.data)
      } catch {
        return
      }
      this.messages++
      this.lastMessageAt = Date.now()
      if (this.onMessage) this.onMessage(msg, this)
      if (msg.op === 'error') {
        console.warn('websocket error from server:', msg.error)
        return
      }
      if (msg.op === 'clock') {
        this.replayClock = { at: Date.parse(msg.at), speed: msg.speed, paused: !!msg.paused, wall: Date.now() }
        return
      }
      if (msg.op === 'live') {
        this.replay = null
        this.replayClock = null
        return
      }
      this.store.handle(msg)
    }
    ws.onclose = () => {
      if (this.ws !== ws) return
      this.ws = null
      this._retry()
    }
    ws.onerror = () => {
      /* onclose follows */
    }
  }

  _retry() {
    if (this.stopped) return
    this.attempt++
    this._setStatus('reconnecting')
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** (this.attempt - 1))
    const delay = base / 2 + Math.random() * (base / 2)
    this.timer = setTimeout(() => this._connect(), delay)
  }

  _subscribe() {
    const msg = { op: 'subscribe', layers: this.layers, bbox: this.bbox }
    if (this.replay) {
      // A replay restarts at the replay clock's time (the view or the
      // link changed); pause and speed carry over.
      const paused = this.replayClock && this.replayClock.paused
      msg.at = new Date(this.replayNow()).toISOString()
      msg.speed = this.replay.speed
      if (this.replay.live) msg.live = true
      this.viewChanged = false
      this.ws.send(JSON.stringify(msg))
      if (paused) this.ws.send(JSON.stringify({ op: 'pause' }))
      return
    }
    if (!this.viewChanged && this.store.seq > 0) msg.since = this.store.seq
    this.viewChanged = false
    this.ws.send(JSON.stringify(msg))
  }
}
