// What lists and the inspector call an object (issue 14): its Chinese name
// (name_zh, a task's title), then its name, then a readable fallback made
// of its kind and a code an operator knows (a plate, a fire code), never
// the internal id as the main label. Pure functions: vitest checks them.

/**
 * Whether a name is an internal id rather than a display name: the id's own
 * name part (the demo's b000123 is both), a layer-qualified id, or an
 * id-shaped token (letters then digits, "rect-..."/"enf-..." case names).
 */
export function isInternalName(name, id) {
  if (name == null || name === '') return true
  const s = String(name)
  const short = id == null ? '' : String(id).split('/').slice(1).join('/')
  if (short && s === short) return true
  if (/^[a-z]+\/\S+$/.test(s)) return true
  if (/^[A-Za-z]{1,4}-?\d{3,}$/.test(s)) return true
  return /^(rect|enf|dir|task|case)[-.]/i.test(s)
}

const pick = (vals, id) => vals.find((v) => typeof v === 'string' && v.trim() !== '' && !isInternalName(v, id))

/**
 * The object's own display name in the language, or '' when it has none:
 * zh prefers name_zh and title_zh, English name and title; each falls back
 * to the other language.
 * @param {{id?:string, properties?:object}} f
 * @param {boolean} zh
 */
export function ownName(f, zh = true) {
  const p = (f && f.properties) || {}
  const id = f && f.id
  const zhNames = [p.name_zh, p.title_zh]
  const enNames = [p.name, p.title]
  return pick(zh ? [...zhNames, ...enNames] : [...enNames, ...zhNames], id) || ''
}

/**
 * Display name of an object: its own name, else a readable fallback by
 * layer. term(group, value) looks up catalogue terms (i18n.term).
 * @param {{id?:string, layer?:string, properties?:object}} f
 * @param {{zh?:boolean, term?:(group:string, value:string) => string}} [o]
 */
export function displayName(f, o = {}) {
  const zh = o.zh ?? true
  const term = o.term || ((g, v) => v)
  const own = ownName(f, zh)
  if (own) return own
  const p = (f && f.properties) || {}
  const id = String((f && f.id) || '')
  const layer = (f && f.layer) || id.split('/')[0]
  const kind = term('obj', layer) || layer
  switch (layer) {
    case 'vehicles':
      if (p.plate) return p.plate
      break
    case 'incidents':
      if (p.type) return term('types', p.type)
      break
    case 'alerts':
      if (p.rule) return term('rules', p.rule)
      break
    case 'devices':
      if (p.kind) return term('kinds', p.kind)
      break
    case 'buildings':
      if (p.fire_code) return `${kind} ${p.fire_code}`
      break
    case 'tasks':
      if (p.kind) return term('kinds', p.kind)
      break
    default:
  }
  if (p.code) return `${kind} ${p.code}`
  // last resort: the kind and the id's number, "建筑 #123"
  const digits = id.split('/').slice(1).join('/').match(/^[A-Za-z]{0,4}[-_]?(\d+)$/)
  return digits ? `${kind} #${Number(digits[1])}` : kind
}

/**
 * A vehicle's label: its plate and its display name ("渝A·12345 · 顺达运输
 * 3号车"); the plate alone, or the name alone, when only one is known.
 */
export function vehicleLabel(p, zh = true) {
  const props = p || {}
  const name = ownName({ properties: props }, zh)
  return [props.plate, name].filter(Boolean).join(' · ')
}

/**
 * What an alert concerns, as a row or the inspector reads it, from the
 * names the alert carries (subject_plate, subject_name_zh ... written by
 * the rules engine), else from the subject itself when the page holds it
 * (lookup), else a readable fallback from the subject's id.
 * @returns {{kind:string, name:string, plate:string, building:string}}
 */
export function alertSubject(p, o = {}) {
  const zh = o.zh ?? true
  const term = o.term || ((g, v) => v)
  const props = p || {}
  const ref = String(props.subject || '')
  const layer = ref.split('/')[0]
  const carried = {}
  for (const k of ['name', 'name_zh', 'title', 'title_zh', 'plate']) if (props['subject_' + k]) carried[k] = props['subject_' + k]
  const live = o.lookup ? o.lookup(ref) : null
  const sp = { ...((live && live.properties) || {}), ...carried }
  const subj = { id: ref, layer, properties: sp }
  const plate = sp.plate || ''
  let name = ownName(subj, zh)
  if (!name && !plate) name = displayName(subj, { zh, term })
  const bp = {}
  for (const k of ['name', 'name_zh']) if (props['attached_' + k]) bp[k] = props['attached_' + k]
  const building = ownName({ id: props.attached_to, properties: bp }, zh)
  return { kind: term('obj', layer) || layer, name, plate, building }
}
