package tiles

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// decoded is decode.js's output.
type decoded struct {
	Layers []decodedLayer `json:"layers"`
}

type decodedLayer struct {
	Name     string           `json:"name"`
	Version  int              `json:"version"`
	Extent   int              `json:"extent"`
	Features []decodedFeature `json:"features"`
}

type decodedFeature struct {
	ID         *uint64        `json:"id"`
	Type       string         `json:"type"`
	Properties map[string]any `json:"properties"`
	Geometry   [][][2]float64 `json:"geometry"`
}

func (d decoded) layer(name string) *decodedLayer {
	for i := range d.Layers {
		if d.Layers[i].Name == name {
			return &d.Layers[i]
		}
	}
	return nil
}

func (l *decodedLayer) feature(id string) *decodedFeature {
	if l == nil {
		return nil
	}
	for i := range l.Features {
		if l.Features[i].Properties["id"] == id {
			return &l.Features[i]
		}
	}
	return nil
}

var npmOnce sync.Once
var npmErr error

// runNode runs a script of testdata/decode with its npm packages
// (installed on first use) and returns its standard output.
func runNode(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed; the independent MVT decoder needs it")
	}
	dir, err := filepath.Abs("testdata/decode")
	if err != nil {
		t.Fatal(err)
	}
	npmOnce.Do(func() {
		_, err1 := os.Stat(filepath.Join(dir, "node_modules", "@mapbox", "vector-tile"))
		_, err2 := os.Stat(filepath.Join(dir, "node_modules", "@maplibre", "maplibre-gl-style-spec"))
		if err1 == nil && err2 == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--silent")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = err
			t.Logf("npm install: %s", out)
		}
	})
	if npmErr != nil {
		t.Fatalf("npm install in %s: %v", dir, npmErr)
	}
	cmd := exec.Command("node", append([]string{filepath.Join(dir, script)}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v: %s", script, err, stderr.String())
	}
	return out
}

// decodeMVT decodes a tile with the Node package @mapbox/vector-tile (the
// decoder MapLibre uses).
func decodeMVT(t testing.TB, data []byte) decoded {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tile.mvt")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runNode(t, "decode.js", f)
	var d decoded
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("decode.js output: %v", err)
	}
	return d
}

// Fixed features of the small test city (central Chongqing).
var (
	vehiclePos  = orb.Point{106.5772, 29.5628}
	building    = orb.Polygon{{{106.5700, 29.5600}, {106.5710, 29.5600}, {106.5710, 29.5608}, {106.5700, 29.5608}, {106.5700, 29.5600}}}
	farBuilding = orb.Polygon{{{106.4500, 29.5000}, {106.4510, 29.5000}, {106.4510, 29.5008}, {106.4500, 29.5008}, {106.4500, 29.5000}}}
)

func testTwin(t testing.TB) *twin.Twin {
	t.Helper()
	tw := twin.New(twin.Options{Clock: clock.NewFake(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)), FeedSize: 1 << 12})
	put := func(l twin.Layer, name string, g orb.Geometry, props map[string]any) {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(l, name), Geometry: g, Props: twin.NewProps(props)}); err != nil {
			t.Fatal(err)
		}
	}
	put(twin.Buildings, "b1", building, map[string]any{"name": "解放碑大厦", "height_m": 120.5, "levels": 32,
		"high_rise": true, "risk_level": 2, "risk_color": "orange", "owners": []any{"Li Wei"},
		"nested": map[string]any{"x": 1}})
	put(twin.Buildings, "b2", farBuilding, map[string]any{"name": "far", "height_m": 12, "risk_level": 5, "risk_color": "green"})
	put(twin.Roads, "r1", orb.LineString{{106.560, 29.559}, {106.575, 29.561}, {106.590, 29.563}},
		map[string]any{"name": "Minzu Road", "class": "primary", "oneway": true})
	put(twin.Roads, "r2", orb.LineString{{106.565, 29.555}, {106.566, 29.565}},
		map[string]any{"name": "lane", "class": "residential", "oneway": false})
	put(twin.Bridges, "qiansimen", orb.LineString{{106.5800, 29.5700}, {106.5850, 29.5780}},
		map[string]any{"name": "Qiansimen Bridge", "restrictions": map[string]any{"muck_truck": "forbidden 07:00-09:00"}})
	put(twin.Vehicles, "BP2968", vehiclePos, map[string]any{"kind": "muck_truck", "plate": "渝BP2968", "speed_kmh": 32.5, "heading": 90})
	put(twin.Devices, "gas-1", orb.Point{106.5705, 29.5604}, map[string]any{"kind": "septic_gas", "attached_to": "buildings/b1",
		"status": "ok", "values": map[string]any{"ch4": 0.8, "h2s": 2.0}})
	put(twin.Regions, "500103", orb.Polygon{{{106.52, 29.53}, {106.60, 29.53}, {106.60, 29.58}, {106.52, 29.58}, {106.52, 29.53}}},
		map[string]any{"level": "district", "code": "500103", "name": "Yuzhong", "parent": "500000"})
	return tw
}

// demoCityTwin is a twin holding the scale-1 demo city (skipped with
// -short: generating it takes seconds).
func demoCityTwin(t *testing.T) *twin.Twin {
	t.Helper()
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	city, err := demo.Generate(demo.Options{NoGrids: true})
	if err != nil {
		t.Fatal(err)
	}
	tw := twin.New(twin.Options{FeedSize: 1 << 10})
	tw.Load(city.All())
	return tw
}

// get performs a request against h and returns the recorder.
func get(t testing.TB, h http.Handler, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
