// Interpolator moves point features smoothly between GPS fixes: each new fix
// starts a glide from where the object is drawn now to the fix, lasting about
// the interval between its last two fixes (clamped to [minMs, maxMs]), so a
// truck reporting once a second glides continuously instead of jumping.
// Times are milliseconds on the caller's clock (performance.now in the page).

export class Interpolator {
  constructor({ minMs = 200, maxMs = 2000, defaultMs = 1000 } = {}) {
    this.minMs = minMs
    this.maxMs = maxMs
    this.defaultMs = defaultMs
    /** @type {Map<string, {from:number[], to:number[], t0:number, dur:number, last:number}>} */
    this.tracks = new Map()
    this.latestEnd = -Infinity
  }

  /** Record a new fix for id at time now. */
  fix(id, coords, now) {
    if (!Array.isArray(coords) || coords.length < 2) return
    const tr = this.tracks.get(id)
    if (!tr) {
      this.tracks.set(id, { from: coords, to: coords, t0: now, dur: 0, last: now })
      return
    }
    const from = this.position(id, now)
    const gap = now - tr.last
    const dur = Math.min(this.maxMs, Math.max(this.minMs, gap > 0 && gap < 10 * this.maxMs ? gap : this.defaultMs))
    tr.from = from
    tr.to = coords
    tr.t0 = now
    tr.dur = dur
    tr.last = now
    if (now + dur > this.latestEnd) this.latestEnd = now + dur
  }

  /** Drawn position of id at time now ([lon, lat]), or undefined. */
  position(id, now) {
    const tr = this.tracks.get(id)
    if (!tr) return undefined
    if (tr.dur <= 0 || now >= tr.t0 + tr.dur) return tr.to
    const k = Math.max(0, (now - tr.t0) / tr.dur)
    return [tr.from[0] + (tr.to[0] - tr.from[0]) * k, tr.from[1] + (tr.to[1] - tr.from[1]) * k]
  }

  /** Whether any glide is still running at now (the map needs redraws). */
  moving(now) {
    return now < this.latestEnd
  }

  /**
   * Ids whose drawn position changed since the previous call: gliding now,
   * or whose glide ended since then (so the final position is drawn too).
   * The map redraws just these between deltas.
   */
  movingIds(now) {
    const since = this.lastMovingCheck ?? -Infinity
    this.lastMovingCheck = now
    const out = []
    if (since >= this.latestEnd) return out
    for (const [id, tr] of this.tracks) if (tr.dur > 0 && tr.t0 + tr.dur > since && tr.t0 < now) out.push(id)
    return out
  }

  remove(id) {
    this.tracks.delete(id)
  }

  clear() {
    this.tracks.clear()
    this.latestEnd = -Infinity
  }
}
