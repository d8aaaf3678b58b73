import { describe, it, expect } from 'vitest'
import { createI18n, cityISO, CITY_TZ } from '../src/i18n.js'
import zh from '../src/locales/zh-CN.json'
import en from '../src/locales/en.json'

const memStorage = (init = {}) => {
  const m = new Map(Object.entries(init))
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), m }
}

// every leaf key of a nested catalogue, dotted
const keys = (o, p = '') => Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' ? keys(v, p + k + '.') : [p + k]))

describe('catalogues', () => {
  it('zh-CN and en have the same keys', () => {
    expect(keys(zh).sort()).toEqual(keys(en).sort())
  })
  it('zh-CN messages are Chinese (a CJK character in every user-facing group)', () => {
    for (const k of keys(zh)) {
      if (k.startsWith('app.switch_lang') || k.startsWith('insp.speed')) continue
      const v = k.split('.').reduce((o, p) => o[p], zh)
      if (/^[\d\s{}\w.,:-]*$/.test(v) && !/[a-z]{3}/i.test(v)) continue // pure placeholders/numbers
      expect(v, k).toMatch(/[\u4e00-\u9fff]/)
    }
  })
})

describe('createI18n', () => {
  it('defaults to zh-CN, switches to English and remembers it', () => {
    const s = memStorage()
    const a = createI18n({ storage: s })
    expect(a.lang).toBe('zh-CN')
    expect(a.t('panel.alerts')).toBe('告警')
    let heard = null
    a.onChange((l) => { heard = l })
    a.setLang('en')
    expect(heard).toBe('en')
    expect(a.t('panel.alerts')).toBe('Alerts')
    expect(s.m.get('citytwin.lang')).toBe('en')
    expect(createI18n({ storage: s }).lang).toBe('en')
    a.setLang('fr') // unknown: ignored
    expect(a.lang).toBe('en')
  })
  it('interpolates, falls back to English then to the key', () => {
    const a = createI18n({ storage: null, catalogues: { 'zh-CN': { a: { b: '共 {n} 条' } }, en: { a: { b: '{n} in all', c: 'only English' } } } })
    expect(a.t('a.b', { n: 3 })).toBe('共 3 条')
    expect(a.t('a.c')).toBe('only English')
    expect(a.t('a.zzz')).toBe('a.zzz')
    expect(a.t('a.b', {})).toBe('共 {n} 条')
  })
  it('terms: catalogue entry, else the raw value made readable', () => {
    const a = createI18n({ storage: null })
    expect(a.term('types', 'gas_leak')).toBe('燃气泄漏')
    expect(a.term('types', 'e2e_pothole')).toBe('e2e pothole')
    expect(a.term('state', 'dispatched')).toBe('已派单')
    expect(a.term('state', '')).toBe('')
  })
  it('names prefer name_zh in Chinese and name in English', () => {
    const a = createI18n({ storage: null })
    expect(a.name({ name: 'Yuzhong', name_zh: '渝中区' })).toBe('渝中区')
    expect(a.name({ name: 'b000123' })).toBe('b000123')
    expect(a.name({}, 'x')).toBe('x')
    a.setLang('en')
    expect(a.name({ name: 'Yuzhong', name_zh: '渝中区' })).toBe('Yuzhong')
    expect(a.name({ name_zh: '渝中区' })).toBe('渝中区')
  })
  it('rule titles come from the rule file first, then the catalogue, then the name', () => {
    const a = createI18n({ storage: null })
    expect(a.rule('septic-gas')).toBe('化粪池可燃气体超标')
    a.setRules([{ name: 'septic-gas', title: 'Septic gas', title_zh: '化粪池气体' }, { name: 'custom-x' }])
    expect(a.rule('septic-gas')).toBe('化粪池气体')
    expect(a.rule('custom-x')).toBe('custom x')
    a.setLang('en')
    expect(a.rule('septic-gas')).toBe('Septic gas')
  })
  it('maps server errors through the catalogue', () => {
    const a = createI18n({ storage: null })
    expect(a.error({ message: 'x', body: { error: 'alert not found', detail: 'a1' } })).toBe('未找到该告警: a1')
    expect(a.error({ message: 'raw message', body: { error: 'weird' } })).toBe('raw message')
  })
})

describe('times in the city zone', () => {
  it('formats in Asia/Shanghai whatever the host zone', () => {
    const a = createI18n({ storage: null })
    expect(CITY_TZ).toBe('Asia/Shanghai')
    // 23:30 UTC is 07:30 the next day in Chongqing
    expect(a.time('2026-11-23T23:30:05Z', 'time')).toBe('07:30:05')
    expect(a.time('2026-11-23T23:30:05Z', 'short')).toBe('07:30')
    expect(a.time('2026-11-23T23:30:05Z', 'datetime')).toMatch(/11.24.*07:30:05/)
    expect(a.time('not a time')).toBe('')
    a.setLang('en')
    expect(a.time('2026-11-23T23:30:05Z', 'time')).toBe('07:30:05')
  })
  it('cityISO carries +08:00 and drops sub-seconds', () => {
    expect(cityISO('2026-11-23T23:30:05.123456789Z')).toBe('2026-11-24T07:30:05+08:00')
    expect(cityISO(Date.parse('2026-01-01T00:00:00Z'))).toBe('2026-01-01T08:00:00+08:00')
    expect(cityISO(undefined)).toBe('')
  })
  it('timeHTML wraps the text in <time datetime=...+08:00>', () => {
    const a = createI18n({ storage: null })
    const h = a.timeHTML('2026-11-23T23:30:05Z', 'time')
    expect(h).toContain('datetime="2026-11-24T07:30:05+08:00"')
    expect(h).toContain('>07:30:05</time>')
  })
  it('relative ages: 3 分钟前 / 3 minutes ago', () => {
    const a = createI18n({ storage: null })
    const now = Date.parse('2026-11-23T10:00:00Z')
    expect(a.age('2026-11-23T09:57:00Z', now)).toBe('3分钟前')
    expect(a.age('2026-11-23T09:59:50Z', now)).toBe('10秒钟前')
    expect(a.age('2026-11-23T07:00:00Z', now)).toBe('3小时前')
    expect(a.age('2026-11-21T10:00:00Z', now)).toBe('2天前')
    expect(a.age('2026-11-23T10:00:30Z', now)).toBe('0秒钟前') // clock skew: never "in the future"
    a.setLang('en')
    expect(a.age('2026-11-23T09:57:00Z', now)).toBe('3 minutes ago')
  })
  it('numbers and percentages', () => {
    const a = createI18n({ storage: null })
    expect(a.num(12345)).toBe('12,345')
    expect(a.pct(0.955)).toMatch(/95\.5\s?%/)
    expect(a.pct(1)).toMatch(/^100\s?%$/)
    expect(a.pct(null)).toBe('–')
  })
})
