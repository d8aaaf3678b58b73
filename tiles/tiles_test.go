package tiles

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/maptile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/twin"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

func tileURL(layers string, tl maptile.Tile) string {
	return fmt.Sprintf("/tiles/%s/%d/%d/%d.mvt", layers, tl.Z, tl.X, tl.Y)
}

func TestTileDecodesWithMapboxVectorTile(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{Registerer: prometheus.NewRegistry()})
	tl := maptile.At(vehiclePos, 15)
	w := get(t, s.Handler(), tileURL("buildings,roads,bridges,devices,vehicles", tl), nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/vnd.mapbox-vector-tile" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=2" {
		t.Errorf("Cache-Control %q, want short for a live layer", cc)
	}
	d := decodeMVT(t, w.Body.Bytes())
	for _, l := range d.Layers {
		if l.Version != 2 || l.Extent != 4096 {
			t.Errorf("layer %s: version %d extent %d, want 2 and 4096", l.Name, l.Version, l.Extent)
		}
	}
	v := d.layer("vehicles").feature("vehicles/BP2968")
	if v == nil {
		t.Fatalf("vehicle missing from %+v", d)
	}
	if v.Type != "Point" {
		t.Errorf("vehicle type %s", v.Type)
	}
	if v.ID == nil || *v.ID != FeatureID(twin.NewID(twin.Vehicles, "BP2968")) {
		t.Errorf("vehicle id %v, want %d", v.ID, FeatureID(twin.NewID(twin.Vehicles, "BP2968")))
	}
	// The point lands at the pixel an independent projection gives.
	fr := maptile.Fraction(vehiclePos, 15)
	wantX := math.Floor((fr[0] - float64(tl.X)) * 4096)
	wantY := math.Floor((fr[1] - float64(tl.Y)) * 4096)
	if got := v.Geometry[0][0]; math.Abs(got[0]-wantX) > 1 || math.Abs(got[1]-wantY) > 1 {
		t.Errorf("vehicle at %v, want (%v,%v)", got, wantX, wantY)
	}
	if v.Properties["plate"] != "渝BP2968" || v.Properties["kind"] != "muck_truck" || v.Properties["speed_kmh"] != 32.5 ||
		v.Properties["version"] != 1.0 {
		t.Errorf("vehicle props %v", v.Properties)
	}
	dev := d.layer("devices").feature("devices/gas-1")
	if dev == nil || dev.Properties["ch4"] != 0.8 || dev.Properties["h2s"] != 2.0 {
		t.Errorf("device readings not flattened: %+v", dev)
	}
	if dev != nil {
		if _, ok := dev.Properties["values"]; ok {
			t.Errorf("nested values written: %v", dev.Properties)
		}
	}
	b := d.layer("buildings").feature("buildings/b1")
	if b == nil || b.Type != "Polygon" {
		t.Fatalf("building: %+v", b)
	}
	if b.Properties["height_m"] != 120.5 || b.Properties["levels"] != 32.0 || b.Properties["high_rise"] != true ||
		b.Properties["risk_color"] != "orange" || b.Properties["owners"] != `["Li Wei"]` {
		t.Errorf("building props %v", b.Properties)
	}
	if _, ok := b.Properties["nested"]; ok {
		t.Errorf("unadvertised nested map written: %v", b.Properties)
	}
	// MVT 2.1 winding: exterior ring has positive surveyor's area.
	if a := surveyorClosed(b.Geometry[0]); a <= 0 {
		t.Errorf("exterior ring area %v, want > 0 (clockwise on screen)", a)
	}
	r := d.layer("roads").feature("roads/r1")
	if r == nil || r.Type != "LineString" || r.Properties["oneway"] != true || r.Properties["class"] != "primary" {
		t.Errorf("road %+v", r)
	}
	br := d.layer("bridges")
	if br != nil {
		if f := br.feature("bridges/qiansimen"); f != nil && !strings.Contains(fmt.Sprint(f.Properties["restrictions"]), "muck_truck") {
			t.Errorf("bridge restrictions %v", f.Properties)
		}
	}
}

func surveyorClosed(ring [][2]float64) float64 {
	var a float64
	for i := 0; i+1 < len(ring); i++ {
		a += ring[i][0]*ring[i+1][1] - ring[i+1][0]*ring[i][1]
	}
	n := len(ring) - 1
	a += ring[n][0]*ring[0][1] - ring[0][0]*ring[n][1]
	return a
}

