// Keyed list updates for the operator's panels (issue 14 item 7): rows are
// created once per key and kept; a row's markup is rewritten only when its
// signature (what it shows, apart from ticking clocks) changes, and rows
// move only when the order changes. Clicks, hover and keyboard focus
// therefore survive the once-a-second refresh.

/**
 * Make parent's keyed children match items, in order.
 * @param {Element} parent
 * @param {any[]} items
 * @param {object} o
 * @param {(it:any) => string} o.key stable key of an item
 * @param {(it:any) => string} o.sig what the row shows; a change re-renders it
 * @param {(el:HTMLElement, it:any) => void} o.render fill a new or changed row
 * @param {(el:HTMLElement, it:any) => void} [o.patch] cheap per-tick update (clocks, ages)
 * @param {string} [o.tag] element of a row (default li)
 */
export function reconcile(parent, items, { key, sig, render, patch, tag = 'li' }) {
  const existing = new Map()
  for (const el of parent.children) if (el.dataset.key != null) existing.set(el.dataset.key, el)
  const keep = new Set()
  let prev = null
  for (const it of items) {
    const k = key(it)
    if (keep.has(k)) continue
    keep.add(k)
    let el = existing.get(k)
    if (!el) {
      el = document.createElement(tag)
      el.dataset.key = k
    }
    const s = sig(it)
    if (el._sig !== s) {
      render(el, it)
      el._sig = s
    }
    if (patch) patch(el, it)
    const want = prev ? prev.nextElementSibling : parent.firstElementChild
    if (el !== want) parent.insertBefore(el, want)
    prev = el
  }
  for (const [k, el] of existing) if (!keep.has(k)) el.remove()
}

/** Set an element's text only when it differs (no layout work otherwise). */
export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text
}
