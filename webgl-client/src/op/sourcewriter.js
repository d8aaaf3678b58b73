// Incremental drawing of the live layers (issue 14 item 8): each flush
// turns the ids the store says changed into a GeoJSONSource.updateData diff
// (add / update / remove); only a snapshot or resync costs a full setData.
// No DOM or map import, so vitest drives it with a fake source.

// What the map draws per live layer: only the props the layers style on.
const renderProps = {
  vehicles: (f) => ({ id: f.id, kind: f.properties.kind }),
  workers: (f) => ({ id: f.id, status: f.properties.status }),
  incidents: (f) => ({ id: f.id, state: f.properties.state, type: f.properties.type }),
  alerts: (f) => ({ id: f.id, severity: f.properties.severity, state: f.properties.state, rule: f.properties.rule, tier: f.properties.tier }),
}

/**
 * Incremental drawing of one live layer. `held` is what the source holds
 * (id -> true) so a changed id becomes add, update or remove.
 * @returns {{flush(features:object[], changes:{full:boolean, ids:Set<string>}, get:(id:string)=>object, position:(f:object)=>number[]|undefined, moving:Iterable<string>):void, stats:object}}
 */
export function sourceWriter(src, layer) {
  const held = new Set()
  const stats = { setData: 0, updates: 0, featuresSent: 0 }
  const geom = (f, position) => {
    const p = position(f)
    return p ? { type: 'Point', coordinates: p } : f.geometry
  }
  return {
    stats,
    flush(features, changes, get, position, moving) {
      if (changes.full || held.size === 0) {
        held.clear()
        const out = []
        for (const f of features) {
          if (!f.geometry) continue
          held.add(f.id)
          out.push({ type: 'Feature', geometry: geom(f, position), properties: renderProps[layer](f) })
        }
        src.setData({ type: 'FeatureCollection', features: out })
        stats.setData++
        stats.featuresSent += out.length
        return
      }
      const add = [], update = [], remove = []
      const ids = new Set(changes.ids)
      for (const id of moving) ids.add(id)
      for (const id of ids) {
        const f = get(id)
        if (!f || !f.geometry) {
          if (held.delete(id)) remove.push(id)
          continue
        }
        if (!held.has(id)) {
          held.add(id)
          add.push({ type: 'Feature', geometry: geom(f, position), properties: renderProps[layer](f) })
        } else if (changes.ids.has(id)) {
          update.push({ id, newGeometry: geom(f, position), addOrUpdateProperties: Object.entries(renderProps[layer](f)).map(([key, value]) => ({ key, value })) })
        } else {
          update.push({ id, newGeometry: geom(f, position) }) // a glide step: the position only
        }
      }
      if (!add.length && !update.length && !remove.length) return
      src.updateData({ add, update, remove })
      stats.updates++
      stats.featuresSent += add.length + update.length
    },
  }
}