func TestGoldenTiles(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	cases := []struct {
		name, layers string
		tile         maptile.Tile
	}{
		{"z15-centre", "regions,roads,bridges,buildings,devices,vehicles", maptile.At(vehiclePos, 15)},
		{"z10-city", "regions,roads,buildings,vehicles", maptile.At(vehiclePos, 10)},
		{"z17-building", "buildings,devices", maptile.At(orb.Point{106.5705, 29.5604}, 17)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := get(t, s.Handler(), tileURL(c.layers, c.tile), nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			got, err := json.MarshalIndent(decodeMVT(t, w.Body.Bytes()), "", " ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Errorf("tile %s differs from %s:\n%s", c.name, path, got)
			}
		})
	}
}

func TestMinZoomAndPixelCulling(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	// z9: buildings (13), devices (14) and minor roads (10) are absent;
	// the primary road (8) and the district are present.
	d := decodeMVT(t, get(t, s.Handler(), tileURL("regions,roads,buildings,devices", maptile.At(vehiclePos, 9)), nil).Body.Bytes())
	if d.layer("buildings") != nil || d.layer("devices") != nil {
		t.Errorf("layers below min zoom present: %+v", d.Layers)
	}
	roads := d.layer("roads")
	if roads.feature("roads/r1") == nil || roads.feature("roads/r2") != nil {
		t.Errorf("z9 roads: %+v", roads)
	}
	if d.layer("regions").feature("regions/500103") == nil {
		t.Error("district missing at z9")
	}
	// z13: the 100 m building is several pixels and present; a 1 m shed is culled.
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, "shed"), Props: twin.NewProps(map[string]any{}),
		Geometry: orb.Polygon{{{106.5720, 29.5610}, {106.57201, 29.5610}, {106.57201, 29.56101}, {106.5720, 29.56101}, {106.5720, 29.5610}}}}); err != nil {
		t.Fatal(err)
	}
	tl := maptile.At(orb.Point{106.5705, 29.5604}, 13)
	d = decodeMVT(t, get(t, s.Handler(), tileURL("buildings", tl), nil).Body.Bytes())
	if d.layer("buildings").feature("buildings/b1") == nil || d.layer("buildings").feature("buildings/shed") != nil {
		t.Errorf("z13 buildings: %+v", d.layer("buildings"))
	}
}

func TestFeatureBudgetKeepsLargest(t *testing.T) {
	tw := testTwin(t)
	tl := maptile.At(orb.Point{106.56, 29.60}, 13)
	origin := tl.Bound().Min
	for i := 0; i < 30; i++ {
		side := 0.0002 + 0.00002*float64(i)
		x, y := origin[0]+0.001+float64(i)*0.001, origin[1]+0.001
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprintf("g%02d", i)), Props: twin.NewProps(map[string]any{}),
			Geometry: orb.Polygon{{{x, y}, {x + side, y}, {x + side, y + side}, {x, y + side}, {x, y}}}}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(tw, Options{MaxFeatures: 5})
	d := decodeMVT(t, get(t, s.Handler(), tileURL("buildings", tl), nil).Body.Bytes())
	l := d.layer("buildings")
	if l == nil || len(l.Features) != 5 {
		t.Fatalf("budget 5: got %+v", l)
	}
	for _, want := range []string{"g29", "g28", "g27", "g26", "g25"} {
		if l.feature("buildings/"+want) == nil {
			t.Errorf("largest building %s missing", want)
		}
	}
}

