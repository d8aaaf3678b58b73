package tiles

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/citytwin/citytwin/twin"
)

// layerSpec is how one twin layer appears in tiles.
type layerSpec struct {
	// minZoom is the lowest zoom the layer appears at; below it the layer is
	// absent from tiles (an empty MVT layer is not written).
	minZoom uint8
	// fields are the attributes written besides id and version, with their
	// TileJSON types; other scalar props are written too but not advertised.
	fields map[string]string
	// readings are entries of the "values" map flattened into attributes.
	readings bool
	// lean, when set, are the only attributes (besides id and version)
	// written below DetailZoom: what the style draws with. It keeps a z13
	// tile over a dense district small; the inspector reads the rest from
	// the entity API or a detail-zoom tile.
	lean map[string]bool
}

// DetailZoom is where every layer carries all its attributes.
const DetailZoom = 15

// maxJSONAttr bounds a structured prop written as a JSON string, in bytes.
const maxJSONAttr = 1024

// majorRoadMinZoom is where motorways, trunks and primaries start,
// roadMinZoom where the other roads do.
const (
	majorRoadMinZoom = 8
	roadMinZoom      = 10
)

var majorRoad = map[string]bool{"motorway": true, "trunk": true, "primary": true,
	"motorway_link": true, "trunk_link": true, "primary_link": true}

// specs holds the per-layer rules (CONTRACT §2 key props). Read-only.
var specs = map[twin.Layer]layerSpec{
	twin.Regions: {minZoom: 0, fields: map[string]string{"level": "String", "code": "String", "name": "String", "parent": "String"}},
	twin.Grids:   {minZoom: 13, fields: map[string]string{"code": "String", "street": "String", "workers": "Number"}},
	twin.Roads:   {minZoom: majorRoadMinZoom, fields: map[string]string{"name": "String", "class": "String", "oneway": "Boolean"}},
	twin.Bridges: {minZoom: 8, fields: map[string]string{"name": "String", "restrictions": "String"}},
	twin.Rivers:  {minZoom: 0, fields: map[string]string{"name": "String"}},
	twin.Buildings: {minZoom: 13, fields: map[string]string{"name": "String", "height_m": "Number", "levels": "Number",
		"high_rise": "Boolean", "fire_code": "String", "risk_level": "Number", "risk_color": "String", "owners": "String"},
		lean: map[string]bool{"height_m": true, "levels": true, "high_rise": true, "risk_level": true, "risk_color": true}},
	twin.Devices: {minZoom: 14, readings: true, fields: map[string]string{"kind": "String", "attached_to": "String",
		"status": "String"}},
	twin.Vehicles:  {minZoom: 8, fields: map[string]string{"kind": "String", "plate": "String", "speed_kmh": "Number", "heading": "Number"}},
	twin.Workers:   {minZoom: 8, fields: map[string]string{"grid": "String", "status": "String"}},
	twin.Incidents: {minZoom: 8, fields: map[string]string{"type": "String", "state": "String", "assignee": "String", "reports": "Number"}},
	twin.Alerts: {minZoom: 8, fields: map[string]string{"rule": "String", "severity": "String", "subject": "String",
		"state": "String", "tier": "String"}},
	twin.Tasks: {minZoom: 8, fields: map[string]string{"kind": "String", "state": "String", "subject": "String",
		"assignee": "String", "tier": "String", "due": "String", "overdue": "Boolean", "title": "String", "outcome": "String"}},
	twin.Directives: {minZoom: 8, fields: map[string]string{"title": "String", "issuer": "String", "due": "String",
		"total": "Number", "acked": "Number", "reported": "Number", "overdue": "Number"}},
}

// minZoomFor is the lowest zoom a feature appears at: its layer's, except
// that major roads start earlier than the rest of the road layer.
func minZoomFor(f *twin.Feature) uint8 {
	if f.ID.Layer == twin.Roads {
		if majorRoad[f.Prop("class")] {
			return majorRoadMinZoom
		}
		return roadMinZoom
	}
	return specs[f.ID.Layer].minZoom
}

