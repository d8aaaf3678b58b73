// On duty, the phone reports its own position for its worker object
// (POST /api/telemetry with the field token; the server takes a field
// token's fixes for workers/{subject} only). Fixes come from
// navigator.geolocation.watchPosition; one is sent when the phone moved
// at least minMetres or every maxQuietMs, never more often than minGapMs.

/** Metres between two [lon, lat] points (equirectangular: fine for metres to km). */
export function metres(a, b) {
  const k = Math.PI / 180
  const x = (b[0] - a[0]) * k * Math.cos(((a[1] + b[1]) / 2) * k)
  const y = (b[1] - a[1]) * k
  return Math.hypot(x, y) * 6371008.8
}

/**
 * shouldSend decides whether a fix goes out: the first one always; later
 * ones when moved >= minMetres and minGapMs passed, or maxQuietMs passed.
 */
export function shouldSend(last, fix, o = {}) {
  const { minMetres = 10, minGapMs = 3000, maxQuietMs = 30000 } = o
  if (!last) return true
  const dt = fix.t - last.t
  if (dt >= maxQuietMs) return true
  return dt >= minGapMs && metres(last.at, fix.at) >= minMetres
}

/** A telemetry line (CONTRACT §3) for a fix of worker name. */
export function telemetryLine(name, fix) {
  const o = { id: name, ts: new Date(fix.t).toISOString(), lon: +fix.at[0].toFixed(7), lat: +fix.at[1].toFixed(7) }
  if (fix.speed != null && isFinite(fix.speed)) o.speed_kmh = +(fix.speed * 3.6).toFixed(1)
  if (fix.heading != null && isFinite(fix.heading)) o.heading = +fix.heading.toFixed(1)
  return JSON.stringify(o)
}

/**
 * createDuty wires geolocation to telemetry.
 * @param {{geo: Geolocation|undefined, send: (line:string)=>Promise<any>, onFix: (fix)=>void, onError: (msg:string)=>void, worker: ()=>string}} o
 */
export function createDuty(o) {
  let watch = null
  let last = null
  let sent = 0
  let on = false
  const handle = (p) => {
    const fix = { at: [p.coords.longitude, p.coords.latitude], acc: p.coords.accuracy, speed: p.coords.speed, heading: p.coords.heading, t: p.timestamp || Date.now() }
    o.onFix(fix)
    const name = o.worker()
    if (!on || !name || !shouldSend(last, fix)) return
    last = fix
    o.send(telemetryLine(name, fix)).then(() => { sent++ }, (err) => o.onError(err.message || String(err)))
  }
  return {
    get on() { return on },
    get sent() { return sent },
    start() {
      on = true
      last = null
      if (!o.geo) { o.onError('no geolocation'); return }
      if (watch == null) watch = o.geo.watchPosition(handle, (err) => o.onError(err.message), { enableHighAccuracy: true, maximumAge: 5000, timeout: 20000 })
    },
    stop() {
      on = false
      if (watch != null && o.geo) o.geo.clearWatch(watch)
      watch = null
    },
  }
}
