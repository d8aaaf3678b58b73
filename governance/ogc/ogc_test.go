package ogc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// fixture: 25 buildings in street 500105002 and 5 in 500103001.
func fixture(t *testing.T) *httptest.Server {
	t.Helper()
	tw := twin.New(twin.Options{})
	for i := 0; i < 30; i++ {
		region := []string{"500000", "500105", "500105002"}
		lon := 106.55 + float64(i)*0.001
		if i >= 25 {
			region = []string{"500000", "500103", "500103001"}
		}
		f := &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprintf("b%03d", i)), Geometry: orb.Point{lon, 29.56},
			Props: twin.NewProps(map[string]any{"height_m": float64(10 + i), "high_rise": i%2 == 0, "name": fmt.Sprintf("B %d", i)})}
		if _, err := tw.Put(f); err != nil {
			t.Fatal(err)
		}
		// Region is computed by the enricher in the server; set it directly here.
		if _, _, err := tw.Update(f.ID, func(c *twin.Feature) (*twin.Feature, error) { c.Place = twin.NewPlace(region, c.Grid()); return c, nil }); err != nil {
			t.Fatal(err)
		}
	}
	a := New(tw, Options{})
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.Principal{Role: auth.Planner, Region: r.Header.Get("X-Region")}
		mux.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, region string, into any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Region", region)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if into != nil {
		if err := json.NewDecoder(res.Body).Decode(into); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return res.StatusCode
}

type fc struct {
	Type           string           `json:"type"`
	Features       []map[string]any `json:"features"`
	NumberMatched  int              `json:"numberMatched"`
	NumberReturned int              `json:"numberReturned"`
	Links          []link           `json:"links"`
}

func TestPagingUntilExhausted(t *testing.T) {
	srv := fixture(t)
	next := srv.URL + "/ogc/collections/buildings/items?limit=7"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		var page fc
		if code := get(t, next, "500000", &page); code != 200 {
			t.Fatalf("status %d", code)
		}
		if page.Type != "FeatureCollection" || page.NumberMatched != 30 || page.NumberReturned != len(page.Features) {
			t.Fatalf("page shape: %+v", page)
		}
		for _, f := range page.Features {
			id := f["id"].(string)
			if !strings.HasPrefix(id, "buildings/") || seen[id] {
				t.Fatalf("bad or repeated id %q", id)
			}
			seen[id] = true
		}
		next = ""
		for _, l := range page.Links {
			if l.Rel == "next" {
				next = l.Href
			}
		}
		pages++
	}
	if len(seen) != 30 || pages != 5 {
		t.Fatalf("saw %d features in %d pages", len(seen), pages)
	}
}

func TestScopeAndFilters(t *testing.T) {
	srv := fixture(t)
	var page fc
	get(t, srv.URL+"/ogc/collections/buildings/items?limit=100", "500105002", &page)
	if page.NumberMatched != 25 {
		t.Fatalf("street scope matched %d, want 25", page.NumberMatched)
	}
	if code := get(t, srv.URL+"/ogc/collections/buildings/items/b027", "500105002", nil); code != 404 {
		t.Fatalf("out-of-scope item: %d, want 404", code)
	}
	if code := get(t, srv.URL+"/ogc/collections/buildings/items/b001", "500105002", nil); code != 200 {
		t.Fatalf("in-scope item: %d", code)
	}
	get(t, srv.URL+"/ogc/collections/buildings/items?high_rise=true&limit=100", "500000", &page)
	if page.NumberMatched != 15 {
		t.Fatalf("property filter matched %d, want 15", page.NumberMatched)
	}
	get(t, srv.URL+"/ogc/collections/buildings/items?bbox=106.5495,29.55,106.5545,29.57", "500000", &page)
	if page.NumberMatched != 5 {
		t.Fatalf("bbox matched %d, want 5", page.NumberMatched)
	}
	q := "height_m >= 30 AND (high_rise = true OR name = 'B 21') AND S_INTERSECTS(geometry, BBOX(106.5,29.5,106.6,29.6))"
	get(t, srv.URL+"/ogc/collections/buildings/items?limit=100&filter="+urlEscape(q), "500000", &page)
	// heights 30..39 are i=20..29; high_rise even i: 20,22,24,26,28 plus i=21.
	if page.NumberMatched != 6 {
		t.Fatalf("cql2 matched %d, want 6", page.NumberMatched)
	}
	for _, bad := range []string{"bbox=1,2,3", "bbox=10,10,5,5", "limit=0", "filter=height_m%20%3E%3E%203", "datetime=yesterday"} {
		var e map[string]any
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?"+bad, "500000", &e); code != 400 || e["error"] == nil {
			t.Fatalf("%s: status %d body %v", bad, code, e)
		}
	}
	if code := get(t, srv.URL+"/ogc/collections/nope/items", "500000", nil); code != 404 {
		t.Fatalf("unknown collection %d", code)
	}
	var conf map[string][]string
	get(t, srv.URL+"/ogc/conformance", "500000", &conf)
	if len(conf["conformsTo"]) == 0 {
		t.Fatal("no conformance classes")
	}
}

func urlEscape(s string) string {
	r := strings.NewReplacer(" ", "%20", "'", "%27", ">", "%3E", "=", "%3D", "(", "%28", ")", "%29", ",", "%2C")
	return r.Replace(s)
}

