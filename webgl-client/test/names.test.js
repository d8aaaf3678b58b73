import { describe, it, expect } from 'vitest'
import { isInternalName, ownName, displayName, vehicleLabel, alertSubject } from '../src/names.js'
import { createI18n, cityInputValue, parseCityTime } from '../src/i18n.js'

const term = (g, v) => ({ 'obj.buildings': '建筑', 'obj.vehicles': '车辆', 'obj.tasks': '任务', 'obj.devices': '设备', 'types.fire_hazard': '消防隐患', 'kinds.camera': '摄像头', 'kinds.rectification': '隐患整改' })[`${g}.${v}`] || v

describe('display names', () => {
  it('knows internal ids from names', () => {
    expect(isInternalName('b000123', 'buildings/b000123')).toBe(true)
    expect(isInternalName('MT0012', 'vehicles/MT0012')).toBe(true)
    expect(isInternalName('w0042')).toBe(true)
    expect(isInternalName('rect-500103-7', 'tasks/rect-500103-7')).toBe(true)
    expect(isInternalName('buildings/b1')).toBe(true)
    expect(isInternalName('')).toBe(true)
    expect(isInternalName('解放碑锦绣大厦', 'buildings/b000123')).toBe(false)
    expect(isInternalName('Worker 17', 'workers/w0017')).toBe(false)
    expect(isInternalName('Qiansimen Bridge', 'bridges/qiansimen')).toBe(false)
  })

  it('prefers name_zh, then name, in the language; never the id', () => {
    const b = { id: 'buildings/b000123', properties: { name: 'b000123', name_zh: '解放碑锦绣大厦' } }
    expect(ownName(b, true)).toBe('解放碑锦绣大厦')
    expect(ownName(b, false)).toBe('解放碑锦绣大厦') // the English name is the id: the Chinese one stands in
    const w = { id: 'workers/w1', properties: { name: 'Worker 1', name_zh: '张伟' } }
    expect(displayName(w, { zh: true, term })).toBe('张伟')
    expect(displayName(w, { zh: false, term })).toBe('Worker 1')
    const task = { id: 'tasks/rect-500103-7', properties: { kind: 'rectification', title: '隐患整改 解放碑锦绣大厦' } }
    expect(displayName(task, { term })).toBe('隐患整改 解放碑锦绣大厦')
  })

  it('falls back to a kind and a code an operator knows', () => {
    expect(displayName({ id: 'buildings/b000123', properties: { name: 'b000123', fire_code: 'FC-500103-000012' } }, { term })).toBe('建筑 FC-500103-000012')
    expect(displayName({ id: 'buildings/b000123', properties: { name: 'b000123' } }, { term })).toBe('建筑 #123')
    expect(displayName({ id: 'vehicles/MT0012', properties: { plate: '渝A·12345' } }, { term })).toBe('渝A·12345')
    expect(displayName({ id: 'incidents/i-9', properties: { type: 'fire_hazard' } }, { term })).toBe('消防隐患')
    expect(displayName({ id: 'devices/cam-1', properties: { kind: 'camera' } }, { term })).toBe('摄像头')
    expect(displayName({ id: 'tasks/rect-1', properties: { kind: 'rectification' } }, { term })).toBe('隐患整改')
    expect(displayName({ id: 'things/x', properties: {} }, { term })).toBe('things')
    expect(displayName({ id: 'incidents/inc-20261203-054746-0df6c40d', properties: {} }, { term: (g, v) => (g === 'obj' ? '事件' : v) })).toBe('事件')
  })

  it('labels vehicles by plate and name', () => {
    expect(vehicleLabel({ plate: '渝A·12345', name_zh: '顺达运输 3号车' })).toBe('渝A·12345 · 顺达运输 3号车')
    expect(vehicleLabel({ plate: '渝A·12345' })).toBe('渝A·12345')
    expect(vehicleLabel({ name: 'MT0012' })).toBe('') // an id is no label
  })

  it('names an alert subject from what the alert carries, else the live subject, else a fallback', () => {
    const carried = alertSubject({ subject: 'vehicles/MT0012', subject_plate: '渝A·12345', subject_name_zh: '顺达运输 3号车' }, { term })
    expect(carried).toEqual({ kind: '车辆', name: '顺达运输 3号车', plate: '渝A·12345', building: '' })
    const live = alertSubject({ subject: 'vehicles/e2e' }, { term, lookup: (id) => (id === 'vehicles/e2e' ? { properties: { plate: 'E2E-MUCK' } } : null) })
    expect(live.plate).toBe('E2E-MUCK')
    expect(live.name).toBe('')
    const dev = alertSubject({ subject: 'devices/gas-0012', attached_to: 'buildings/b000001', attached_name: 'b000001', attached_name_zh: '解放碑锦绣花园3栋' }, { term })
    expect(dev.building).toBe('解放碑锦绣花园3栋')
    expect(dev.name).toBe('设备 #12')
    const bare = alertSubject({ subject: 'buildings/b000042', subject_name: 'b000042' }, { term })
    expect(bare.name).toBe('建筑 #42')
  })

  it('i18n.label uses the catalogue terms', () => {
    const i = createI18n({ storage: null })
    expect(i.label({ id: 'incidents/x', properties: { type: 'gas_leak' } })).toBe('燃气泄漏')
    i.setLang('en')
    expect(i.label({ id: 'incidents/x', properties: { type: 'gas_leak' } })).toBe('Gas leak')
  })
})

