package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/sphere"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	h3 "github.com/uber/h3-go/v4"
)

var city = auth.Principal{Role: auth.Operator, Region: auth.CityCode}

// scatter puts n incidents uniformly over a 20 km box; odd ones in street
// 500105002, even ones in 500103001.
func scatter(tb testing.TB, n int) *twin.Twin {
	tb.Helper()
	tw := twin.New(twin.Options{FeedSize: 1024})
	rng := rand.New(rand.NewSource(1))
	fs := make([]*twin.Feature, n)
	for i := range fs {
		region := []string{"500000", "500103", "500103001"}
		if i%2 == 1 {
			region = []string{"500000", "500105", "500105002"}
		}
		pt := orb.Point{106.45 + rng.Float64()*0.2, 29.5 + rng.Float64()*0.18}
		fs[i] = &twin.Feature{ID: twin.NewID(twin.Incidents, fmt.Sprintf("i%07d", i)), Version: 1,
			Geometry: pt, Place: twin.NewPlace(region, ""),
			Props: twin.NewProps(map[string]any{"state": "reported", "type": "litter"})}
		fs[i].SetCell(uint64(h3.LatLngToCell(h3.NewLatLng(pt[1], pt[0]), 9)))
	}
	tw.Load(fs)
	return tw
}

func TestNearbyMatchesBruteForce(t *testing.T) {
	tw := scatter(t, 5000)
	a := New(tw, Options{})
	at := orb.Point{106.55, 29.58}
	street := auth.Principal{Role: auth.Field, Region: "500105002"}
	for _, p := range []auth.Principal{city, street} {
		hits := a.Nearby(p, twin.Incidents, at, 1500, 10)
		var want []float64
		tw.Range(twin.Incidents, func(f *twin.Feature) bool {
			if d := sphere.Distance(at, f.Geometry.(orb.Point)); d <= 1500 && p.Sees(f) {
				want = append(want, d)
			}
			return true
		})
		sort.Float64s(want)
		if len(want) > 10 {
			want = want[:10]
		}
		if len(hits) != len(want) || len(hits) == 0 {
			t.Fatalf("%s: got %d hits want %d", p.Region, len(hits), len(want))
		}
		for i, h := range hits {
			if h.DistanceM != want[i] || !p.Sees(h.F) {
				t.Fatalf("%s: hit %d at %.1f m, want %.1f", p.Region, i, h.DistanceM, want[i])
			}
		}
	}
}

