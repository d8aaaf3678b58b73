// Message catalogue, names and times for the three pages (issue 14 item 1).
//
// A small catalogue module rather than an i18n library: two languages,
// flat JSON catalogues (src/locales/zh-CN.json, en.json) that Vite bundles,
// "{var}" interpolation, and the browser's own Intl for dates, relative ages
// and numbers. i18next and friends would add ~40 kB and features we do not
// use (namespaces, backends, lazy loading, ICU plurals: Chinese has none and
// the English strings avoid them).
//
// zh-CN is the default; English is one click away (setLang, persisted in
// localStorage). Times are always shown in the city's time zone,
// Asia/Shanghai (UTC+8, no daylight saving since 1991), whatever the
// browser's zone, so a wall screen and a phone agree.
import zh from './locales/zh-CN.json'
import en from './locales/en.json'
import { displayName, vehicleLabel, alertSubject } from './names.js'

/** The city's time zone: every displayed time is in it. */
export const CITY_TZ = 'Asia/Shanghai'
/** Offset of CITY_TZ: fixed, China has no daylight saving time. */
export const CITY_OFFSET = '+08:00'
const CITY_OFFSET_MS = 8 * 3600 * 1000

export const LANGS = ['zh-CN', 'en']
const CATALOGUES = { 'zh-CN': zh, en }
const STORE_KEY = 'citytwin.lang'

function defaultStorage() {
  try {
    return globalThis.localStorage || null
  } catch {
    return null
  }
}

/** Milliseconds since epoch of an ISO string, Date or number; NaN when none. */
export function toMs(v) {
  if (v == null || v === '') return NaN
  if (typeof v === 'number') return v
  if (v instanceof Date) return v.getTime()
  return new Date(v).getTime()
}

/**
 * ISO 8601 in the city's zone with its offset, second precision:
 * "2026-11-23T16:00:00+08:00" ("" when v is not a time).
 */
export function cityISO(v) {
  const t = toMs(v)
  if (isNaN(t)) return ''
  return new Date(Math.floor(t / 1000) * 1000 + CITY_OFFSET_MS).toISOString().slice(0, 19) + CITY_OFFSET
}

/**
 * A time as the time bar's field shows it, in the city's zone whatever the
 * browser's: "2026-11-23 16:00:00" ("" when v is not a time).
 */
export function cityInputValue(v) {
  const iso = cityISO(v)
  return iso ? iso.slice(0, 10) + ' ' + iso.slice(11, 19) : ''
}

/**
 * Parse what an operator types into the time bar as a time in the city's
 * zone: "2026-11-23 16:00[:00]" (also with / or . between the date's
 * parts, or a T before the time), or a time alone "16:00[:00]" for that
 * time today in the city (today as of now, ms). NaN when it is none.
 */
