// HTTP access to the CityTwin server (CONTRACT §5, §7). Every call sends
// `Authorization: Bearer <token>` when a token is known. Tokens come from
// `?token=` in the page URL (saved to localStorage) or, in demo mode on
// loopback, from GET /api/demo/token when an action needs one.

const KEY = 'citytwin.token'
const WHO = 'citytwin.token.who' // "url" for a token the user gave, "role:subject" for demo tokens

/** Pick up ?token= from the page URL once and remember it. */
export function initToken() {
  try {
    const u = new URL(location.href)
    const t = u.searchParams.get('token')
    if (t) {
      localStorage.setItem(KEY, t)
      localStorage.setItem(WHO, 'url')
      u.searchParams.delete('token')
      history.replaceState(null, '', u.pathname + u.search + u.hash)
    }
  } catch {
    /* no storage: tokens only live in memory */
  }
}

let memToken = null

/**
 * Demo mode for the pages: no token was given in the URL, so tokens (if
 * any) come from the demo server and the person may choose who they are.
 */
export function isDemo() {
  return getWho() !== 'url'
}

/** The token to send, or null (anonymous reads in demo mode). */
export function getToken() {
  if (memToken) return memToken
  try {
    return localStorage.getItem(KEY)
  } catch {
    return null
  }
}

let memWho = null

function getWho() {
  if (memWho) return memWho
  try {
    return localStorage.getItem(WHO)
  } catch {
    return null
  }
}

function setToken(t, who) {
  memToken = t
  memWho = who
  try {
    localStorage.setItem(KEY, t)
    localStorage.setItem(WHO, who)
  } catch {
    /* memory only */
  }
}

/** ApiError carries the HTTP status and the server's {"error","detail"}. */
export class ApiError extends Error {
  constructor(status, body, path) {
    const msg = (body && (body.error || body.message)) || `HTTP ${status}`
    super(`${msg}${body && body.detail ? ': ' + (typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail)) : ''} (${path})`)
    this.status = status
    this.body = body
  }
}

/**
 * Ask the demo server for a token (loopback, --demo only). 404 means the
 * server is not in demo mode: the user must open the page with ?token=.
 */
export async function demoToken(role, extra = {}) {
  const q = new URLSearchParams({ role, ...extra })
  const r = await fetch(`/api/demo/token?${q}`)
  if (r.status === 404) throw new ApiError(401, { error: 'no token', detail: 'this server is not in demo mode: open the page with ?token=YOUR_TOKEN' }, '/api/demo/token')
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null), '/api/demo/token')
  const b = await r.json()
  setToken(b.token, `${b.role || role}:${b.subject || extra.subject || ''}`)
  return b.token
}

/**
 * A demo token for role (and extra: subject, region) without making it the
 * page's token: the field page acts on its street's tasks with a token of
 * the worker's street while its incidents keep the page's token.
 */
export async function demoTokenFor(role, extra = {}) {
  const q = new URLSearchParams({ role, ...extra })
  const r = await fetch(`/api/demo/token?${q}`)
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null), '/api/demo/token')
  return (await r.json()).token
}

/**
 * Call the API. opts.token sends that bearer token as is (no demo token
 * logic). opts.action marks a write: when no token is known (or the
 * anonymous call is refused with 401) a demo token for opts.role (and
 * opts.subject, e.g. the field worker's name) is fetched and the call
 * retried once. A token given in the URL is never replaced.
 * @returns {Promise<any>} the decoded JSON body (or text)
 */
export async function api(path, opts = {}) {
  const { method = 'GET', body, action = false, role = 'operator', subject = '', raw = false, headers = {}, token: bearer = null } = opts
  const extra = subject ? { subject } : {}
  const who = getWho()
  const demo = who !== 'url'
  const wrongRole = demo && (!who || who.split(':')[0] !== role)
  const wrongSubject = demo && subject && who !== `${role}:${subject}`
  if (!bearer && action && (!getToken() || wrongRole || wrongSubject)) await demoToken(role, extra)
  const call = async () => {
    const h = { ...headers }
    const t = bearer || getToken()
    if (t) h.Authorization = `Bearer ${t}`
    let b = body
    if (body !== undefined && typeof body !== 'string' && !(typeof Blob !== 'undefined' && body instanceof Blob)) {
      b = JSON.stringify(body)
      h['Content-Type'] = 'application/json'
    }
    return fetch(path, { method, headers: h, body: b })
  }
  let r = await call()
  if (r.status === 401 && !bearer && getWho() !== 'url') {
    await demoToken(role, extra)
    r = await call()
  }
  if (raw) return r
  const ct = r.headers.get('Content-Type') || ''
  const data = ct.includes('json') ? await r.json().catch(() => null) : await r.text()
  if (!r.ok) throw new ApiError(r.status, typeof data === 'object' ? data : { error: String(data).slice(0, 200) }, path)
  return data
}

/** Follow OGC "next" links, collecting up to max features. */
export async function fetchAllItems(url, max = 10000, onPage) {
  const out = []
  let next = url
  let matched
  while (next && out.length < max) {
    const page = await api(next)
    out.push(...(page.features || []))
    if (matched === undefined) matched = page.numberMatched
    if (onPage) onPage(out, page)
    const link = (page.links || []).find((l) => l.rel === 'next')
    next = link ? relative(link.href) : null
  }
  return { features: out, numberMatched: matched }
}

/** Make an absolute link from the server relative to this origin. */
export function relative(href) {
  try {
    const u = new URL(href, location.href)
    return u.origin === location.origin ? u.pathname + u.search : href
  } catch {
    return href
  }
}

/** Websocket URL for /ws with ?access_token= when a token is known. */
export function wsURL() {
  const u = new URL('/ws', location.href)
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
  const t = getToken()
  if (t) u.searchParams.set('access_token', t)
  return u.href
}
