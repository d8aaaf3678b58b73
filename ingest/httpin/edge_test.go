package httpin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// TestEntityRefusesBadText: a string the store cannot hold never reaches
// the twin, whatever prop or name carries it (issue 11 item 1).
func TestEntityRefusesBadText(t *testing.T) {
	f := newFixture(t, Options{})
	for _, c := range []struct{ path, body, want string }{
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":null,"properties":{"note":"a\u0000b"}}`, "bad properties"},
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":null,"properties":{"a\u0000":1}}`, "bad properties"},
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":null,"properties":{"l":[{"deep":["\u0000"]}]}}`, "bad properties"},
		{"/api/entities/vehicles/%FF%FE", `{"type":"Feature","geometry":null,"properties":{}}`, "bad object name"},
		{"/api/entities/vehicles/a%00b", `{"type":"Feature","geometry":null,"properties":{}}`, "bad object name"},
	} {
		code, b := f.do(t, "PUT", c.path, c.body)
		if code != http.StatusBadRequest || !strings.Contains(string(b), c.want) {
			t.Errorf("PUT %s %s: %d %s, want 400 %q", c.path, c.body, code, b, c.want)
		}
	}
	if f.tw.Len() != 0 {
		t.Fatalf("refused PUTs stored %d objects", f.tw.Len())
	}
}

// TestEntityDegenerateGeometry: a point of fewer than two numbers is an
// error, not (0,0); a polygon of fewer than three distinct points is
// refused (issue 11 item 18).
func TestEntityDegenerateGeometry(t *testing.T) {
	f := newFixture(t, Options{})
	p := "[106.6,29.6]"
	for _, c := range []struct{ geom, want string }{
		{`{"type":"Point","coordinates":[]}`, "0 number"},
		{`{"type":"Point","coordinates":[106.6]}`, "1 number"},
		{`{"type":"Polygon","coordinates":[[` + strings.Repeat(p+",", 3) + p + `]]}`, "distinct points"},
		{`{"type":"Polygon","coordinates":[[[106.6,29.6],[106.7,29.6],[106.8,29.6],[106.6,29.6]]]}`, "self-intersecting"},
	} {
		code, b := f.do(t, "PUT", "/api/entities/buildings/b", `{"type":"Feature","geometry":`+c.geom+`,"properties":{}}`)
		if code != http.StatusBadRequest || !strings.Contains(string(b), c.want) {
			t.Errorf("PUT %s: %d %s, want 400 %q", c.geom, code, b, c.want)
		}
	}
	if f.tw.Len() != 0 {
		t.Fatalf("refused PUTs stored %d objects", f.tw.Len())
	}
}

// polygonJSON is a simple polygon of n vertices (a many-pointed star)
// around lon, lat.
func polygonJSON(n int, lon, lat float64) string {
	var b strings.Builder
	b.WriteString(`{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[`)
	for i := 0; i <= n; i++ {
		a := 2 * math.Pi * float64(i%n) / float64(n)
		r := 0.01
		if i%2 == 1 {
			r = 0.005
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "[%.9f,%.9f]", lon+r*math.Cos(a), lat+r*math.Sin(a))
	}
	b.WriteString(`]]}}`)
	return b.String()
}

// TestEntityLargeGeometry: the vertex cap and the scope check come before
// the validity check; a large valid polygon within the cap is accepted.
func TestEntityLargeGeometry(t *testing.T) {
	f := newFixture(t, Options{MaxBody: 16 << 20, MaxVertices: 1000})
	code, b := f.do(t, "PUT", "/api/entities/buildings/big", polygonJSON(1200, 106.6, 29.6))
	if code != http.StatusBadRequest || !strings.Contains(string(b), "max_vertices") {
		t.Fatalf("over the cap: %d %s", code, b)
	}
	if code, b := f.do(t, "PUT", "/api/entities/buildings/ok", polygonJSON(998, 106.6, 29.6)); code != http.StatusCreated {
		t.Fatalf("within the cap: %d %s", code, b)
	}
	// A scoped token placing a shape in another district: 403 from the
	// representative point, whatever the shape's validity.
	f.princ = &auth.Principal{Role: auth.Operator, Region: "500105"}
	bowtie := `{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[106.3,29.5],[106.4,29.6],[106.4,29.5],[106.3,29.6],[106.3,29.5]]]}}`
	if code, b := f.do(t, "PUT", "/api/entities/buildings/west", bowtie); code != http.StatusForbidden {
		t.Fatalf("foreign invalid polygon: %d %s, want 403 before the validity check", code, b)
	}
	if n := DefaultMaxVertices; New(f.tw, f.st, Options{}).opts.MaxVertices != n {
		t.Fatalf("default MaxVertices is not %d", n)
	}
}

