package pgstore_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/paulmach/orb"
)

// TestLoadDecodes: a load reads back what was stored, through the lean
// path (region as the array's text, a point's one cell as an int64, props
// packed from the JSON): region codes that PostgreSQL's array text must
// quote, places shared by the objects in them, covers, a cell above
// MaxInt64, and props as NewProps(...).Pack() gives them.
func TestLoadDecodes(t *testing.T) {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgtest.Migrated(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	odd := []string{"500000", `a "quoted", {braced} \ code`, "NULL", " spaced "}
	mk := func(l twin.Layer, name string, g orb.Geometry, region []string, grid string, cells []uint64, props map[string]any) *twin.Feature {
		f := &twin.Feature{ID: twin.NewID(l, name), Version: 3, Geometry: g, Props: twin.NewProps(props),
			Place: twin.NewPlace(region, grid), Updated: twin.Stamp(1_700_000_000_123_456_000)}
		f.SetCells(cells)
		return f
	}
	sq := orb.Polygon{{{106.5, 29.5}, {106.51, 29.5}, {106.51, 29.51}, {106.5, 29.51}, {106.5, 29.5}}}
	in := []*twin.Feature{
		mk(twin.Vehicles, "v1", orb.Point{106.5, 29.5}, odd, "g-1", []uint64{math.MaxUint64 - 5}, map[string]any{"speed_kmh": 42.3, "plate": "渝A12345", "n": nil}),
		mk(twin.Vehicles, "v2", orb.Point{106.6, 29.6}, odd, "g-1", []uint64{0x8928308280fffff}, map[string]any{"nested": map[string]any{"a": []any{1.0, "x\u00e9\\\"", true}}}),
		mk(twin.Vehicles, "v3", orb.Point{106.7, 29.7}, nil, "g-2", nil, map[string]any{}),
		mk(twin.Vehicles, "v4", nil, []string{"500000"}, "", nil, map[string]any{"big": 1e300, "neg": -0.5}),
		mk(twin.Buildings, "b1", sq, []string{"500000", "500103"}, "", []uint64{1, 2, 3}, map[string]any{"name": "tab\there"}),
		mk(twin.Buildings, "b2", sq, nil, "", []uint64{7}, nil),
	}
	in[4].SetSource("osm:w1")
	if err := s.Upsert(ctx, in); err != nil {
		t.Fatal(err)
	}
	got := map[twin.ID]*twin.Feature{}
	if err := s.Load(ctx, func(f *twin.Feature) error { got[f.ID] = f; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, w := range in {
		g := got[w.ID]
		if g == nil {
			t.Fatalf("%s not loaded", w.ID)
		}
		one, err := s.Get(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []*twin.Feature{g, one} {
			if !g.Place.Equal(w.Place) || (g.Place == nil) != (w.Place == nil) {
				t.Errorf("%s: place %+v, want %+v", w.ID, g.Place, w.Place)
			}
			if !slices.Equal(g.Cells(), w.Cells()) {
				t.Errorf("%s: cells %v, want %v", w.ID, g.Cells(), w.Cells())
			}
			if want := w.Props.Pack(); !g.Props.Equal(want) || g.Props.String("plate") != want.String("plate") {
				t.Errorf("%s: props %v, want %v", w.ID, g.Props, want)
			}
			if g.Version != w.Version || g.Updated != w.Updated || g.Observed != 0 || g.Source() != w.Source() {
				t.Errorf("%s: got %+v, want %+v", w.ID, g, w)
			}
			if (g.Geometry == nil) != (w.Geometry == nil) || (g.Geometry != nil && !orb.Equal(g.Geometry, w.Geometry)) {
				t.Errorf("%s: geometry %v, want %v", w.ID, g.Geometry, w.Geometry)
			}
		}
	}
	if a, b := got[in[0].ID].Place, got[in[1].ID].Place; a != b {
		t.Errorf("objects in one place hold two: %p %p", a, b)
	}
}

// TestLoadSkipsObjectsOffEarth: PostGIS keeps a NaN or metres in an
// EPSG:4326 column (a layer loaded in EPSG:3857 without reprojecting);
// the load starts the twin without such an object, quarantines a record
// naming it (once, however many loads find it), and leaves its row for its
// owner to fix.
func TestLoadSkipsObjectsOffEarth(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Migrated(t)
	s, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := &twin.Feature{ID: twin.NewID(twin.Buildings, "ok"), Version: 1, Geometry: orb.Point{106.5, 29.5}, Props: twin.NewProps(nil)}
	if err := s.Upsert(ctx, []*twin.Feature{good}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for name, wkt := range map[string]string{"metres": "POINT(11858000 3437000)", "nan": "POINT(NaN 29.5)"} {
		if _, err := conn.Exec(ctx, `INSERT INTO buildings (name, geom, props, version) VALUES ($1, ST_GeomFromText($2, 4326), '{}', 1)`, name, wkt); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // a second load (another server's start) records nothing more
		var got []string
		if err := s.Load(ctx, func(f *twin.Feature) error { got = append(got, f.ID.String()); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{"buildings/ok"}) {
			t.Fatalf("loaded %v, want only buildings/ok", got)
		}
	}
	qs, err := s.Quarantined(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, q := range qs {
		if q.Kind == twin.QuarantineLoad {
			names[q.ID.Name] = true
		}
	}
	if len(qs) != 2 || !names["metres"] || !names["nan"] {
		t.Fatalf("quarantined %+v, want the two rows off Earth", qs)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM buildings`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows left in buildings (%v), want all 3", n, err)
	}
}