// FeatureID is the integer MVT feature id of an object: the FNV-1a 64-bit
// hash of "layer/name" masked to 53 bits, so it is stable across restarts
// and tiles, and exact in a JavaScript number (MapLibre feature-state).
func FeatureID(id twin.ID) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id.Layer))
	_, _ = h.Write([]byte{'/'})
	_, _ = h.Write([]byte(id.Name))
	return h.Sum64() & (1<<53 - 1)
}

// attrList flattens a feature's props into MVT attributes sorted by key
// (so tiles are deterministic); see walkAttrs for which. Layers with a
// lean set write only those (and id and version) below DetailZoom; see
// newMemo.
func attrList(f *twin.Feature) []kv {
	out := make([]kv, 0, f.Props.Len()+2)
	walkAttrs(f, func(k string, v any) {
		if j, ok := v.(jsonAttr); ok {
			b, err := json.Marshal(j.v)
			if err != nil || len(b) > maxJSONAttr {
				return
			}
			v = string(b)
		}
		if val, ok := toValue(v); ok {
			out = append(out, kv{key: k, val: val, keyHash: uint32(fnv64(fnvOffset, k)), valHash: val.hash()})
		}
	})
	slices.SortFunc(out, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	return out
}

// jsonAttr is a structured prop that travels as a compact JSON string
// (when it encodes to at most maxJSONAttr bytes).
type jsonAttr struct{ v any }

// walkAttrs calls add, once per key, with every attribute a feature
// carries in tiles: every string, number and bool prop (as a scalar), the
// layer's advertised string fields that are structured (a bridge's
// restrictions, a building's owners) as a jsonAttr, for devices the
// readings of "values" by their own names (values.ch4 -> ch4) unless a
// prop of that name is written, then id ("layer/name") and version, which
// win over props of those names. Other nested maps and lists and
// non-finite numbers are skipped. It is the one definition of what tiles
// carry: attrList writes from it and TileJSON advertises from it.
func walkAttrs(f *twin.Feature, add func(k string, v any)) {
	sp := specs[f.ID.Layer]
	for k, v := range f.Props.All() {
		if k == "id" || k == "version" {
			continue // the object's own id and version win
		}
		if s, ok := scalar(v); ok {
			add(k, s)
		} else if sp.fields[k] == "String" && v != nil {
			add(k, jsonAttr{v})
		}
	}
	if sp.readings {
		if vals, ok := f.Props.Get("values").(map[string]any); ok {
			for k, v := range vals {
				if k == "id" || k == "version" {
					continue
				}
				if p, taken := f.Props.Lookup(k); taken {
					if _, ok := scalar(p); ok || sp.fields[k] == "String" && p != nil {
						continue
					}
				}
				if s, ok := scalar(v); ok {
					add(k, s)
				}
			}
		}
	}
	add("id", f.ID.String())
	add("version", f.Version)
}

// scalar converts a prop value to an MVT value type, reporting false for
// nested values and non-finite numbers.
func scalar(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return x, true
	case int:
		return int64(x), true
	case int64, uint64, int32, uint32:
		return x, true
	}
	if n, ok := twin.ToFloat(v); ok {
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, false
		}
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), true
		}
		return n, true
	}
	return nil, false
}

// importance orders features when a tile exceeds its feature budget: larger
// first, with major roads and severe alerts boosted. size is the feature's
// bounding-box extent in tile units (area for polygons, diagonal for lines).
func importance(f *twin.Feature, size float64) float64 {
	switch f.ID.Layer {
	case twin.Roads:
		if majorRoad[f.Prop("class")] {
			size *= 16
		}
	case twin.Alerts:
		switch f.Prop("severity") {
		case "red":
			size += 5
		case "orange":
			size += 4
		case "yellow":
			size += 3
		case "blue":
			size += 2
		}
	case twin.Buildings:
		if lvl, ok := f.Number("risk_level"); ok && lvl >= 1 && lvl <= 2 {
			size *= 4 // major and large risks stay visible
		}
	}
	return size
}