// TestTelemetryRefusesBadText: NUL or invalid UTF-8 in a reading's name or
// the id, too many readings, and timestamps before 2000 are per-line
// errors and dead letters; the rest of the body is applied.
func TestTelemetryRefusesBadText(t *testing.T) {
	f := newFixture(t, Options{})
	f.do(t, "PUT", "/api/entities/devices/d1", `{"type":"Feature","geometry":null}`)
	many := func(from, n int) string {
		var parts []string
		for i := from; i < from+n; i++ {
			parts = append(parts, fmt.Sprintf(`"r%d":%d`, i, i))
		}
		return `{` + strings.Join(parts, ",") + `}`
	}
	body := strings.Join([]string{
		`{"id":"d1","ts":"2026-03-01T01:00:00Z","values":{"\u0000":1}}`,
		`{"id":"d1","ts":"2026-03-01T01:00:01Z","values":{"` + "\xff" + `":1}}`,
		`{"id":"d\u0000","ts":"2026-03-01T01:00:02Z"}`,
		`{"id":"d1","ts":"0000-01-01T00:00:00Z","values":{"a":1}}`,
		`{"id":"d1","ts":"2026-03-01T01:00:03Z","values":` + many(0, 65) + `}`,
		`{"id":"d1","ts":"2026-03-01T01:00:04Z","values":` + many(0, 60) + `}`,
		`{"id":"d1","ts":"2026-03-01T01:00:05Z","values":` + many(100, 5) + `}`,
		`{"id":"d1","ts":"2026-03-01T01:00:06Z","values":{"ok":1}}`,
	}, "\n")
	code, b := f.do(t, "POST", "/api/telemetry", body)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var resp TelemetryResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	want := []string{"bad_text", "bad_text", "bad_text", "bad_ts", "too_many_values", "", "too_many_values", ""}
	if len(resp.Results) != len(want) {
		t.Fatalf("results %+v", resp.Results)
	}
	for i, w := range want {
		if r := resp.Results[i]; r.Reason != w || (w == "") != (r.Outcome == "applied") {
			t.Errorf("line %d: %+v, want reason %q", i+1, r, w)
		}
	}
	if len(f.dead) != 6 {
		t.Errorf("dead letters %v, want 6", f.dead)
	}
	d, _ := f.tw.Get(twin.NewID(twin.Devices, "d1"))
	if n := len(d.Props.Get("values").(map[string]any)); n != 61 {
		t.Errorf("device holds %d readings, want 61", n)
	}
}

// FuzzPutEntityBody: whatever the body, PUT /api/entities answers a JSON
// error or stores an object whose props and geometry pass the twin's
// checks and encode; never a 5xx.
func FuzzPutEntityBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]},"properties":{"kind":"muck_truck"}}`,
		`{"type":"Feature","geometry":null,"properties":{"a":"\u0000"}}`,
		`{"type":"Feature","geometry":{"type":"Point","coordinates":[]},"properties":{}}`,
		`{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]},"properties":{}}`,
		`{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[0,0],[0,0],[0,0]]]},"properties":{"l":[1,{"b":null}]}}`,
		`{"type":"Feature","id":"vehicles/x","geometry":{"type":"MultiPolygon","coordinates":[]}}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	tw := twin.New(twin.Options{Enricher: regionEnricher{}, Logger: quietLogger()})
	api := New(tw, &histStore{}, Options{Enricher: regionEnricher{}, Logger: quietLogger(), MaxVertices: 2000})
	admin := auth.Principal{Subject: "fuzz", Role: auth.Admin, Region: auth.CityCode}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPut, "/api/entities/buildings/x", strings.NewReader(string(body)))
		req.SetPathValue("layer", "buildings")
		req.SetPathValue("name", "x")
		req = req.WithContext(auth.WithPrincipal(req.Context(), admin))
		rec := httptest.NewRecorder()
		api.PutEntity(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusCreated:
			ft, ok := tw.Get(twin.NewID(twin.Buildings, "x"))
			if !ok {
				t.Fatalf("%d but nothing stored", rec.Code)
			}
			if err := twin.ValidProps(ft.Props); err != nil {
				t.Fatalf("stored props: %v", err)
			}
			if ft.Geometry != nil {
				if err := twin.ValidGeometry(ft.Geometry); err != nil {
					t.Fatalf("stored geometry: %v", err)
				}
			}
			if _, err := json.Marshal(ft); err != nil {
				t.Fatalf("stored object does not encode: %v", err)
			}
		case http.StatusBadRequest, http.StatusConflict, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("%d with a body that is not a JSON error: %q", rec.Code, rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