// The API definition documents every mounted route and, per collection,
// the queryables as items parameters; each route refuses a parameter the
// definition does not list.
func TestAPIDefinitionFromRoutes(t *testing.T) {
	srv := fixture(t)
	var api struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Parameters []map[string]any `json:"parameters"`
		} `json:"paths"`
		Components struct {
			Parameters map[string]map[string]any `json:"parameters"`
		} `json:"components"`
	}
	if code := get(t, srv.URL+"/ogc/api", "500000", &api); code != 200 || !strings.HasPrefix(api.OpenAPI, "3.0") {
		t.Fatalf("/ogc/api: %d %q", code, api.OpenAPI)
	}
	a := New(twin.New(twin.Options{}), Options{})
	for _, rt := range a.Routes() {
		path := strings.TrimPrefix(strings.TrimPrefix(rt.Pattern, "GET "), "/ogc")
		if path == "" {
			path = "/"
		}
		item, ok := api.Paths[path]
		if !ok {
			t.Errorf("route %s is not in the API definition", rt.Pattern)
			continue
		}
		var params []string
		for _, p := range item["get"].Parameters {
			if ref, ok := p["$ref"].(string); ok {
				p = api.Components.Parameters[ref[strings.LastIndex(ref, "/")+1:]]
			}
			if p["in"] == "query" {
				params = append(params, p["name"].(string))
			}
		}
		concrete := strings.NewReplacer("{collectionId}", "buildings", "{featureId}", "b001").Replace(rt.Pattern[len("GET "):])
		var e map[string]any
		if code := get(t, srv.URL+concrete+"?nope=1", "500000", &e); code != 400 || e["error"] == nil {
			t.Errorf("%s?nope=1: %d %v, want 400", concrete, code, e)
		}
		if !contains(params, "f") {
			t.Errorf("%s: f not documented (%v)", path, params)
		}
	}
	var names []string
	for _, p := range api.Paths["/collections/buildings/items"]["get"].Parameters {
		if n, ok := p["name"].(string); ok {
			names = append(names, n)
		}
	}
	for _, want := range []string{"height_m", "high_rise", "name", "id", "updated"} {
		if !contains(names, want) {
			t.Errorf("buildings items do not document the queryable %s: %v", want, names)
		}
	}
	res, err := http.Get(srv.URL + "/ogc/api?f=html")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/ogc/api?f=html: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// Property filters take only queryable names; f takes only what the
// endpoint produces.
func TestParameterRules(t *testing.T) {
	srv := fixture(t)
	for _, q := range []string{"foo=bar", "sortby=name", "properties=", "crs=x", "f=xyz", "f=html", "floors=3"} {
		var e map[string]any
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?"+q, "500000", &e); code != 400 || e["error"] == nil {
			t.Errorf("%s: %d %v, want 400", q, code, e)
		}
	}
	for _, q := range []string{"f=json", "f=geojson", "height_m=10", "levels=3", "risk_color=red", "id=buildings/b001"} {
		var page fc
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?"+q, "500000", &page); code != 200 {
			t.Errorf("%s: %d, want 200", q, code)
		}
	}
	var page fc
	get(t, srv.URL+"/ogc/collections/buildings/items?id=buildings/b001", "500000", &page)
	if page.NumberMatched != 1 {
		t.Errorf("id=buildings/b001 matched %d", page.NumberMatched)
	}
}

// datetime: features without a time match every instant and interval
// (Part 1 /req/core/fc-time-response B); features with one only when it
// lies inside.
func TestDatetimeKeepsUntimed(t *testing.T) {
	srv := fixture(t) // Put stamps updated with the wall clock
	for _, c := range []struct {
		q    string
		want int
	}{
		{"datetime=2000-01-01T00:00:00Z", 0},
		{"datetime=2000-01-01T00:00:00Z/2001-01-01T00:00:00Z", 0},
		{"datetime=2000-01-01T00:00:00Z/..", 30},
		{"datetime=../2000-01-01T00:00:00Z", 0},
		{"datetime=../..", 30},
		{"datetime=2000-01-01t00:00:00z/", 30},
	} {
		var page fc
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?limit=100&"+c.q, "500000", &page); code != 200 || page.NumberMatched != c.want {
			t.Errorf("%s: %d matched %d, want %d", c.q, code, page.NumberMatched, c.want)
		}
	}
	tw := twin.New(twin.Options{})
	tw.Load([]*twin.Feature{{ID: twin.NewID(twin.Roads, "r1"), Geometry: orb.LineString{{1, 1}, {2, 2}}, Props: twin.NewProps(map[string]any{"name": "a"})}})
	a := New(tw, Options{})
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	for _, q := range []string{"datetime=2000-01-01T00:00:00Z", "datetime=2000-01-01T00:00:00Z/2001-01-01T00:00:00Z", "datetime=2000-01-01T00:00:00Z/..", "datetime=../2000-01-01T00:00:00Z"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/ogc/collections/roads/items?"+q, nil)
		mux.ServeHTTP(rec, req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{Role: auth.Planner, Region: auth.CityCode})))
		var page fc
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || page.NumberMatched != 1 {
			t.Errorf("%s: a road without a time matched %d (%v), want 1", q, page.NumberMatched, err)
		}
	}
}
