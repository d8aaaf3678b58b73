// Photo evidence of an incident (POST /api/incidents/{name}/evidence): the
// inspector shows the photos listed in the incident's `evidence` prop.
// Images are fetched with the bearer token (an <img src> cannot send it)
// and kept as object URLs by their content-addressed id, so re-rendering
// the inspector never downloads a photo twice.
import { api } from './api.js'
import { esc } from './common.js'
import { t } from './i18n.js'

const urls = new Map() // evidence id -> object URL (or a pending promise)

/** Placeholders for the photos of incident properties p ('' when none). */
export function evidenceHTML(p) {
  const list = Array.isArray(p && p.evidence) ? p.evidence : []
  if (list.length === 0) return ''
  return `<h4>${esc(t('insp.evidence'))}</h4><div class="evidence">${list.map((e) =>
    `<a target="_blank" rel="noopener" data-ev="${esc(e.id)}"><img alt="${esc(t('insp.evidence'))}" data-ev="${esc(e.id)}" width="96" height="96"></a>`).join('')}</div>`
}

/** Fill the placeholders under root for the photos of `layer`/name (an incident's, or a task's). */
export async function loadEvidence(root, name, layer = 'incidents') {
  for (const img of root.querySelectorAll('img[data-ev]')) {
    const id = img.dataset.ev
    let u = urls.get(id)
    if (!u) {
      u = api(`/api/${layer}/${encodeURIComponent(name)}/evidence/${encodeURIComponent(id)}`, { raw: true })
        .then((r) => (r.ok ? r.blob() : null))
        .then((b) => (b ? URL.createObjectURL(b) : ''))
      urls.set(id, u)
    }
    const src = await u
    if (typeof src === 'string' && src) {
      urls.set(id, src)
      img.src = src
      if (img.parentElement) img.parentElement.href = src
    } else {
      urls.delete(id)
    }
  }
}