func TestHandlers(t *testing.T) {
	tw := scatter(t, 2000)
	tw.Load([]*twin.Feature{{ID: twin.NewID(twin.Regions, "500105"), Version: 1, Place: twin.NewPlace([]string{"500000", "500105"}, ""),
		Props: twin.NewProps(map[string]any{"code": "500105", "name": "Jiangbei", "level": "district"})}})
	a := New(tw, Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/nearby", a.NearbyHandler)
	mux.HandleFunc("GET /api/h3", a.H3Handler)
	mux.HandleFunc("GET /api/regions/{code}/summary", a.SummaryHandler)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.Principal{Role: auth.Planner, Region: r.Header.Get("X-Region")}
		mux.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}))
	defer srv.Close()
	get := func(path, region string, into any) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("X-Region", region)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if into != nil {
			if err := json.NewDecoder(res.Body).Decode(into); err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
		}
		return res.StatusCode
	}
	var near struct {
		Features []struct {
			ID        string   `json:"id"`
			DistanceM float64  `json:"distance_m"`
			Region    []string `json:"region"`
		} `json:"features"`
	}
	if code := get("/api/nearby?layer=incidents&lon=106.55&lat=29.58&radius_m=2000&limit=5", "500105002", &near); code != 200 || len(near.Features) != 5 {
		t.Fatalf("nearby: %d %d", code, len(near.Features))
	}
	for i, f := range near.Features {
		if f.Region[2] != "500105002" || (i > 0 && f.DistanceM < near.Features[i-1].DistanceM) {
			t.Fatalf("nearby leak or order: %+v", near.Features)
		}
	}
	// Lighter answers: the same hits, in the same order.
	var light struct {
		Features []struct {
			ID         string         `json:"id"`
			DistanceM  float64        `json:"distance_m"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
		NumberReturned int `json:"numberReturned"`
	}
	if code := get("/api/nearby?layer=incidents&lon=106.55&lat=29.58&radius_m=2000&limit=5&properties=type,nope", "500105002", &light); code != 200 || light.NumberReturned != 5 {
		t.Fatalf("nearby properties=: %d %+v", code, light)
	}
	for i, f := range light.Features {
		if f.ID != near.Features[i].ID || f.DistanceM != near.Features[i].DistanceM || len(f.Properties) != 1 || f.Properties["type"] != "litter" {
			t.Fatalf("properties=type: %+v, full answer %+v", f, near.Features[i])
		}
	}
	light.Features = nil // decoding into the old maps would merge
	get("/api/nearby?layer=incidents&lon=106.55&lat=29.58&radius_m=2000&limit=5&properties=", "500105002", &light)
	if len(light.Features) != 5 || len(light.Features[0].Properties) != 0 {
		t.Fatalf("properties= (none): %+v", light.Features)
	}
	var ids struct {
		IDs        []string  `json:"ids"`
		DistancesM []float64 `json:"distances_m"`
	}
	if code := get("/api/nearby?layer=incidents&lon=106.55&lat=29.58&radius_m=2000&limit=5&format=ids", "500105002", &ids); code != 200 || len(ids.IDs) != 5 || len(ids.DistancesM) != 5 {
		t.Fatalf("format=ids: %d %+v", code, ids)
	}
	for i := range ids.IDs {
		if ids.IDs[i] != near.Features[i].ID || ids.DistancesM[i] != near.Features[i].DistanceM {
			t.Fatalf("format=ids %d: %s %.1f, full answer %s %.1f", i, ids.IDs[i], ids.DistancesM[i], near.Features[i].ID, near.Features[i].DistanceM)
		}
	}
	for _, bad := range []string{"lon=200&lat=29", "lat=29", "lon=106&lat=29&radius_m=-1", "lon=106&lat=29&limit=0", "layer=nope&lon=1&lat=1", "lon=106&lat=29&format=csv"} {
		if code := get("/api/nearby?"+bad, "500000", nil); code != 400 {
			t.Fatalf("%s: %d", bad, code)
		}
	}
	var agg struct {
		Cells []Cell `json:"cells"`
	}
	get("/api/h3?layer=incidents&res=7", "500105", &agg)
	total := 0
	for _, c := range agg.Cells {
		total += c.Count
	}
	if total != 1000 {
		t.Fatalf("h3 counts %d in scope, want 1000", total)
	}
	// GeoJSON cells: coordinates with at most 7 decimals (1 cm).
	var cells struct {
		Features []struct {
			Geometry struct {
				Coordinates [][][2]json.Number `json:"coordinates"`
			} `json:"geometry"`
		} `json:"features"`
	}
	if code := get("/api/h3?layer=incidents&res=7&format=geojson", "500105", &cells); code != 200 || len(cells.Features) == 0 {
		t.Fatalf("h3 geojson: %d, %d cells", code, len(cells.Features))
	}
	for _, c := range cells.Features {
		for _, pt := range c.Geometry.Coordinates[0] {
			for _, x := range pt {
				if _, frac, _ := strings.Cut(x.String(), "."); len(frac) > 7 {
					t.Fatalf("h3 cell coordinate %s has more than 7 decimals", x)
				}
			}
		}
	}
	var sum Summary
	if code := get("/api/regions/500105/summary", "500105", &sum); code != 200 || sum.IncidentsState["reported"] != 1000 || sum.Name != "Jiangbei" {
		t.Fatalf("summary: %d %+v", code, sum)
	}
	if code := get("/api/regions/500105/summary", "500103", nil); code != 404 {
		t.Fatalf("summary out of scope: %d", code)
	}
}

// BenchmarkNearby: k=10 among 1,000,000 incidents (CONTRACT §5 nearby).
func BenchmarkNearby1M(b *testing.B) {
	tw := scatter(b, 1_000_000)
	a := New(tw, Options{})
	rng := rand.New(rand.NewSource(2))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := orb.Point{106.45 + rng.Float64()*0.2, 29.5 + rng.Float64()*0.18}
		t0 := time.Now()
		if len(a.Nearby(city, twin.Incidents, at, 2000, 10)) != 10 {
			b.Fatal("fewer than 10")
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkH3Res8: whole-city aggregate of 50,000 objects at res 8.
func TestParentMatchesH3(t *testing.T) {
	c := h3.LatLngToCell(h3.NewLatLng(29.56, 106.55), 9)
	for res := 0; res <= 9; res++ {
		if got, want := hex.ParentOfValid(uint64(c), res), uint64(c.Parent(res)); got != want {
			t.Fatalf("res %d: %x want %x", res, got, want)
		}
	}
}

func BenchmarkH3Res8(b *testing.B) {
	tw := scatter(b, 50_000)
	a := New(tw, Options{})
	all := orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}
	for i := 0; i < b.N; i++ {
		a.Aggregate(city, twin.Incidents, 8, all, "")
	}
}

// BenchmarkH3Res8Million: whole-city aggregate of 1,000,000 objects (the
// scale-20 demo city's building count) at res 8.
func BenchmarkH3Res8Million(b *testing.B) {
	tw := scatter(b, 1_000_000)
	a := New(tw, Options{})
	all := orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Aggregate(city, twin.Incidents, 8, all, "")
	}
}

// BenchmarkNearbyHandler measures GET /api/nearby in process (no network):
// k=10 nearest and "within 500 m" (limit 1000) among 100k incidents, in
// the full GeoJSON answer and the lighter ones (issue 16 goal 3).
func BenchmarkNearbyHandler(b *testing.B) {
	tw := scatter(b, 100_000)
	a := New(tw, Options{})
	ctx := auth.WithPrincipal(context.Background(), city)
	for _, q := range []struct{ name, query string }{
		{"k10", "limit=10&radius_m=5000"},
		{"k10_ids", "limit=10&radius_m=5000&format=ids"},
		{"within500", "limit=1000&radius_m=500"},
		{"within500_props_state", "limit=1000&radius_m=500&properties=state"},
		{"within500_ids", "limit=1000&radius_m=500&format=ids"},
	} {
		b.Run(q.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/nearby?layer=incidents&lon=106.55&lat=29.58&"+q.query, nil).WithContext(ctx)
			w := &countingWriter{h: http.Header{}}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				w.n = 0
				a.NearbyHandler(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
			b.ReportMetric(float64(w.n), "bytes/answer")
		})
	}
}

// countingWriter is an http.ResponseWriter that counts the body's bytes.
type countingWriter struct {
	h    http.Header
	code int
	n    int
}

func (c *countingWriter) Header() http.Header         { return c.h }
func (c *countingWriter) WriteHeader(code int)        { c.code = code }
func (c *countingWriter) Write(b []byte) (int, error) { c.n += len(b); return len(b), nil }

// FuzzNearbyAnswer: whatever properties= and format= ask, the answer is a
// 200 with valid JSON (properties= names are echoed as JSON keys) or a 400.
func FuzzNearbyAnswer(f *testing.F) {
	tw := scatter(f, 200)
	tw.Load([]*twin.Feature{{ID: twin.NewID(twin.Incidents, "odd\u2028<&>\x01"), Version: 1, Place: twin.NewPlace([]string{"500000"}, ""),
		Geometry: orb.Point{106.55, 29.58}, Props: twin.NewProps(map[string]any{"a\"b": "<x>", "n": 1.5, "l": []any{"p", 2.0}, "m": map[string]any{"k": true}})}})
	a := New(tw, Options{})
	ctx := auth.WithPrincipal(context.Background(), city)
	f.Add("type,state", "")
	f.Add("", "ids")
	f.Add("a\"b,n,,l,m", "geojson")
	f.Fuzz(func(t *testing.T, props, format string) {
		q := url.Values{"layer": {"incidents"}, "lon": {"106.55"}, "lat": {"29.58"}, "radius_m": {"3000"}, "limit": {"50"},
			"properties": {props}, "format": {format}}
		req := httptest.NewRequest(http.MethodGet, "/api/nearby?"+q.Encode(), nil).WithContext(ctx)
		w := httptest.NewRecorder()
		a.NearbyHandler(w, req)
		switch w.Code {
		case http.StatusOK:
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("invalid JSON for properties=%q format=%q: %s", props, format, w.Body.String())
			}
		case http.StatusBadRequest:
			if format == "" || format == "geojson" || format == "ids" {
				t.Fatalf("format=%q refused: %s", format, w.Body.String())
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
	})
}
