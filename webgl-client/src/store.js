// LiveStore keeps the client's copy of the live layers fed by the /ws
// websocket (CONTRACT §6): a Map from feature id ("layer/name") to the latest
// GeoJSON feature, the highest seq applied, and the set of layers changed
// since the last flush. Source updates are batched: however many deltas
// arrive, each dirty layer is handed to onFlush at most once per scheduled
// frame (and no more often than minIntervalMs), which is what lets the map
// hold 10,000 moving objects at 1 update/s.
//
// Not thread-safe in any sense that matters: it lives on the page's one
// thread; schedule/now are injected so tests drive frames by hand.

/** @typedef {{type:'Feature', id:string, layer:string, version:number, geometry:any, properties:Record<string,any>}} TwinFeature */

export class LiveStore {
  /**
   * @param {object} opts
   * @param {(layer:string, features:TwinFeature[], changes:{full:boolean, ids:Set<string>}) => void} [opts.onFlush]
   *   called once per dirty layer per flush with the layer's features and what changed since the
   *   last flush: `ids` upserted or removed, or `full` after a snapshot or resync (redraw all)
   * @param {(cb:() => void) => any} [opts.schedule] frame scheduler (default requestAnimationFrame)
   * @param {() => number} [opts.now] milliseconds clock (default performance.now)
   * @param {number} [opts.minIntervalMs] minimum time between flushes (default 0)
   */
  constructor(opts = {}) {
    this.onFlush = opts.onFlush || (() => {})
    this.schedule = opts.schedule || ((cb) => requestAnimationFrame(cb))
    this.now = opts.now || (() => performance.now())
    this.minIntervalMs = opts.minIntervalMs || 0
    /** @type {Map<string, TwinFeature>} */
    this.features = new Map()
    /** @type {Map<string, Set<string>>} ids per layer, so a flush walks one layer only */
    this.byLayer = new Map()
    this.seq = 0
    this.dirty = new Set()
    /** @type {Map<string, {full:boolean, ids:Set<string>}>} per layer: what changed since its last flush */
    this.changes = new Map()
    this.pending = false
    this.lastFlush = -Infinity
    this.flushes = 0
    /** milliseconds spent in flushes (onFlush + listeners), for the load figures */
    this.flushMs = 0
    /** listeners called after each flush with the set of flushed layers */
    this.listeners = new Set()
    /** per-message hooks (id, feature|null) for interpolation and inspectors */
    this.changeHooks = new Set()
  }

  /** Handle one decoded server message; returns what it did (for tests and stats). */
  handle(msg) {
    switch (msg && msg.op) {
      case 'snapshot':
        this.applySnapshot(msg)
        return 'snapshot'
      case 'delta':
        return this.applyDelta(msg) ? 'applied' : 'ignored'
      case 'resync':
        this.resync()
        return 'resync'
      default:
        return 'ignored'
    }
  }

  /** A snapshot replaces the whole state with what is in view at msg.seq. */
  applySnapshot(msg) {
    for (const layer of this.byLayer.keys()) this._full(layer)
    for (const id of this.features.keys()) this._notify(id, null)
    this.features.clear()
    this.byLayer.clear()
    for (const f of msg.features || []) this._full(this._put(f))
    this.seq = Number(msg.seq) || 0
    this._schedule()
  }

  /**
   * Apply one delta. Deltas at or below the seq already applied are
   * duplicates (a resume overlapping what we had) and are ignored; an
   * upsert whose version is not newer than the held one is stale and
   * ignored; a remove older than the held version is ignored too.
   * @returns {boolean} whether the state changed
   */
  applyDelta(msg) {
    const seq = Number(msg.seq) || 0
    // A replayed delta comes in time order, not seq order (a late fix
    // has a later seq): it is never a resume duplicate.
    if (!msg.replay) {
      if (seq <= this.seq) return false
      this.seq = seq
    }
    const f = msg.feature
    if (!f || typeof f.id !== 'string') return false
    const held = this.features.get(f.id)
    if (msg.kind === 'remove') {
      if (!held || (Number(f.version) || 0) < (Number(held.version) || 0)) return false
      this._delete(held)
      this._schedule()
      return true
    }
    if (held && (Number(f.version) || 0) <= (Number(held.version) || 0)) return false
    this._put(f)
    this._schedule()
    return true
  }

  /** Resync drops everything: a snapshot follows. */
  resync() {
    for (const layer of this.byLayer.keys()) this._full(layer)
    for (const id of this.features.keys()) this._notify(id, null)
    this.features.clear()
    this.byLayer.clear()
    this.seq = 0
    this._schedule()
  }

  /** @returns {TwinFeature|undefined} */
  get(id) {
    return this.features.get(id)
  }

  /** Features of one layer (a fresh array). */
  layer(layer) {
    const ids = this.byLayer.get(layer)
    const out = []
    if (!ids) return out
    for (const id of ids) out.push(this.features.get(id))
    return out
  }

  count(layer) {
    if (layer) return this.byLayer.get(layer)?.size || 0
    return this.features.size
  }

  /** Mark a layer for redraw without a data change (e.g. interpolation). */
  touch(layer) {
    this.dirty.add(layer)
    this._schedule()
  }

  /** Run a flush now: onFlush once per dirty layer, then listeners. */
  flush() {
    this.pending = false
    if (this.dirty.size === 0) return
    const t = this.now()
    if (t - this.lastFlush < this.minIntervalMs) {
      this._schedule()
      return
    }
    this.lastFlush = t
    const layers = this.dirty
    const changes = this.changes
    this.dirty = new Set()
    this.changes = new Map()
    this.flushes++
    for (const layer of layers) this.onFlush(layer, this.layer(layer), changes.get(layer) || { full: false, ids: new Set() })
    for (const fn of this.listeners) fn(layers)
    this.flushMs += this.now() - t
  }

  _schedule() {
    if (this.pending) return
    this.pending = true
    this.schedule(() => this.flush())
  }

  _put(f) {
    const layer = f.layer || String(f.id).split('/')[0]
    if (!f.layer) f = { ...f, layer }
    const old = this.features.get(f.id)
    if (old && old.layer !== layer) this._delete(old)
    this.features.set(f.id, f)
    let ids = this.byLayer.get(layer)
    if (!ids) this.byLayer.set(layer, (ids = new Set()))
    ids.add(f.id)
    this._mark(layer, f.id)
    this._notify(f.id, f)
    return layer
  }

  /** Note that id of layer changed (for incremental map updates). */
  _mark(layer, id) {
    this.dirty.add(layer)
    let c = this.changes.get(layer)
    if (!c) this.changes.set(layer, (c = { full: false, ids: new Set() }))
    if (!c.full) c.ids.add(id)
  }

  /** The whole layer must be redrawn (snapshot, resync). */
  _full(layer) {
    this.dirty.add(layer)
    if (this.changes.get(layer)?.full) return
    this.changes.set(layer, { full: true, ids: new Set() })
  }

  _delete(f) {
    this.features.delete(f.id)
    this.byLayer.get(f.layer)?.delete(f.id)
    this._mark(f.layer, f.id)
    this._notify(f.id, null)
  }

  _notify(id, f) {
    for (const fn of this.changeHooks) fn(id, f)
  }
}