describe('history actors', () => {
  it('names the system, rules, demo accounts and objects', () => {
    const i = createI18n({ storage: null })
    expect(i.actor('system')).toBe('系统')
    expect(i.actor('rule:bridge-muck')).toBe('规则：渣土车禁行时段上桥')
    expect(i.actor('demo-operator')).toBe('演示值班员')
    expect(i.actor('workers/w0001', () => '张伟')).toBe('张伟')
    expect(i.actor('admin@500000')).toBe('admin@500000')
    expect(i.actor('admin@500000', null, (c) => (c === '500000' ? '重庆市' : ''))).toBe('admin（重庆市）')
    expect(i.actor('')).toBe('')
  })
})

describe('time bar times in Asia/Shanghai', () => {
  it('writes dates in Chinese as the field does, in English by Intl', () => {
    const i = createI18n({ storage: null })
    expect(i.time('2026-11-23T23:30:05Z', 'datetime')).toBe('11-24 07:30:05')
    expect(i.time('2026-11-23T23:30:05Z', 'full')).toBe('2026-11-24 07:30:05')
    expect(i.time('2026-11-23T23:30:05Z', 'time')).toBe('07:30:05')
    i.setLang('en')
    expect(i.time('2026-11-23T23:30:05Z', 'datetime')).toMatch(/11.24.*07:30:05/)
  })

  it('formats a time for the field in the city zone', () => {
    expect(cityInputValue('2026-11-23T08:00:00Z')).toBe('2026-11-23 16:00:00')
    expect(cityInputValue(Date.parse('2026-12-31T16:30:05Z'))).toBe('2027-01-01 00:30:05')
    expect(cityInputValue('nonsense')).toBe('')
  })

  it('parses what an operator types as city time', () => {
    const want = Date.parse('2026-11-23T16:00:00+08:00')
    for (const s of ['2026-11-23 16:00:00', '2026-11-23 16:00', '2026/11/23 16:00', '2026.11.23T16:00:00', '2026年11月23日 16：00', ' 2026-11-23 16:00 ']) expect(parseCityTime(s)).toBe(want)
    expect(parseCityTime('2026-11-23')).toBe(Date.parse('2026-11-23T00:00:00+08:00'))
    // a time alone is today in the city: 01:00 UTC is already the 24th in Chongqing
    expect(parseCityTime('08:15', Date.parse('2026-11-23T17:00:00Z'))).toBe(Date.parse('2026-11-24T08:15:00+08:00'))
    for (const s of ['', 'yesterday', '2026-02-31 10:00', '2026-11-23 24:00', '25:00', '2026-13-01']) expect(parseCityTime(s)).toBeNaN()
  })
})
