package acceptance

import (
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/internal/pgtest"
)

const buildingsV1 = `{"type":"FeatureCollection","features":[
{"type":"Feature","id":"b1","properties":{"name":"Tower A","height_m":120},"geometry":{"type":"Polygon","coordinates":[[[106.55,29.56],[106.551,29.56],[106.551,29.561],[106.55,29.561],[106.55,29.56]]]}},
{"type":"Feature","id":"b2","properties":{"name":"Shop","height_m":9},"geometry":{"type":"Polygon","coordinates":[[[106.552,29.56],[106.553,29.56],[106.553,29.561],[106.552,29.561],[106.552,29.56]]]}}
]}`

// buildingsV2 changes b2's height: a re-import updates it in place.
const buildingsV2 = `{"type":"FeatureCollection","features":[
{"type":"Feature","id":"b1","properties":{"name":"Tower A","height_m":120},"geometry":{"type":"Polygon","coordinates":[[[106.55,29.56],[106.551,29.56],[106.551,29.561],[106.55,29.561],[106.55,29.56]]]}},
{"type":"Feature","id":"b2","properties":{"name":"Shop","height_m":12},"geometry":{"type":"Polygon","coordinates":[[[106.552,29.56],[106.553,29.56],[106.553,29.561],[106.552,29.561],[106.552,29.56]]]}}
]}`

// A camera surveyed in GCJ-02 (as Chinese map services give it).
const cameraGCJ = `{"type":"FeatureCollection","features":[{"type":"Feature","id":"cam1","properties":{"kind":"camera"},"geometry":{"type":"Point","coordinates":[106.555,29.557]}}]}`

// runTwin runs a twin subcommand and returns its combined output.
func runTwin(t testing.TB, wantOK bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(twinBin, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if (err == nil) != wantOK {
		t.Fatalf("twin %s: err %v, want ok=%v\n%s", strings.Join(args, " "), err, wantOK, out)
	}
	return string(out)
}

// TestImportThenServe: `twin import` loads GeoJSON (WGS84 and GCJ-02) into
// the store idempotently, and `twin serve` on that store serves it
// (CONTRACT §1); with PostGIS, `twin migrate` is idempotent and reversible.
func TestImportThenServe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1, v2, cam := write("b1.geojson", buildingsV1), write("b2.geojson", buildingsV2), write("cam.geojson", cameraGCJ)

	check := func(t *testing.T, store []string, o serveOpts) {
		runTwin(t, true, append(append([]string{"import"}, store...), "--layer", "buildings", v1)...)
		out := runTwin(t, true, append(append([]string{"import"}, store...), "--layer", "buildings", v1)...)
		if !strings.Contains(out, "imported 0") {
			t.Errorf("re-import of the same file imported something: %s", out)
		}
		runTwin(t, true, append(append([]string{"import"}, store...), "--layer", "buildings", v2)...)
		runTwin(t, true, append(append([]string{"import"}, store...), "--layer", "devices", "--crs", "gcj02", cam)...)
		runTwin(t, false, append(append([]string{"import"}, store...), filepath.Join(dir, "missing.geojson"))...)

		s := startServer(t, o)
		tok := s.token(t, "planner", "500000")
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/buildings/items?limit=100", tok, nil).json(t, &fc)
		got := map[string]feature{}
		for _, f := range fc.Features {
			got[f.ID] = f
		}
		if len(fc.Features) != 2 || got["buildings/b1"].ID == "" || got["buildings/b2"].ID == "" {
			t.Fatalf("buildings after three imports: %v, want b1 and b2 once each", ids(fc.Features))
		}
		if h := got["buildings/b2"].Props["height_m"]; h != 12.0 {
			t.Errorf("b2 height_m %v after re-import, want 12", h)
		}
		camF, ok := s.get(t, tok, "devices", "cam1")
		if !ok {
			t.Fatal("devices/cam1 not imported")
		}
		p := camF.point(t)
		// GCJ-02 is offset from WGS84 by a few hundred metres in Chongqing.
		dx := (p[0] - 106.555) * 111320 * math.Cos(29.557*math.Pi/180)
		dy := (p[1] - 29.557) * 110540
		if d := math.Hypot(dx, dy); d < 100 || d > 1000 {
			t.Errorf("cam1 at %v: %.0f m from its GCJ-02 input, want the GCJ-02 -> WGS84 shift (100..1000 m)", p, d)
		}
	}

	t.Run("embedded", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "var")
		check(t, []string{"--data", data}, serveOpts{data: data})
	})
	t.Run("postgis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping PostGIS import")
		}
		db := pgtest.New(t)
		runTwin(t, true, "migrate", "--db", db)
		runTwin(t, true, "migrate", "--db", db) // idempotent
		runTwin(t, true, "migrate", "--db", db, "--down", "1")
		runTwin(t, true, "migrate", "--db", db)
		check(t, []string{"--db", db}, serveOpts{db: db})
	})
	t.Run("lone feature", func(t *testing.T) {
		lone := write("lone.geojson", `{"type":"Feature","id":"cam2","properties":{"kind":"camera"},"geometry":{"type":"Point","coordinates":[106.55,29.56]}}`)
		runTwin(t, true, "import", "--data", filepath.Join(t.TempDir(), "var"), "--layer", "devices", lone)
	})
}
