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
			Props: map[string]any{"height_m": float64(10 + i), "high_rise": i%2 == 0, "name": fmt.Sprintf("B %d", i)}}
		if _, err := tw.Put(f); err != nil {
			t.Fatal(err)
		}
		// Region is computed by the enricher in the server; set it directly here.
		tw.Update(f.ID, func(c *twin.Feature) (*twin.Feature, error) { c.Region = region; return c, nil })
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