func TestETagChangesExactlyWithContent(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	h := s.Handler()
	here := tileURL("buildings", maptile.At(building[0][0], 16))
	far := tileURL("buildings", maptile.At(farBuilding[0][0], 16))
	a1, b1 := get(t, h, here, nil), get(t, h, far, nil)
	if a1.Header().Get("Cache-Control") != "public, max-age=3600" {
		t.Errorf("static Cache-Control %q", a1.Header().Get("Cache-Control"))
	}
	// Cached: same ETag again, and a 304 for If-None-Match.
	if e := get(t, h, here, nil).Header().Get("ETag"); e != a1.Header().Get("ETag") {
		t.Fatalf("ETag unstable: %s vs %s", e, a1.Header().Get("ETag"))
	}
	nm := get(t, h, here, map[string]string{"If-None-Match": a1.Header().Get("ETag")})
	if nm.Code != http.StatusNotModified || nm.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d, body %d bytes", nm.Code, nm.Body.Len())
	}
	if _, _, err := tw.Update(twin.NewID(twin.Buildings, "b1"), func(f *twin.Feature) (*twin.Feature, error) {
		f.Props.Set("risk_color", "red")
		f.Props.Set("risk_level", 1)
		return f, nil
	}); err != nil {
		t.Fatal(err)
	}
	a2, b2 := get(t, h, here, nil), get(t, h, far, nil)
	if a2.Header().Get("ETag") == a1.Header().Get("ETag") || bytes.Equal(a2.Body.Bytes(), a1.Body.Bytes()) {
		t.Errorf("covering tile kept ETag %s after the change", a2.Header().Get("ETag"))
	}
	if f := decodeMVT(t, a2.Body.Bytes()).layer("buildings").feature("buildings/b1"); f == nil || f.Properties["risk_color"] != "red" {
		t.Errorf("changed building not in the new tile: %+v", f)
	}
	if b2.Header().Get("ETag") != b1.Header().Get("ETag") {
		t.Errorf("tile elsewhere changed ETag")
	}
	if get(t, h, here, map[string]string{"If-None-Match": a1.Header().Get("ETag")}).Code != http.StatusOK {
		t.Error("old ETag still answered 304")
	}
	// Moving a building out of a tile changes that tile; removing it too.
	if _, err := tw.Delete(twin.NewID(twin.Buildings, "b2")); err != nil {
		t.Fatal(err)
	}
	b3 := get(t, h, far, nil)
	if b3.Header().Get("ETag") == b1.Header().Get("ETag") {
		t.Error("tile kept ETag after its only building was removed")
	}
	if d := decodeMVT(t, b3.Body.Bytes()); d.layer("buildings") != nil {
		t.Errorf("removed building still drawn: %+v", d)
	}
}

