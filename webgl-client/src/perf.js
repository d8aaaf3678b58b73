// Frame meter: records requestAnimationFrame intervals so the page (and the
// e2e test) can report FPS and frame-time percentiles under load.
export function startFrameMeter() {
  const gaps = []
  let last = performance.now()
  const t0 = last
  let on = true
  const loop = (t) => {
    if (!on) return
    gaps.push(t - last)
    last = t
    requestAnimationFrame(loop)
  }
  requestAnimationFrame(loop)
  const summary = () => {
    const s = [...gaps].sort((a, b) => a - b)
    const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0)
    const secs = (last - t0) / 1000
    return {
      frames: gaps.length, seconds: +secs.toFixed(2), fps: +(gaps.length / Math.max(secs, 1e-9)).toFixed(1),
      p50ms: +q(0.5).toFixed(1), p95ms: +q(0.95).toFixed(1), maxms: +(s.at(-1) || 0).toFixed(1),
      over100ms: s.filter((g) => g > 100).length,
    }
  }
  return { stop() { on = false; return summary() }, peek: summary }
}