export function parseCityTime(s, now = Date.now()) {
  const str = String(s ?? '').trim()
  let m = str.match(/^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]+(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?$/)
  let y, mo, d, h, mi, se
  if (m) {
    [, y, mo, d, h = '0', mi = '0', se = '0'] = m
  } else {
    m = str.match(/^(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?$/)
    if (!m) return NaN
    const today = cityISO(now)
    if (!today) return NaN
    ;[y, mo, d] = today.slice(0, 10).split('-')
    ;[, h, mi, se = '0'] = m
  }
  const n = [y, mo, d, h, mi, se].map(Number)
  if (n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[3] > 23 || n[4] > 59 || n[5] > 59) return NaN
  const ms = Date.UTC(n[0], n[1] - 1, n[2], n[3], n[4], n[5]) - CITY_OFFSET_MS
  // 2026-02-31 rolls over in Date.UTC: refuse it rather than replay March 3rd
  return cityISO(ms).slice(0, 10) === `${y}-${String(n[1]).padStart(2, '0')}-${String(n[2]).padStart(2, '0')}` ? ms : NaN
}

/**
 * createI18n makes one catalogue instance. Pages use the shared `i18n`
 * below; tests make their own with a fake storage.
 * @param {{lang?:string, storage?:Storage|null, catalogues?:object}} [o]
 */
export function createI18n(o = {}) {
  const storage = o.storage === undefined ? defaultStorage() : o.storage
  const cats = o.catalogues || CATALOGUES
  let stored = null
  try {
    stored = storage && storage.getItem(STORE_KEY)
  } catch {
    stored = null
  }
  let lang = o.lang || (cats[stored] ? stored : 'zh-CN')
  const listeners = new Set()
  const fmtCache = new Map()
  /** rule name -> {title, title_zh} from GET /api/rules */
  let ruleTitles = new Map()

  const lookup = (cat, key) => {
    if (!cat) return undefined
    if (Object.prototype.hasOwnProperty.call(cat, key)) return cat[key]
    // dotted keys also reach into nested objects ("state.open")
    let cur = cat
    for (const part of key.split('.')) {
      if (cur == null || typeof cur !== 'object') return undefined
      cur = cur[part]
    }
    return cur
  }
  const interpolate = (s, vars) => (vars ? s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] == null ? m : String(vars[k]))) : s)
  const formatter = (kind, opts) => {
    const k = kind + lang + JSON.stringify(opts)
    let f = fmtCache.get(k)
    if (!f) {
      f = kind === 'dt' ? new Intl.DateTimeFormat(lang, { timeZone: CITY_TZ, hourCycle: 'h23', ...opts })
        : kind === 'rel' ? new Intl.RelativeTimeFormat(lang, { numeric: 'always', style: 'long', ...opts })
          : new Intl.NumberFormat(lang, opts)
      fmtCache.set(k, f)
    }
    return f
  }

  const api = {
    get lang() { return lang },
    /** Whether the current language is Chinese (names prefer name_zh). */
    get zh() { return lang.startsWith('zh') },

    /** Switch language, remember it, and tell the listeners (pages re-render). */
    setLang(l) {
      if (!cats[l] || l === lang) return
      lang = l
      fmtCache.clear()
      try {
        if (storage) storage.setItem(STORE_KEY, l)
      } catch {
        /* not persisted */
      }
      for (const fn of listeners) fn(l)
    },
    /** Call fn(lang) after every language change; returns an unsubscribe. */
    onChange(fn) {
      listeners.add(fn)
      return () => listeners.delete(fn)
    },

    /** Whether the catalogue (current language, else English) has key. */
    has(key) {
      return typeof (lookup(cats[lang], key) ?? lookup(cats.en, key)) === 'string'
    },

    /**
     * The message for key with {var}s filled in; falls back to English,
     * then to the key itself (so a missing entry shows, never blanks).
     */
    t(key, vars) {
      const s = lookup(cats[lang], key) ?? lookup(cats.en, key)
      return typeof s === 'string' ? interpolate(s, vars) : key
    },

    /**
     * A term of a group ("state", "types", "kinds", ...): its catalogue
     * entry, else the raw value made readable ("road_damage" -> "road damage").
     */
    term(group, value) {
      if (value == null || value === '') return ''
      const key = `${group}.${value}`
      return api.has(key) ? api.t(key) : String(value).replace(/[_-]+/g, ' ')
    },

    /** Display name of an object: name_zh in Chinese when present, else name. */
    name(props, fallback = '') {
      const p = props || {}
      const zhName = p.name_zh || p.title_zh
      const enName = p.name || p.title
      return (api.zh ? zhName || enName : enName || zhName) || fallback
    },

    /**
     * What lists and the inspector call an object (names.js): name_zh or a
     * task's title, then name, then its kind and a code, never its id.
     */
    label(f) {
      return displayName(f, { zh: api.zh, term: (g, v) => (g === 'rules' ? api.rule(v) : api.term(g, v)) })
    },
    /** A vehicle's plate and name: "渝A·12345 · 顺达运输 3号车". */
    vehicle(props) {
      return vehicleLabel(props, api.zh)
    },
    /** What an alert concerns: {kind, name, plate, building} (names.js alertSubject). */
    subject(alertProps, lookup) {
      return alertSubject(alertProps, { zh: api.zh, term: api.term, lookup })
    },

    /**
     * Who did a step of a history: "system" -> 系统, "rule:NAME" -> the
     * rule's title, "demo-operator" -> 演示值班员, an object id through
     * nameOf (a worker's name), account@region with the region's name
     * (regionName); other accounts as they are.
     */
    actor(a, nameOf, regionName) {
      const s = String(a ?? '')
      if (!s) return ''
      const acct = s.match(/^(.+)@(\d{6,9})$/) // an account of a region: admin@500000 -> admin（重庆市）
      if (acct && regionName && regionName(acct[2])) return `${acct[1]}（${regionName(acct[2])}）`
      if (api.has(`actor.${s}`)) return api.t(`actor.${s}`)
      if (s.startsWith('rule:')) return api.t('actor.rule', { rule: api.rule(s.slice(5)) })
      if (/^demo-/.test(s)) return api.t('actor.demo', { who: s.slice(5) })
      if (nameOf && /^[a-z]+\/./.test(s)) return nameOf(s)
      return s
    },

    /** Remember the rules' display names (GET /api/rules as JSON). */
    setRules(rules) {
      ruleTitles = new Map()
      for (const r of rules || []) if (r && r.name) ruleTitles.set(r.name, { title: r.title, title_zh: r.title_zh })
    },
    /** A rule's display name: the rule file's title(_zh), else the catalogue, else its name. */
    rule(name) {
      const r = ruleTitles.get(name)
      const fromFile = r && (api.zh ? r.title_zh || r.title : r.title || r.title_zh)
      return fromFile || api.term('rules', name)
    },

    /**
     * A time in the city's zone. style: 'time' (21:05:33), 'short' (21:05),
     * 'datetime' (12-02 21:05:33 / 12/02 21:05:33), 'full' (with year).
     */
    time(v, style = 'datetime') {
      const t = toMs(v)
      if (isNaN(t)) return ''
      // Chinese: dates as the time bar's field writes them, 2026-11-24 07:30:05
      // (Intl's zh-CN "2026/11/24" reads as a foreign format on a Chinese screen)
      if (api.zh && (style === 'datetime' || style === 'full')) {
        const s = cityInputValue(t)
        return style === 'full' ? s : s.slice(5)
      }
      const opts = {
        time: { hour: '2-digit', minute: '2-digit', second: '2-digit' },
        short: { hour: '2-digit', minute: '2-digit' },
        datetime: { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' },
        full: { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' },
      }[style] || {}
      return formatter('dt', opts).format(new Date(t))
    },

    /**
     * HTML <time> element: the formatted city time, its ISO form with the
     * +08:00 offset in `datetime` (what the e2e test checks) and the full
     * date and zone in the tooltip.
     */
    timeHTML(v, style = 'datetime') {
      const iso = cityISO(v)
      if (!iso) return ''
      return `<time datetime="${iso}" title="${api.time(v, 'full')} (${api.t('app.city_time')})">${api.time(v, style)}</time>`
    },

    /** Relative age "3 分钟前" / "3 minutes ago" of a past time at now (ms). */
    age(v, now = Date.now()) {
      const t = toMs(v)
      if (isNaN(t)) return ''
      const s = Math.max(0, Math.floor((now - t) / 1000))
      const rel = formatter('rel', {})
      if (s < 60) return rel.format(-s, 'second')
      if (s < 3600) return rel.format(-Math.floor(s / 60), 'minute')
      if (s < 86400) return rel.format(-Math.floor(s / 3600), 'hour')
      return rel.format(-Math.floor(s / 86400), 'day')
    },

    /** A number with the language's grouping (12,345). */
    num(n, opts) {
      if (n == null || isNaN(n)) return '–'
      return formatter('num', opts || {}).format(n)
    },
    /** A ratio 0..1 as a percentage with at most one decimal (95.5%, 100%). */
    pct(r) {
      if (r == null || isNaN(r)) return '–'
      return formatter('num', { style: 'percent', minimumFractionDigits: 0, maximumFractionDigits: 1 }).format(r)
    },

    /**
     * An API error as a sentence for a toast: the catalogue's text for the
     * server's `error` when known, plus its detail.
     */
    error(err) {
      const body = err && err.body
      if (body && body.error && api.has(`errors.${body.error}`)) {
        const d = body.detail == null ? '' : typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail)
        return api.t(`errors.${body.error}`) + (d ? `: ${d}` : '')
      }
      return (err && err.message) || String(err)
    },

    /**
     * Translate static markup under root: data-i18n (text),
     * data-i18n-title, data-i18n-placeholder, data-i18n-aria (aria-label).
     */
    apply(root) {
      const r = root || globalThis.document
      if (!r) return
      for (const el of r.querySelectorAll('[data-i18n]')) el.textContent = api.t(el.dataset.i18n)
      for (const el of r.querySelectorAll('[data-i18n-title]')) el.title = api.t(el.dataset.i18nTitle)
      for (const el of r.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = api.t(el.dataset.i18nPlaceholder)
      for (const el of r.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', api.t(el.dataset.i18nAria))
      if (r.documentElement) r.documentElement.lang = lang
    },
  }
  return api
}

/** The pages' shared instance (language from localStorage, zh-CN by default). */
export const i18n = createI18n()
export const t = (key, vars) => i18n.t(key, vars)

/**
 * A language switch button: shows the other language's name; a click
 * switches, re-applies static markup and lets the page's onChange
 * listeners re-render their dynamic parts.
 */
export function langButton(el) {
  if (!el) return
  const show = () => { el.textContent = i18n.zh ? 'English' : '中文'; el.title = i18n.t('app.switch_lang') }
  show()
  el.addEventListener('click', () => {
    i18n.setLang(i18n.zh ? 'en' : 'zh-CN')
    i18n.apply(document)
    show()
  })
}
