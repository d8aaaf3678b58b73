// My incidents and the one primary action for the current one. Pure
// functions (unit-tested); field.js renders them. Tasks (governance/tasks)
// will be listed beside incidents through the same shape.

/** The next action of the assignee for an incident state. */
export const NEXT = { dispatched: 'accept', accepted: 'arrive', arrived: 'resolve' }
const PROGRESS = { arrived: 0, accepted: 1, dispatched: 2 }

/** Whether f is assigned to worker (by name). */
export function isMine(f, worker) {
  return !!worker && ((f.properties || {}).assignee === `workers/${worker}`)
}

/**
 * current picks my incident to act on now: the one furthest along
 * (arrived, then accepted, then dispatched), then the oldest dispatch.
 */
export function current(features, worker) {
  const mine = (features || []).filter((f) => isMine(f, worker) && NEXT[(f.properties || {}).state])
  mine.sort((a, b) => {
    const pa = a.properties, pb = b.properties
    return (PROGRESS[pa.state] - PROGRESS[pb.state]) || String(pa.dispatched_at || '').localeCompare(String(pb.dispatched_at || ''))
  })
  return mine[0] || null
}

/** Actions offered on a row: only the next step, only on my own incidents. */
export function actionsFor(f, worker) {
  if (!isMine(f, worker)) return []
  const a = NEXT[(f.properties || {}).state]
  return a ? [a] : []
}

/** Merge lists of features by id (later lists win). */
export function mergeById(...lists) {
  const m = new Map()
  for (const l of lists) for (const f of l || []) m.set(f.id, f)
  return [...m.values()]
}

/** Whether region code c is r or inside it (the city holds all). */
const within = (c, r) => !!c && !!r && (r === '500000' || c === r || c.startsWith(r))

/**
 * The street a worker works in: the last street code (9 digits) of its
 * region path, else its innermost region.
 */
export function streetOf(worker) {
  const r = Array.isArray(worker && worker.region) ? worker.region : []
  return r.filter((c) => String(c).length >= 9).pop() || r[r.length - 1] || ''
}

/**
 * The tasks of my region that I may act on: assigned to it (or to a
 * region inside it), or shared with it (an enforcement case's regions).
 */
export function tasksFor(features, region) {
  return (features || []).filter((f) => {
    const p = f.properties || {}
    return within(String(p.assignee || ''), region) || (Array.isArray(p.regions) && p.regions.some((c) => within(String(c), region)))
  })
}
