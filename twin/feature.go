package twin

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
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
	Place    *Place       // region path and grid (shared, immutable); nil when unplaced
	// The H3 cells (res 9 for points, a cover for lines and polygons) and
	// the import source, read and set through Cells, SetCells, Source and
	// SetSource: the one cell of a point is held inline and the rest,
	// which most objects lack, behind one pointer. A cells slice and a
	// source string were 40 B of every object, and a point's cell one
	// more allocation of 8 B: a Feature went from the 160-B size class to
	// the 128-B one (issue 16 goal 4), and Props of two words (not four)
	// brought it to the 112-B one.
	cell [1]uint64 // the object's one cell; 0 when it has none or more than one
	more *more     // a cover of more than one cell and the source; nil when neither
}

// more is what few objects have: a cover of several cells, an import
// source. Shared by the clones of a feature, so immutable: SetCells and
// SetSource make a new one.
type more struct {
	source string
	cells  *[]uint64 // when more than one cell (a pointer: a source alone is 24 B)
}

// Place is where an object lies: its region path and its grid. Objects in
// one place share one *Place (the Enricher and the stores hand out the same
// pointer for the same answer): a pointer per object instead of a region
// slice header and a grid string, 40 B, and the size class of a Feature
// went from 192 to 160 B (issue 16 goal 4). A Place is immutable once an
// object holds it: set a new one (NewPlace), never modify it.
type Place struct {
	Region []string // region codes, outermost first
	Grid   string   // grid code, "" when outside every grid
}

// NewPlace returns the place of a region path and a grid code, nil when
// both are empty. It is a new value: enrichers and decoders that place many
// objects keep one per answer (Places).
func NewPlace(region []string, grid string) *Place {
	if len(region) == 0 && grid == "" {
		return nil
	}
	return &Place{Region: region, Grid: grid}
}

// Equal reports whether p and o name the same region path and grid (nil
// is the empty place).
func (p *Place) Equal(o *Place) bool {
	if p == o {
		return true
	}
	var a, b Place
	if p != nil {
		a = *p
	}
	if o != nil {
		b = *o
	}
	return a.Grid == b.Grid && slices.Equal(a.Region, b.Region)
}

// Region returns the object's region codes, outermost first (nil when
// unplaced). The slice is shared: do not modify it.
func (f *Feature) Region() []string {
	if f == nil || f.Place == nil {
		return nil
	}
	return f.Place.Region
}

// Grid returns the object's grid code ("" when outside every grid).
func (f *Feature) Grid() string {
	if f == nil || f.Place == nil {
		return ""
	}
	return f.Place.Grid
}

// Clone returns a copy whose Props map may be modified. The geometry,
// the place and the cells are shared: replace them (SetCells) rather than
// mutate them.
func (f *Feature) Clone() *Feature {
	c := *f
	c.Props = f.Props.Clone()
	return &c
}

// clonePacked is Clone with the props packed (no map copy on the way).
func (f *Feature) clonePacked() *Feature {
	c := *f
	c.Props = f.Props.Pack()
	return &c
}

// Cells returns the object's H3 cells (nil when none): one at res 9 for a
// point, a cover for a line or a polygon. The slice is shared with the
// feature (for a single cell, it is the feature's own memory): do not
// modify it.
func (f *Feature) Cells() []uint64 {
	switch {
	case f == nil:
		return nil
	case f.cell[0] != 0:
		return f.cell[:]
	case f.more != nil && f.more.cells != nil:
		return *f.more.cells
	}
	return nil
}

// Cell returns the object's first H3 cell (0 when it has none).
func (f *Feature) Cell() uint64 {
	if cs := f.Cells(); len(cs) > 0 {
		return cs[0]
	}
	return 0
}

// SetCells sets the object's H3 cells; cs is kept when it holds more than
// one (the caller must not modify it afterwards). A cell of 0 (H3's null
// index) is not a cell: a single 0 clears the cells.
func (f *Feature) SetCells(cs []uint64) {
	f.cell[0] = 0
	var src string
	if f.more != nil {
		src = f.more.source
	}
	switch len(cs) {
	case 0:
		f.setMore(src, nil)
	case 1:
		f.cell[0] = cs[0]
		f.setMore(src, nil)
	default:
		kept := cs // only this branch allocates the header
		f.setMore(src, &kept)
	}
}

// SetCell sets the object's one H3 cell (0: none), as SetCells with one
// cell and no slice.
func (f *Feature) SetCell(c uint64) {
	f.cell[0] = c
	if f.more != nil && f.more.cells != nil {
		f.setMore(f.more.source, nil)
	}
}

// Source returns the object's source id for idempotent imports (e.g.
// "osm:w123"; "" when none).
func (f *Feature) Source() string {
	if f == nil || f.more == nil {
		return ""
	}
	return f.more.source
}

// SetSource sets the object's source id ("" for none).
func (f *Feature) SetSource(s string) {
	var cs *[]uint64
	if f.more != nil {
		cs = f.more.cells
	}
	f.setMore(s, cs)
}

// setMore replaces f.more (never modified: clones share it).
func (f *Feature) setMore(src string, cs *[]uint64) {
	if src == "" && cs == nil {
		f.more = nil
		return
	}
	f.more = &more{source: src, cells: cs}
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
	for _, c := range f.Region() {
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
	*f = Feature{Props: NewProps(w.Props), Version: w.Version, Place: NewPlace(w.Region, w.Grid)}
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

// PropList returns a list of strings as JSON gives it ([]any), the form to
// set in props: a []string packs as a type JSON does not give back, so
// the change log and the followers take the whole object through JSON
// (an alert's regions sent its props, 50-entry history and all, through
// encoding/json, ~8 % of the server's CPU at 10k fences; issue 16 goal 1).
func PropList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
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

// Places hands out one *Place per region path and grid, for code that
// places or decodes many objects (the locator, the stores' loads). Paths
// of more than three codes, and answers past the first 1<<16, get a Place
// of their own. Safe for concurrent use; the zero Places is ready.
type Places struct {
	mu sync.RWMutex
	m  map[placeKey]*Place
}

// placeKey is a place's content: its grid and up to three region codes.
type placeKey struct {
	grid string
	n    int
	r    [3]string
}

// maxPlaces bounds a Places: a city has a few thousand.
const maxPlaces = 1 << 16

// Get returns the shared place of region and grid (nil when both are
// empty). region is kept when it is the first of its kind: the caller must
// not modify it afterwards.
func (ps *Places) Get(region []string, grid string) *Place {
	if len(region) == 0 && grid == "" {
		return nil
	}
	if len(region) > len(placeKey{}.r) {
		return NewPlace(region, grid)
	}
	k := placeKey{grid: grid, n: len(region)}
	copy(k.r[:], region)
	ps.mu.RLock()
	p := ps.m[k]
	ps.mu.RUnlock()
	if p != nil {
		return p
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[k]; p != nil {
		return p
	}
	p = NewPlace(region, grid)
	if len(ps.m) < maxPlaces {
		if ps.m == nil {
			ps.m = map[placeKey]*Place{}
		}
		ps.m[k] = p
	}
	return p
}