func TestRunInvalidatesAndLargeChangesScan(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); t.Logf("run: %v", <-done) }()
	h := s.Handler()
	// A z18 tile of the district: a change to the district covers far more
	// than maxTilesPerZoom tiles at z18, so the cache is scanned.
	u := tileURL("regions", maptile.At(orb.Point{106.53, 29.54}, 18))
	e1 := get(t, h, u, nil).Header().Get("ETag")
	if n, _ := s.cache.stats(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	if _, _, err := tw.Update(twin.NewID(twin.Regions, "500103"), func(f *twin.Feature) (*twin.Feature, error) {
		f.Props.Set("name", "渝中区")
		return f, nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Sync()
	if n, _ := s.cache.stats(); n != 0 {
		t.Errorf("cache still holds %d entries after the district changed", n)
	}
	if e2 := get(t, h, u, nil).Header().Get("ETag"); e2 == e1 {
		t.Error("ETag unchanged after district rename")
	}
}

func TestGzip(t *testing.T) {
	s := New(testTwin(t), Options{})
	u := tileURL("buildings,vehicles", maptile.At(vehiclePos, 14))
	plain := get(t, s.Handler(), u, nil)
	zipped := get(t, s.Handler(), u, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if zipped.Header().Get("Content-Encoding") != "gzip" || plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("Content-Encoding %q / %q", zipped.Header().Get("Content-Encoding"), plain.Header().Get("Content-Encoding"))
	}
	if zipped.Header().Get("Vary") != "Accept-Encoding" {
		t.Errorf("Vary %q", zipped.Header().Get("Vary"))
	}
	if !bytes.Equal(gunzip(t, zipped.Body.Bytes()), plain.Body.Bytes()) {
		t.Error("gzip body differs from plain body")
	}
	if zipped.Header().Get("ETag") == plain.Header().Get("ETag") {
		t.Error("gzip and identity share an ETag")
	}
	if get(t, s.Handler(), u, map[string]string{"Accept-Encoding": "gzip;q=0"}).Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 answered gzipped")
	}
	if n := len(decodeMVT(t, zipped.Body.Bytes()).Layers); n == 0 {
		t.Error("gzipped tile decodes empty")
	}
	// The first plain request built the tile and was answered from its
	// raw bytes; this one is answered from the cached gzip form, inflated.
	again := get(t, s.Handler(), u, nil)
	if !bytes.Equal(again.Body.Bytes(), plain.Body.Bytes()) || again.Header().Get("ETag") != plain.Header().Get("ETag") {
		t.Error("a cached tile inflated differs from the one built for a plain request")
	}
	for _, r := range []*httptest.ResponseRecorder{plain, zipped, again} {
		if cl := r.Header().Get("Content-Length"); cl != strconv.Itoa(r.Body.Len()) {
			t.Errorf("Content-Length %s for %d bytes", cl, r.Body.Len())
		}
	}
}

func TestBadPaths(t *testing.T) {
	s := New(testTwin(t), Options{})
	cases := []struct {
		path string
		code int
	}{
		{"/tiles/buildings/23/0/0.mvt", 400},
		{"/tiles/buildings/-1/0/0.mvt", 400},
		{"/tiles/buildings/2/4/0.mvt", 400},
		{"/tiles/buildings/2/0/4.mvt", 400},
		{"/tiles/buildings/2/0/1", 400},
		{"/tiles/buildings/2/0/1.png", 400},
		{"/tiles/buildings/2/0.mvt", 400},
		{"/tiles/buildings/x/0/0.mvt", 400},
		{"/tiles/buildings/2/+1/0.mvt", 400},
		{"/tiles/buildings/99999999999999999999/0/0.mvt", 400},
		{"/tiles/parks/2/0/0.mvt", 404},
		{"/tiles/buildings,parks/2/0/0.mvt", 404},
		{"/tiles/parks.json", 404},
		{"/tiles/buildings,buildings/2/0/0.mvt", 400},
		{"/tiles/", 400},
		{"/fonts/Noto/1-2.pbf", 400},
	}
	for _, c := range cases {
		w := get(t, s.Handler(), c.path, nil)
		if w.Code != c.code {
			t.Errorf("%s: status %d, want %d", c.path, w.Code, c.code)
			continue
		}
		var body struct {
			Error  string `json:"error"`
			Detail any    `json:"detail"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
			t.Errorf("%s: body %q is not a JSON error", c.path, w.Body)
		}
	}
	if w := get(t, s.Handler(), "/tiles/buildings/22/4194303/4194303.mvt", nil); w.Code != 200 {
		t.Errorf("max tile at z22: %d", w.Code)
	}
}

func TestScopeFilterAndCacheKey(t *testing.T) {
	tw := testTwin(t)
	type scopeKey struct{}
	s := New(tw, Options{
		Filter: func(ctx context.Context) func(*twin.Feature) bool {
			if ctx.Value(scopeKey{}) == "all" {
				return nil
			}
			return func(f *twin.Feature) bool { return f.ID.Name != "b1" }
		},
		Scope: func(ctx context.Context) string { v, _ := ctx.Value(scopeKey{}).(string); return v },
	})
	u := tileURL("buildings", maptile.At(building[0][0], 16))
	ask := func(scope string) decoded {
		r, _ := http.NewRequestWithContext(context.WithValue(context.Background(), scopeKey{}, scope), http.MethodGet, u, nil)
		w := &recorder{h: http.Header{}}
		s.Handler().ServeHTTP(w, r)
		return decodeMVT(t, w.body.Bytes())
	}
	for i := 0; i < 2; i++ { // second round answers from the cache
		if ask("all").layer("buildings").feature("buildings/b1") == nil {
			t.Error("scope all: b1 missing")
		}
		if d := ask("district"); d.layer("buildings").feature("buildings/b1") != nil {
			t.Error("scope district: b1 visible")
		}
	}
	if n, _ := s.cache.stats(); n != 2 {
		t.Errorf("cache entries %d, want one per scope", n)
	}
}

// recorder is a minimal ResponseWriter (httptest's is fine too, but this
// lets a request carry its own context).
type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func TestTileJSONAndStyle(t *testing.T) {
	s := New(testTwin(t), Options{})
	w := get(t, s.Handler(), "/tiles/buildings,vehicles.json", nil)
	if w.Code != 200 {
		t.Fatalf("tilejson %d %s", w.Code, w.Body)
	}
	var tj struct {
		TileJSON     string    `json:"tilejson"`
		Tiles        []string  `json:"tiles"`
		MinZoom      int       `json:"minzoom"`
		MaxZoom      int       `json:"maxzoom"`
		Bounds       []float64 `json:"bounds"`
		Center       []float64 `json:"center"`
		VectorLayers []struct {
			ID      string            `json:"id"`
			Fields  map[string]string `json:"fields"`
			MinZoom int               `json:"minzoom"`
		} `json:"vector_layers"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tj); err != nil {
		t.Fatal(err)
	}
	if tj.TileJSON != "3.0.0" || len(tj.Tiles) != 1 || tj.Tiles[0] != "http://example.com/tiles/buildings,vehicles/{z}/{x}/{y}.mvt" {
		t.Errorf("tilejson header: %+v", tj)
	}
	if tj.MinZoom != 8 || tj.MaxZoom != 18 || len(tj.VectorLayers) != 2 || tj.VectorLayers[0].ID != "buildings" ||
		tj.VectorLayers[0].MinZoom != 13 || tj.VectorLayers[0].Fields["risk_color"] != "String" || tj.VectorLayers[1].Fields["id"] != "String" {
		t.Errorf("tilejson layers: %+v", tj)
	}
	want := []float64{106.45, 29.5, 106.5772, 29.5628}
	for i := range want {
		if math.Abs(tj.Bounds[i]-want[i]) > 1e-6 {
			t.Errorf("bounds %v, want %v", tj.Bounds, want)
			break
		}
	}
	if len(tj.Center) != 3 || tj.Center[0] < want[0] || tj.Center[0] > want[2] {
		t.Errorf("center %v", tj.Center)
	}

	st := get(t, s.Handler(), "/styles/command.json", nil)
	var style map[string]any
	if err := json.Unmarshal(st.Body.Bytes(), &style); err != nil || style["version"] != 8.0 {
		t.Fatalf("style: %v %v", err, style["version"])
	}
	for _, u := range urlsIn(style) {
		if !strings.HasPrefix(u, "http://example.com/") {
			t.Errorf("style uses a URL off this server: %s", u)
		}
	}
	sources := style["sources"].(map[string]any)
	if sources["twin"].(map[string]any)["url"] != "http://example.com/tiles/"+StaticLayers+".json" {
		t.Errorf("twin source %v", sources["twin"])
	}
	// Every source-layer of the style is a layer its source's TileJSON lists.
	for _, l := range style["layers"].([]any) {
		lm := l.(map[string]any)
		if sl, ok := lm["source-layer"].(string); ok {
			list := StaticLayers
			if lm["source"] == "live" {
				list = LiveLayers
			}
			if !strings.Contains(","+list+",", ","+sl+",") {
				t.Errorf("style layer %v draws %s not in source %v", lm["id"], sl, lm["source"])
			}
		}
	}
	// The style passes MapLibre's own validator.
	f := filepath.Join(t.TempDir(), "style.json")
	if err := os.WriteFile(f, st.Body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var problems []string
	if err := json.Unmarshal(runNode(t, "validate-style.js", f), &problems); err != nil || len(problems) > 0 {
		t.Errorf("style invalid: %v %v", err, problems)
	}
	g := get(t, s.Handler(), "/fonts/Noto%20Sans%20Regular/0-255.pbf", nil)
	if g.Code != 200 || !bytes.Equal(g.Body.Bytes(), EmptyGlyphs("Noto Sans Regular", "0-255")) {
		t.Errorf("glyphs %d %x", g.Code, g.Body.Bytes())
	}
	// 0x0a len 0x0a len "name" 0x12 len "range"
	if want := "\x0a\x12\x0a\x09Noto Sans\x12\x050-255"; string(EmptyGlyphs("Noto Sans", "0-255")) != want {
		t.Errorf("glyph pbf %q, want %q", EmptyGlyphs("Noto Sans", "0-255"), want)
	}
}

func urlsIn(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			out = append(out, urlsIn(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, urlsIn(e)...)
		}
	case string:
		if strings.Contains(x, "://") {
			out = append(out, x)
		}
	}
	return out
}

// TestConcurrentNeverStale races requests against moving vehicles; at the
// end every cached answer equals a fresh build.
func TestConcurrentNeverStale(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	h := s.Handler()
	tl := maptile.At(vehiclePos, 14)
	u := tileURL("vehicles,buildings", tl)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if w := get(t, h, u, nil); w.Code != 200 {
					t.Errorf("status %d", w.Code)
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		p := orb.Point{vehiclePos[0] + float64(i)*1e-5, vehiclePos[1]}
		if _, _, err := tw.Update(twin.NewID(twin.Vehicles, "BP2968"), func(f *twin.Feature) (*twin.Feature, error) {
			f.Geometry = p
			return f, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	cancel()
	t.Logf("run: %v", <-done)
	got := get(t, h, u, nil).Body.Bytes()
	fresh, _, err := New(tw, Options{}).build(context.Background(), Request{Kind: KindTile,
		Layers: []twin.Layer{twin.Vehicles, twin.Buildings}, Z: uint8(tl.Z), X: tl.X, Y: tl.Y})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fresh) {
		t.Error("served tile differs from a fresh build after concurrent moves")
	}
}

func TestCacheEvictsByBytes(t *testing.T) {
	c := newCache(3000)
	for i := 0; i < 10; i++ {
		e := &entry{key: cacheKey{Tile: tileKey{Z: 5, X: uint32(i)}}, layers: []twin.Layer{twin.Roads}, raw: make([]byte, 700), etagRaw: []string{`"x"`}}
		c.put(e, 0)
	}
	n, b := c.stats()
	if b > 3000 || n != 3 {
		t.Errorf("cache %d entries %d bytes, want 3 within 3000", n, b)
	}
	if _, ok := c.get(cacheKey{Tile: tileKey{Z: 5, X: 9}}); !ok {
		t.Error("newest entry evicted")
	}
	if _, ok := c.get(cacheKey{Tile: tileKey{Z: 5, X: 0}}); ok {
		t.Error("oldest entry kept")
	}
}

func TestParseTilePath(t *testing.T) {
	r, err := ParseTilePath("roads,buildings/15/26880/13580.mvt")
	if err != nil || r.Kind != KindTile || r.Z != 15 || r.X != 26880 || r.Y != 13580 || r.LayerKey() != "roads,buildings" {
		t.Errorf("%+v %v", r, err)
	}
	r, err = ParseTilePath("alerts.json")
	if err != nil || r.Kind != KindTileJSON || r.LayerKey() != "alerts" {
		t.Errorf("%+v %v", r, err)
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"roads/1/0/1.mvt", "roads,buildings.json", "a/b/c/d", "roads/22/4194303/0.mvt", "//", ".json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ParseTilePath(p)
		if err != nil {
			return
		}
		if len(r.Layers) == 0 {
			t.Fatalf("%q: no layers", p)
		}
		if r.Kind == KindTile {
			if r.Z > MaxZoom || uint64(r.X) >= 1<<r.Z || uint64(r.Y) >= 1<<r.Z {
				t.Fatalf("%q: out of range %+v", p, r)
			}
			back := fmt.Sprintf("%s/%d/%d/%d.mvt", r.LayerKey(), r.Z, r.X, r.Y)
			if r2, err := ParseTilePath(back); err != nil || r2.LayerKey() != r.LayerKey() || r2.X != r.X {
				t.Fatalf("%q: round trip %q: %v", p, back, err)
			}
		}
	})
}

// TestFeedOverrunPurges: when more changes than the feed keeps happen
// before the invalidator reads them, the cache is purged, not left stale.
func TestFeedOverrunPurges(t *testing.T) {
	tw := twin.New(twin.Options{FeedSize: 16})
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v1"), Geometry: vehiclePos, Props: twin.NewProps(map[string]any{"speed_kmh": 0})}); err != nil {
		t.Fatal(err)
	}
	s := New(tw, Options{Registerer: prometheus.NewRegistry()})
	u := tileURL("vehicles", maptile.At(vehiclePos, 12))
	e1 := get(t, s.Handler(), u, nil).Header().Get("ETag")
	for i := 1; i <= 40; i++ { // other objects far away push the feed on
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("far%d", i)), Geometry: orb.Point{100, 20},
			Props: twin.NewProps(map[string]any{})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tw.Update(twin.NewID(twin.Vehicles, "v1"), func(f *twin.Feature) (*twin.Feature, error) {
		f.Props.Set("speed_kmh", 40)
		return f, nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 41; i <= 60; i++ {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("far%d", i)), Geometry: orb.Point{100, 20},
			Props: twin.NewProps(map[string]any{})}); err != nil {
			t.Fatal(err)
		}
	}
	w := get(t, s.Handler(), u, nil)
	if w.Header().Get("ETag") == e1 {
		t.Fatal("stale tile served after the feed overran the invalidator")
	}
	if f := decodeMVT(t, w.Body.Bytes()).layer("vehicles").feature("vehicles/v1"); f == nil || f.Properties["speed_kmh"] != 40.0 {
		t.Errorf("v1 after overrun: %+v", f)
	}
}

// TestHistoryChangeKeepsCache: a late telemetry sample (history only)
// changes nothing drawn, so the cached tile stays.
func TestHistoryChangeKeepsCache(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	id := twin.NewID(twin.Vehicles, "BP2968")
	ts := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	if _, _, err := tw.ApplySample(twin.Sample{ID: id, Time: ts, HasPos: true, Pos: vehiclePos}); err != nil {
		t.Fatal(err)
	}
	u := tileURL("vehicles", maptile.At(vehiclePos, 15))
	get(t, s.Handler(), u, nil)
	if out, _, err := tw.ApplySample(twin.Sample{ID: id, Time: ts.Add(-time.Minute), HasPos: true, Pos: orb.Point{106.6, 29.6}}); err != nil || out != twin.HistoryOnly {
		t.Fatalf("late sample: %v %v", out, err)
	}
	s.Sync()
	if n, _ := s.cache.stats(); n != 1 {
		t.Errorf("history-only change dropped the cached tile (%d entries)", n)
	}
}

// TestPutRejectsTilesOvertakenByChanges: a tile built from the twin at seq
// 5 is not cached when a change processed since (seq 8) touches it.
func TestPutRejectsTilesOvertakenByChanges(t *testing.T) {
	c := newCache(1 << 20)
	tl := maptile.At(vehiclePos, 14)
	tk := tileKey{Z: uint8(tl.Z), X: tl.X, Y: tl.Y}
	c.remember(recent{seq: 8, layer: twin.Vehicles, bounds: [2]orb.Bound{vehiclePos.Bound()}, n: 1})
	c.processed = 10
	mk := func(l twin.Layer, k tileKey) *entry {
		return &entry{key: cacheKey{Layers: string(l), Tile: k}, layers: []twin.Layer{l}, raw: []byte{1}, etagRaw: []string{`"1"`}}
	}
	if c.put(mk(twin.Vehicles, tk), 5) {
		t.Error("tile overtaken by a processed change was cached")
	}
	if !c.put(mk(twin.Vehicles, tk), 8) {
		t.Error("tile that includes the change was refused")
	}
	if !c.put(mk(twin.Buildings, tk), 5) {
		t.Error("tile of another layer was refused")
	}
	if !c.put(mk(twin.Vehicles, tileKey{Z: tk.Z, X: tk.X + 5, Y: tk.Y}), 5) {
		t.Error("tile elsewhere was refused")
	}
	c.ringFloor = 7 // history before seq 7 forgotten
	if c.put(mk(twin.Roads, tileKey{Z: 3}), 4) {
		t.Error("unverifiable tile was cached")
	}
}

// TestOddGeometriesNeverPanic: collections, empty and degenerate shapes
// and NaN coordinates give a valid tile without them.
func TestOddGeometriesNeverPanic(t *testing.T) {
	tw := testTwin(t)
	odd := map[string]orb.Geometry{
		"coll":      orb.Collection{vehiclePos, orb.LineString{{106.57, 29.56}, {106.58, 29.57}}},
		"emptyline": orb.LineString{},
		"oneline":   orb.LineString{{106.57, 29.56}},
		"emptypoly": orb.Polygon{},
		"flat":      orb.Polygon{{{106.57, 29.56}, {106.58, 29.56}, {106.57, 29.56}}},
		"emptyring": orb.Polygon{{}},
		"nan":       orb.Point{math.NaN(), 29.56},
		"mp":        orb.MultiPoint{},
		"bound":     orb.Bound{Min: orb.Point{106.570, 29.560}, Max: orb.Point{106.571, 29.561}},
		"ring":      orb.Ring{{106.570, 29.560}, {106.571, 29.560}, {106.571, 29.561}, {106.570, 29.560}},
	}
	for name, g := range odd {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Bridges, name), Geometry: g, Props: twin.NewProps(map[string]any{})}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(tw, Options{})
	for _, z := range []maptile.Zoom{8, 12, 15, 18, 22} {
		w := get(t, s.Handler(), tileURL("bridges", maptile.At(vehiclePos, z)), nil)
		if w.Code != http.StatusOK {
			t.Fatalf("z%d: %d %s", z, w.Code, w.Body)
		}
		decodeMVT(t, w.Body.Bytes())
	}
}

