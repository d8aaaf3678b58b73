package twin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// Feature is one twin object at one version. A *Feature held by the twin is
// immutable: every change makes a new one (copy-on-write), so readers may
// keep and share pointers without locks. Use Clone before modifying.
type Feature struct {
	ID       ID
	Geometry orb.Geometry // WGS84 lon/lat; nil for a device not yet placed
	Props    Props        // packed once the twin holds the feature
	Version  uint64       // per-object, increases by one on every change
	Updated  Stamp        // when the object last changed (telemetry ts for tracked objects)
	Observed Stamp        // ts of the newest applied telemetry; zero when none
	Region   []string     // region codes, outermost first
	Grid     string       // grid code, "" when outside every grid
	Cells    []uint64     // H3 cells: res 9 for points, a cover for lines and polygons
	Source   string       // source id for idempotent imports (e.g. "osm:w123"); optional
}

// Clone returns a copy whose Props map, Region and Cells may be modified.
// The geometry is shared: replace it rather than mutate it.
func (f *Feature) Clone() *Feature {
	c := *f
	c.Props = f.Props.Clone()
	c.Region = append([]string(nil), f.Region...)
	c.Cells = append([]uint64(nil), f.Cells...)
	return &c
}

// clonePacked is Clone with the props packed (no map copy on the way).
func (f *Feature) clonePacked() *Feature {
	c := *f
	c.Props = f.Props.Pack()
	c.Region = append([]string(nil), f.Region...)
	c.Cells = append([]uint64(nil), f.Cells...)
	return &c
}

// Prop returns a property as a string ("" when absent or not a string).
func (f *Feature) Prop(key string) string {
	if f == nil {
		return ""
	}
	return f.Props.String(key)
}

// Number returns a numeric property and whether it was present and numeric.
func (f *Feature) Number(key string) (float64, bool) {
	if f == nil {
		return 0, false
	}
	return f.Props.Number(key)
}

// ToFloat converts the numeric types found in decoded props to float64.
func ToFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case int32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// InRegion reports whether the object lies in the region with the given code
// (the city code matches everything with a region path).
func (f *Feature) InRegion(code string) bool {
	for _, c := range f.Region {
		if c == code {
			return true
		}
	}
	return false
}

// wireFeature is the GeoJSON form on every wire (HTTP, websocket, MQTT):
// an RFC 7946 Feature whose foreign members carry the twin metadata.
type wireFeature struct {
	Type     string            `json:"type"`
	ID       string            `json:"id"`
	Layer    Layer             `json:"layer"`
	Version  uint64            `json:"version"`
	Updated  string            `json:"updated,omitempty"`
	Observed string            `json:"observed,omitempty"`
	Region   []string          `json:"region"`
	Grid     string            `json:"grid,omitempty"`
	Geometry *geojson.Geometry `json:"geometry"`
	Props    map[string]any    `json:"properties"`
}

// MarshalJSON writes the feature as GeoJSON with twin metadata.
func (f *Feature) MarshalJSON() ([]byte, error) {
	return f.appendWire(make([]byte, 0, 512), nil)
}

// UnmarshalJSON reads the GeoJSON form written by MarshalJSON. The id may be
// absent (callers that know it from the URL set it afterwards).
func (f *Feature) UnmarshalJSON(b []byte) error {
	var w struct {
		wireFeature
		ID       any             `json:"id"`
		Geometry json.RawMessage `json:"geometry"` // DecodeGeometry checks positions
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Type != "" && w.Type != "Feature" {
		return fmt.Errorf("geojson: type %q, want Feature", w.Type)
	}
	*f = Feature{Props: NewProps(w.Props), Version: w.Version, Region: w.Region, Grid: w.Grid}
	if s, ok := w.ID.(string); ok && s != "" {
		if id, err := ParseID(s); err == nil {
			f.ID = id
		}
	}
	if w.Geometry != nil {
		g, err := DecodeGeometry(w.Geometry)
		if err != nil {
			return err
		}
		f.Geometry = g
	}
	if w.Updated != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Updated)
		if err != nil {
			return fmt.Errorf("updated: %w", err)
		}
		f.Updated = StampOf(t)
	}
	if w.Observed != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Observed)
		if err != nil {
			return fmt.Errorf("observed: %w", err)
		}
		f.Observed = StampOf(t)
	}
	return nil
}

// PropStrings reads a prop that holds a list of strings as it arrives from
// either side of the store: []string when set in Go, []any after a JSON
// round trip, or a lone string; other values (and non-string items) are
// left out. Rules and notifications read responsible persons and regions
// with it.
func PropStrings(v any) []string {
	switch l := v.(type) {
	case []string:
		return append([]string(nil), l...)
	case []any:
		out := make([]string, 0, len(l))
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return []string{l}
	}
	return nil
}
