package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/spatial/gcj02"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dataDir is the shared Chongqing data set, beside the repository.
const dataDir = "../../../shared/data"

func dataFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(dataDir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared data %s absent: %v", rel, err)
	}
	return p
}

var (
	districtsFile = "boundaries/chongqing_central8_districts_gcj02.geojson"
	shapingbaFile = "roads/shapingba_network/road_network.geojson"
	meshFile      = "roads/mesh_road_network/submap434672.xml.gz"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func opts(s twin.Store) Options {
	return Options{Store: s, Logger: quiet(), Clock: clock.NewFake(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC))}
}

func mustImport(t testing.TB, path string, o Options) Summary {
	t.Helper()
	sum, err := Import(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Import(%s): %v", path, err)
	}
	return sum
}

func versions(s *memStore) map[twin.ID]uint64 {
	out := map[twin.ID]uint64{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.objs {
		out[id] = f.Version
	}
	return out
}

func TestDistrictsGCJ02(t *testing.T) {
	path := dataFile(t, districtsFile)
	s := newMemStore()
	o := opts(s)
	o.CRS = "gcj02"
	sum := mustImport(t, path, o)
	if sum.Read != 8 || sum.Imported != 8 || sum.Skipped != 0 {
		t.Fatalf("summary %+v, want 8 read and imported", sum)
	}
	f, err := s.Get(context.Background(), twin.NewID(twin.Regions, "500103"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"code": "500103", "name": "渝中区", "level": "district", "parent": "500000"}
	for k, v := range want {
		if f.Props.Get(k) != v {
			t.Errorf("prop %s = %v, want %v", k, f.Props.Get(k), v)
		}
	}
	if f.Version != 1 || !f.Updated.Time().Equal(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("version %d updated %v", f.Version, f.Updated)
	}
	// The first vertex in the file (GCJ-02) is 106.588191, 29.571262; the
	// stored vertex must be its WGS84 position: ~475 m away, and shifting
	// it back must land within half a metre of the file's point.
	src := orb.Point{106.588191, 29.571262}
	got := f.Geometry.(orb.MultiPolygon)[0][0][0]
	if d := geo.Distance(gcj02.FromWGS84(got), src); d > 0.5 {
		t.Errorf("stored vertex %v shifts back %.3f m from the source", got, d)
	}
	if d := geo.Distance(got, src); d < 400 || d > 550 {
		t.Errorf("stored vertex %.0f m from the GCJ-02 source, want ~475 m", d)
	}
	// DataV's own centre of 渝中区 (GCJ-02), taken to WGS84, lies inside the
	// converted polygon.
	if c := gcj02.ToWGS84(orb.Point{106.56288, 29.556742}); !planar.Contains(f.Geometry, c) {
		t.Errorf("渝中区 centre %v not inside its WGS84 outline", c)
	}

	// Idempotent: the second import changes nothing.
	before := versions(s)
	sum2 := mustImport(t, path, o)
	if sum2.Imported != 0 || sum2.Unchanged != 8 {
		t.Fatalf("re-import %+v, want 0 imported, 8 unchanged", sum2)
	}
	if after := versions(s); !mapsEqual(before, after) {
		t.Fatal("re-import changed versions")
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestShapingbaRoadsIdempotent(t *testing.T) {
	path := dataFile(t, shapingbaFile)
	s := newMemStore()
	o := opts(s)
	o.BatchSize = 200
	sum := mustImport(t, path, o)
	if sum.Read != 1187 || sum.Imported+sum.Skipped != 1187 {
		t.Fatalf("summary %+v, want 1187 read", sum)
	}
	for _, p := range sum.Problems {
		t.Logf("problem: %s", p)
	}
	if sum.Skipped != 0 {
		t.Errorf("%d problems in a clean file", sum.Skipped)
	}
	if n := s.count(twin.Roads); n != sum.Imported {
		t.Fatalf("store has %d roads, summary says %d", n, sum.Imported)
	}
	if s.upserts < 1187/200 {
		t.Errorf("%d upsert batches, want >= %d", s.upserts, 1187/200)
	}
	f, err := s.Get(context.Background(), twin.NewID(twin.Roads, "road-9337"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Props.Get("class") != "primary" || f.Props.Get("ROADLEVEL") != "主干路" {
		t.Errorf("road-9337 props %v", f.Props)
	}
	if ls := f.Geometry.(orb.LineString); ls[0] != (orb.Point{106.3267411, 29.6101073}) {
		t.Errorf("WGS84 file shifted: first point %v", ls[0])
	}

	before := versions(s)
	upserts := s.upserts
	sum2 := mustImport(t, path, o)
	if sum2.Imported != 0 || sum2.Unchanged != sum.Imported || sum2.Read != 1187 {
		t.Fatalf("re-import %+v, want 0 imported, %d unchanged", sum2, sum.Imported)
	}
	if s.upserts != upserts {
		t.Errorf("re-import wrote %d batches", s.upserts-upserts)
	}
	if !mapsEqual(before, versions(s)) {
		t.Fatal("re-import changed versions")
	}
}

func TestChangedFeatureBumpsVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "roads.geojson")
	write := func(name string) {
		body := `{"type":"FeatureCollection","features":[
{"type":"Feature","id":"a","properties":{"highway":"primary","name":"` + name + `"},"geometry":{"type":"LineString","coordinates":[[106.5,29.5],[106.51,29.51]]}},
{"type":"Feature","id":"b","properties":{"highway":"service"},"geometry":{"type":"LineString","coordinates":[[106.5,29.5],[106.5,29.52]]}}
]}`
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newMemStore()
	write("Old Road")
	mustImport(t, path, opts(s))
	write("New Road")
	sum := mustImport(t, path, opts(s))
	if sum.Imported != 1 || sum.Unchanged != 1 {
		t.Fatalf("summary %+v, want 1 imported, 1 unchanged", sum)
	}
	a, _ := s.Get(context.Background(), twin.NewID(twin.Roads, "a"))
	b, _ := s.Get(context.Background(), twin.NewID(twin.Roads, "b"))
	if a.Version != 2 || a.Props.Get("name") != "New Road" || a.Props.Get("class") != "primary" {
		t.Errorf("changed road: version %d props %v", a.Version, a.Props)
	}
	if b.Version != 1 {
		t.Errorf("unchanged road version %d", b.Version)
	}
}

func TestRegionAssignment(t *testing.T) {
	districts := dataFile(t, districtsFile)
	roads := dataFile(t, shapingbaFile)
	s := newMemStore()
	o := opts(s)
	o.CRS = "gcj02"
	mustImport(t, districts, o)

	loc := locate.New()
	loc.Reset(s.layer(twin.Regions), nil)
	o = opts(s)
	o.Enricher = loc
	sum := mustImport(t, roads, o)
	if sum.Imported != 1187 {
		t.Fatalf("summary %+v", sum)
	}
	f, err := s.Get(context.Background(), twin.NewID(twin.Roads, "road-9337"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Region(), []string{"500000", "500106"}) {
		t.Errorf("road-9337 region %v, want [500000 500106]", f.Region())
	}
	if len(f.Cells()) == 0 {
		t.Error("no H3 cells")
	}
	// By the DataV outlines the network spans the Jialing river: 320
	// links in 沙坪坝区, the rest (east of ~106.447E) in 江北区 and 渝北区.
	perDistrict := map[string]int{}
	for _, r := range s.layer(twin.Roads) {
		if len(r.Region()) == 2 && r.Region()[0] == "500000" {
			perDistrict[r.Region()[1]]++
		}
	}
	if perDistrict["500106"] != 320 || perDistrict["500105"]+perDistrict["500112"] != 866 {
		t.Errorf("roads per district %v", perDistrict)
	}

	// Re-import with the same enricher: nothing changes.
	sum2 := mustImport(t, roads, o)
	if sum2.Imported != 0 || sum2.Unchanged != 1187 {
		t.Errorf("re-import %+v", sum2)
	}
}

func TestMeshGCJ02(t *testing.T) {
	path := dataFile(t, meshFile)
	s := newMemStore()
	o := opts(s)
	o.CRS = "gcj02"
	o.BatchSize = 1000
	sum := mustImport(t, path, o)
	if sum.Read != 5656 {
		t.Fatalf("read %d links, want 5656", sum.Read)
	}
	// Links crossing submap cells are listed once per cell, verbatim.
	if sum.Imported != 3462 || sum.Repeated != 5656-3462 || sum.Skipped != 0 {
		t.Fatalf("read %d imported %d repeated %d skipped %d, want 3462 imported, 2194 repeated",
			sum.Read, sum.Imported, sum.Repeated, sum.Skipped)
	}
	for _, p := range sum.Problems {
		if p.Line < 3 || !strings.HasPrefix(p.String(), path+":") {
			t.Errorf("problem without a line: %s", p)
		}
	}
	f, err := s.Get(context.Background(), twin.NewID(twin.Roads, "mesh-43467217216666"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Props.Get("oneway") != false || f.Props.Get("snode") != "43467220013791353" {
		t.Errorf("link props %v", f.Props)
	}
	// The file's first vertex is GCJ-02 (106.25000, 29.25516).
	first := f.Geometry.(orb.LineString)[0]
	if d := geo.Distance(gcj02.FromWGS84(first), orb.Point{106.25, 29.25516}); d > 0.5 {
		t.Errorf("first vertex %v is %.2f m off after the datum round trip", first, d)
	}
	oneways := 0
	for _, r := range s.layer(twin.Roads) {
		if r.Props.Get("oneway") == true {
			oneways++
		}
	}
	if oneways == 0 || oneways == sum.Imported {
		t.Errorf("%d of %d links one-way", oneways, sum.Imported)
	}
	sum2 := mustImport(t, path, o)
	if sum2.Imported != 0 || sum2.Unchanged != sum.Imported {
		t.Fatalf("re-import %+v", sum2)
	}
}

func TestMeshDirection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "submap1.xml")
	body := `<?xml version="1.0"?>
<submaps>
<submap submapID="1">
<points Direction="2" SnodeID="s1" EnodeID="e1" linkID="1">106.50000 29.50000,106.50100 29.50100</points>
<points Direction="3" SnodeID="s2" EnodeID="e2" linkID="2">106.50000 29.50000,106.50100 29.50100</points>
<points Direction="1" SnodeID="s3" EnodeID="e3" linkID="3">106.5 29.5,bad</points>
<points Direction="1" SnodeID="s4" EnodeID="e4" linkID="4">106.5 29.5</points>
</submap>
</submaps>`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newMemStore()
	sum := mustImport(t, path, opts(s))
	if sum.Read != 4 || sum.Imported != 2 || sum.Skipped != 2 {
		t.Fatalf("summary %+v", sum)
	}
	if got := sum.Problems[0].String(); got != path+":6 (feature 2): link 3: bad coordinate pair \"bad\"" {
		t.Errorf("problem %q", got)
	}
	if sum.Problems[1].Line != 7 || !strings.Contains(sum.Problems[1].Reason, "at least 2") {
		t.Errorf("problem %s", sum.Problems[1])
	}
	fwd, _ := s.Get(context.Background(), twin.NewID(twin.Roads, "mesh-1"))
	rev, _ := s.Get(context.Background(), twin.NewID(twin.Roads, "mesh-2"))
	if fwd.Props.Get("oneway") != true || rev.Props.Get("oneway") != true {
		t.Fatalf("oneway %v %v", fwd.Props, rev.Props)
	}
	if fwd.Geometry.(orb.LineString)[0] != (orb.Point{106.5, 29.5}) || rev.Geometry.(orb.LineString)[0] != (orb.Point{106.501, 29.501}) {
		t.Errorf("direction 3 not reversed: %v / %v", fwd.Geometry, rev.Geometry)
	}
}

func TestBadFeaturesReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.geojson")
	lines := []string{
		`{"type": "FeatureCollection",`,
		` "name": "test",`,
		` "features": [`,
		`  {"type":"Feature","id":"ok1","properties":{"highway":"primary"},"geometry":{"type":"LineString","coordinates":[[106.5,29.5],[106.6,29.6]]}},`,
		`  {"type":"Feature","id":"e1","properties":{"highway":"primary"},"geometry":null},`,
		`  {"type":"Feature","id":"r1","properties":{"highway":"primary"},"geometry":{"type":"LineString","coordinates":[[106.5,29.5],[206.6,29.6]]}},`,
		`  {"type":"Feature","id":"s1","properties":{"building":"yes"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}},`,
		`  {"type":"Feature","id":"u1","properties":{"foo":"bar"},"geometry":{"type":"Point","coordinates":[106.5,29.5]}},`,
		`  {"type":"Feature","id":"u2","properties":{"layer":"castles"},"geometry":{"type":"Point","coordinates":[106.5,29.5]}},`,
		`  {"type":"Feature","id":"g1","properties":{"highway":"primary"},"geometry":{"type":"LineString","coordinates":[106.5,29.5]}},`,
		`  {"type":"Feature","id":"ok1","properties":{"highway":"primary"},"geometry":{"type":"LineString","coordinates":[[106.5,29.5],[106.7,29.6]]}},`,
		`  {"type":"Feature","id":"p0","properties":{"building":"yes"},"geometry":{"type":"Polygon","coordinates":[]}},`,
		`  {"type":"Feature","id":"ok2","properties":{"layer":"buildings","height":"30 m"},`,
		`      "geometry":{"type":"Polygon","coordinates":[[[106.5,29.5],[106.501,29.5],[106.501,29.501],[106.5,29.5]]]}}`,
		` ]}`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newMemStore()
	sum := mustImport(t, path, opts(s))
	if sum.Read != 10 || sum.Imported != 2 || sum.Skipped != 8 {
		t.Fatalf("summary %+v", sum)
	}
	want := []struct {
		line, index int
		reason      string
	}{
		{5, 1, "empty geometry"},
		{6, 2, "coordinates out of range"},
		{7, 3, "self-intersecting polygon"},
		{8, 4, "unknown layer (none given"},
		{9, 5, `unknown layer "castles"`},
		{10, 6, "invalid GeoJSON"},
		{11, 7, "duplicate id roads/ok1 with different content (first defined by feature 0)"},
		{12, 8, "empty geometry"},
	}
	for i, w := range want {
		p := sum.Problems[i]
		if p.Line != w.line || p.Index != w.index || !strings.HasPrefix(p.Reason, w.reason) || p.File != path {
			t.Errorf("problem %d = %s, want line %d feature %d %q", i, p, w.line, w.index, w.reason)
		}
	}
	if got := sum.Problems[2].String(); got != path+":7 (feature 3): self-intersecting polygon (ring 0)" {
		t.Errorf("rendered %q", got)
	}
	b, err := s.Get(context.Background(), twin.NewID(twin.Buildings, "ok2"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Props.Get("height_m") != 30.0 || b.Props.Get("high_rise") != true {
		t.Errorf("building props %v", b.Props)
	}
}

func TestWholeFileErrors(t *testing.T) {
	dir := t.TempDir()
	s := newMemStore()
	cases := map[string]string{
		"notjson.geojson": "this is not json",
		"array.json":      `[1,2,3]`,
		"point.geojson":   `{"type":"Point","coordinates":[1,2]}`,
		"broken.geojson":  "{\"type\":\"FeatureCollection\",\"features\":[\n{\"type\":\"Feature\",\n\"geometry\":{",
		"notmesh.xml":     `<osm></osm>`,
		"data.csv":        `a,b`,
	}
	for name, body := range cases {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Import(context.Background(), path, opts(s))
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	missing := filepath.Join(dir, "missing.geojson")
	if _, err := Import(context.Background(), missing, opts(s)); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Import(context.Background(), missing, Options{}); err == nil {
		t.Error("no store accepted")
	}
	if _, err := Import(context.Background(), missing, Options{Store: s, CRS: "bd09"}); err == nil {
		t.Error("unknown CRS accepted")
	}
	if n := s.count(twin.Roads); n != 0 {
		t.Errorf("%d objects stored from broken files", n)
	}
}

func TestForcedLayerAndRenames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cams.geojson")
	body := `{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"cam_no":"C-1","typ":"camera"},"geometry":{"type":"Point","coordinates":[106.55,29.56]}}]}`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newMemStore()
	o := opts(s)
	o.Layer = twin.Devices
	o.Props = map[string]string{"typ": "kind"}
	o.NameProp = "cam_no"
	o.CRS = "gcj02"
	sum := mustImport(t, path, o)
	if sum.Imported != 1 {
		t.Fatalf("summary %+v", sum)
	}
	f, err := s.Get(context.Background(), twin.NewID(twin.Devices, "C-1"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Props.Get("kind") != "camera" || f.Props.Get("typ") != nil {
		t.Errorf("props %v", f.Props)
	}
	if d := geo.Distance(f.Geometry.(orb.Point), orb.Point{106.55, 29.56}); d < 400 {
		t.Errorf("gcj02 point not converted (%.0f m)", d)
	}
}

func TestProgressBar(t *testing.T) {
	path := dataFile(t, shapingbaFile)
	var buf bytes.Buffer
	o := opts(newMemStore())
	o.Progress = &buf
	mustImport(t, path, o)
	out := buf.String()
	if !strings.Contains(out, "road_network.geojson [") || !strings.Contains(out, "100% read 1187, imported 1187") || !strings.HasSuffix(out, "\n") {
		t.Errorf("progress output %q", out)
	}
	if ProgressWriter(nil) != nil {
		t.Error("nil file gave a writer")
	}
	f, err := os.CreateTemp(t.TempDir(), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ProgressWriter(f) != nil {
		t.Error("a regular file counted as a terminal")
	}
}

func TestCancelled(t *testing.T) {
	path := dataFile(t, shapingbaFile)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Import(ctx, path, opts(newMemStore())); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// downStore fails every read and write, like an unreachable database.
type downStore struct{ *memStore }

func (downStore) Get(context.Context, twin.ID) (*twin.Feature, error) {
	return nil, twin.ErrStoreUnavailable
}
func (downStore) Upsert(context.Context, []*twin.Feature) error { return twin.ErrStoreUnavailable }

func TestStoreDown(t *testing.T) {
	path := dataFile(t, shapingbaFile)
	_, err := Import(context.Background(), path, opts(downStore{newMemStore()}))
	if !errors.Is(err, twin.ErrStoreUnavailable) || !strings.Contains(err.Error(), path) || strings.Count(err.Error(), "unavailable") != 1 {
		t.Fatalf("err %v, want one wrapped ErrStoreUnavailable naming the file", err)
	}
}

// A file holding one top-level Feature (RFC 7946 §3.2) imports, whatever
// the order of its members.
func TestImportLoneFeature(t *testing.T) {
	dir := t.TempDir()
	for i, body := range []string{
		`{"type":"Feature","id":"cam2","properties":{"kind":"camera"},"geometry":{"type":"Point","coordinates":[106.55,29.56]}}`,
		`{"id":"cam2","geometry":{"type":"Point","coordinates":[106.55,29.56]},"properties":{"kind":"camera"},"type":"Feature"}`,
	} {
		path := filepath.Join(dir, fmt.Sprintf("lone%d.geojson", i))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		st := newMemStore()
		sum, err := Import(context.Background(), path, Options{Store: st, Layer: twin.Devices})
		if err != nil || sum.Read != 1 || sum.Imported != 1 {
			t.Fatalf("%s: %+v %v", body, sum, err)
		}
	}
}