// TestTileJSONBoundsFollowChanges: the advertised bounds grow when an
// object appears outside them, and TileJSON of live layers is short-lived.
func TestTileJSONBoundsFollowChanges(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{BaseURL: "https://twin.example/"})
	bounds := func() ([]float64, string, string) {
		w := get(t, s.Handler(), "/tiles/vehicles.json", nil)
		var tj struct {
			Bounds []float64 `json:"bounds"`
			Tiles  []string  `json:"tiles"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &tj); err != nil {
			t.Fatal(err)
		}
		return tj.Bounds, tj.Tiles[0], w.Header().Get("Cache-Control")
	}
	b1, u, cc := bounds()
	if b1[0] != vehiclePos[0] || b1[3] != vehiclePos[1] || u != "https://twin.example/tiles/vehicles/{z}/{x}/{y}.mvt" || cc != "public, max-age=2" {
		t.Errorf("bounds %v url %s cache %s", b1, u, cc)
	}
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "p9"), Geometry: orb.Point{106.8, 29.9}, Props: twin.NewProps(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	if b2, _, _ := bounds(); b2[2] != 106.8 || b2[3] != 29.9 || b2[0] != vehiclePos[0] {
		t.Errorf("bounds after a new vehicle: %v", b2)
	}
}

// TestConcurrentMissesBuildOnce: requests for a tile being built wait for
// that build instead of repeating it.
func TestConcurrentMissesBuildOnce(t *testing.T) {
	tw := testTwin(t)
	var builds sync.WaitGroup
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	s := New(tw, Options{
		Scope: func(context.Context) string { return "all" },
		Filter: func(context.Context) func(*twin.Feature) bool {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				<-release
			}
			return nil
		},
	})
	u := tileURL("vehicles", maptile.At(vehiclePos, 15))
	etags := make([]string, 5)
	for i := range etags {
		builds.Add(1)
		go func() {
			defer builds.Done()
			etags[i] = get(t, s.Handler(), u, nil).Header().Get("ETag")
		}()
	}
	for { // wait until the leader is building and four requests wait on it
		s.flightMu.Lock()
		n := 0
		for _, f := range s.flight {
			n = f.waiters
		}
		s.flightMu.Unlock()
		if n == 4 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	builds.Wait()
	if calls != 1 {
		t.Errorf("filter called %d times, want one build", calls)
	}
	for _, e := range etags {
		if e != etags[0] || e == "" {
			t.Errorf("etags %v", etags)
			break
		}
	}
}

// TestPolygonWithHoleWinding: whatever the input orientation, the exterior
// ring comes out positive (surveyor's formula, y down) and the hole
// negative, and the decoder sees one polygon with a hole.
func TestPolygonWithHoleWinding(t *testing.T) {
	tw := testTwin(t)
	outer := orb.Ring{{106.5720, 29.5620}, {106.5720, 29.5630}, {106.5735, 29.5630}, {106.5735, 29.5620}, {106.5720, 29.5620}} // clockwise in lon/lat
	hole := orb.Ring{{106.5725, 29.5623}, {106.5730, 29.5623}, {106.5730, 29.5627}, {106.5725, 29.5627}, {106.5725, 29.5623}}  // counter-clockwise
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, "court"), Geometry: orb.Polygon{outer, hole},
		Props: twin.NewProps(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	s := New(tw, Options{})
	d := decodeMVT(t, get(t, s.Handler(), tileURL("buildings", maptile.At(orb.Point{106.5727, 29.5625}, 15)), nil).Body.Bytes())
	f := d.layer("buildings").feature("buildings/court")
	if f == nil || len(f.Geometry) != 2 {
		t.Fatalf("court: %+v", f)
	}
	if a, h := surveyorClosed(f.Geometry[0]), surveyorClosed(f.Geometry[1]); a <= 0 || h >= 0 {
		t.Errorf("exterior %v hole %v: want exterior > 0 > hole", a, h)
	}
}
