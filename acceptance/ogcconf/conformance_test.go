package ogcconf

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// The layers of CONTRACT §2 that the demo city fills.
var layers = []string{"regions", "grids", "rivers", "roads", "bridges", "buildings", "devices", "vehicles", "workers", "incidents", "alerts"}

const (
	geoJSON        = "application/geo+json"
	openAPI        = "application/vnd.oai.openapi+json;version=3.0"
	relQueryables  = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
	confCore       = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
	confGeoJSON    = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
	confOAS30      = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30"
	confQueryables = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables"
	confFilter     = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter"
	confCQL2Text   = "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text"
	confBasicCQL2  = "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"
)

type link struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
	Type string `json:"type"`
}

// find returns the href of the link with rel (and type, when given).
func find(links []link, rel, typ string) (string, bool) {
	for _, l := range links {
		if l.Rel == rel && (typ == "" || l.Type == typ) {
			return l.Href, true
		}
	}
	return "", false
}

type feature struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Updated  string          `json:"updated"`
	Geometry json.RawMessage `json:"geometry"`
	Props    map[string]any  `json:"properties"`
}

type featureCollection struct {
	Type           string    `json:"type"`
	Features       []feature `json:"features"`
	NumberMatched  *int      `json:"numberMatched"`
	NumberReturned *int      `json:"numberReturned"`
	Links          []link    `json:"links"`
}

type collection struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Links       []link `json:"links"`
	Extent      struct {
		Spatial *struct {
			BBox [][]float64 `json:"bbox"`
		} `json:"spatial"`
		Temporal *struct {
			Interval [][]*string `json:"interval"`
		} `json:"temporal"`
	} `json:"extent"`
}

// items fetches one items page and checks the shape every page must have
// (/req/geojson/content, /req/core/fc-response, numberReturned).
func items(t *testing.T, want int, path string) featureCollection {
	t.Helper()
	r := get(t, want, path)
	var fc featureCollection
	if want != http.StatusOK {
		var e struct{ Error string }
		r.json(t, &e)
		if e.Error == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d without the JSON error body: %s", path, r.status, r.body)
		}
		return fc
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, geoJSON) {
		t.Fatalf("GET %s: Content-Type %q, want %s", path, ct, geoJSON)
	}
	r.json(t, &fc)
	if fc.Type != "FeatureCollection" || fc.NumberReturned == nil || *fc.NumberReturned != len(fc.Features) || fc.NumberMatched == nil {
		t.Fatalf("GET %s: not a complete FeatureCollection: type %q, numberReturned %v of %d, numberMatched %v",
			path, fc.Type, fc.NumberReturned, len(fc.Features), fc.NumberMatched)
	}
	for _, f := range fc.Features {
		if f.Type != "Feature" || f.ID == "" {
			t.Fatalf("GET %s: feature %+v", path, f)
		}
	}
	return fc
}

// all pages through a query by its next links (/req/core/fc-next-1) and
// returns every feature, checking that no id repeats and that the count
// is numberMatched.
func all(t *testing.T, path string) []feature {
	t.Helper()
	var out []feature
	seen := map[string]bool{}
	matched := -1
	for next := path; next != ""; {
		page := items(t, http.StatusOK, next)
		if matched < 0 {
			matched = *page.NumberMatched
		} else if *page.NumberMatched != matched {
			t.Fatalf("%s: numberMatched changed from %d to %d while paging", path, matched, *page.NumberMatched)
		}
		for _, f := range page.Features {
			if seen[f.ID] {
				t.Fatalf("%s: %s on two pages", path, f.ID)
			}
			seen[f.ID] = true
		}
		out = append(out, page.Features...)
		next, _ = find(page.Links, "next", geoJSON)
		if next != "" && len(page.Features) == 0 {
			t.Fatalf("%s: empty page with a next link", path)
		}
	}
	if len(out) != matched {
		t.Fatalf("%s: paged %d features, numberMatched %d", path, len(out), matched)
	}
	return out
}

// Part 1 /conf/core: landing page (/req/core/root-success), API definition
// (/req/core/api-definition-success, /req/oas30/...), conformance
// (/req/core/conformance-success).
func TestLandingAPIAndConformance(t *testing.T) {
	var landing struct {
		Title string `json:"title"`
		Links []link `json:"links"`
	}
	get(t, http.StatusOK, "/ogc").json(t, &landing)
	for _, want := range []struct{ rel, typ string }{
		{"self", "application/json"}, {"service-desc", openAPI}, {"service-doc", "text/html"},
		{"conformance", "application/json"}, {"data", "application/json"},
	} {
		if _, ok := find(landing.Links, want.rel, want.typ); !ok {
			t.Errorf("landing page has no %s link of type %s: %+v", want.rel, want.typ, landing.Links)
		}
	}

	desc, _ := find(landing.Links, "service-desc", openAPI)
	r := get(t, http.StatusOK, desc)
	if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "application/vnd.oai.openapi+json") || !strings.Contains(ct, "version=3.0") {
		t.Errorf("API definition Content-Type %q", ct)
	}
	var api struct {
		OpenAPI string `json:"openapi"`
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
		Paths map[string]map[string]struct {
			Parameters []map[string]any `json:"parameters"`
		} `json:"paths"`
		Components struct {
			Parameters map[string]map[string]any `json:"parameters"`
		} `json:"components"`
	}
	r.json(t, &api)
	if !strings.HasPrefix(api.OpenAPI, "3.0.") || len(api.Servers) != 1 || api.Servers[0].URL != demo.url+"/ogc" {
		t.Fatalf("API definition: openapi %q, servers %+v", api.OpenAPI, api.Servers)
	}
	// Every documented path answers, and every route answers a documented
	// path: the definition is made from the routes.
	for path, item := range api.Paths {
		if _, ok := item["get"]; !ok {
			t.Errorf("%s: no GET", path)
		}
		concrete := strings.NewReplacer("{collectionId}", "bridges", "{featureId}", "qiansimen").Replace(path)
		if path == "/" {
			concrete = ""
		}
		get(t, http.StatusOK, "/ogc"+concrete)
	}
	for _, p := range []string{"/", "/api", "/conformance", "/collections", "/collections/{collectionId}", "/collections/{collectionId}/queryables",
		"/collections/{collectionId}/items", "/collections/{collectionId}/items/{featureId}"} {
		if _, ok := api.Paths[p]; !ok {
			t.Errorf("API definition lacks %s", p)
		}
	}
	// The items parameters, with limit's bounds (/req/core/fc-limit-definition).
	limit := api.Components.Parameters["limit"]
	schema, _ := limit["schema"].(map[string]any)
	if limit["in"] != "query" || schema["minimum"] != 1.0 || schema["maximum"] == nil || schema["default"] == nil {
		t.Errorf("limit parameter: %+v", limit)
	}
	for _, l := range layers {
		names := map[string]bool{}
		for _, p := range api.Paths["/collections/"+l+"/items"]["get"].Parameters {
			if ref, ok := p["$ref"].(string); ok {
				p = api.Components.Parameters[ref[strings.LastIndex(ref, "/")+1:]]
			}
			names[fmt.Sprint(p["name"])] = true
		}
		for _, want := range []string{"bbox", "datetime", "limit", "filter", "filter-lang", "id"} {
			if !names[want] {
				t.Errorf("/collections/%s/items does not document %s (has %v)", l, want, names)
			}
		}
	}
	doc, _ := find(landing.Links, "service-doc", "text/html")
	if r := get(t, http.StatusOK, doc); !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), "/collections/{collectionId}/items") {
		t.Errorf("service-doc: %s %.200s", r.header.Get("Content-Type"), r.body)
	}

	var conf struct {
		ConformsTo []string `json:"conformsTo"`
	}
	get(t, http.StatusOK, "/ogc/conformance").json(t, &conf)
	for _, c := range []string{confCore, confGeoJSON, confOAS30, confQueryables, confFilter, confCQL2Text, confBasicCQL2} {
		if !contains(conf.ConformsTo, c) {
			t.Errorf("conformance lacks %s: %v", c, conf.ConformsTo)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// Part 1 /req/core/fc-md-*, /req/core/sfc-md-*: the collections, their
// links and extents; Part 3 /req/queryables/get-queryables-uris.
func TestCollections(t *testing.T) {
	var cols struct {
		Links       []link       `json:"links"`
		Collections []collection `json:"collections"`
	}
	get(t, http.StatusOK, "/ogc/collections").json(t, &cols)
	if _, ok := find(cols.Links, "self", ""); !ok {
		t.Error("collections without a self link")
	}
	byID := map[string]collection{}
	for _, c := range cols.Collections {
		byID[c.ID] = c
	}
	for _, l := range layers {
		c, ok := byID[l]
		if !ok {
			t.Errorf("no collection %s", l)
			continue
		}
		var one collection
		get(t, http.StatusOK, "/ogc/collections/"+l).json(t, &one)
		if one.ID != l {
			t.Errorf("/collections/%s has id %q", l, one.ID)
		}
		for _, rel := range []string{"self", "items", relQueryables, "describedBy"} {
			href, ok := find(c.Links, rel, "")
			if !ok {
				t.Errorf("%s: no %s link", l, rel)
				continue
			}
			get(t, http.StatusOK, href)
		}
		if !strings.Contains(c.Description, "datetime") {
			t.Errorf("%s: the description does not say what time the features carry: %q", l, c.Description)
		}
		if sp := c.Extent.Spatial; sp != nil {
			b := sp.BBox[0]
			if len(b) != 4 || b[0] > b[2] || b[1] > b[3] || b[0] < 105 || b[2] > 108 || b[1] < 28 || b[3] > 31 {
				t.Errorf("%s: spatial extent %v is not the Chongqing demo", l, b)
			}
		} else if l != "incidents" && l != "alerts" {
			t.Errorf("%s: no spatial extent", l)
		}
	}
	get(t, http.StatusNotFound, "/ogc/collections/nope")
	get(t, http.StatusNotFound, "/ogc/collections/nope/items")
	get(t, http.StatusNotFound, "/ogc/collections/nope/queryables")
}

// Part 1 /req/core/fc-op, fc-response, fc-links, fc-next-*, fc-limit-*:
// every collection pages to its end by next links; limit's bounds.
func TestItemsPagingAndLimit(t *testing.T) {
	for _, l := range []string{"bridges", "rivers", "vehicles", "workers", "regions"} {
		fs := all(t, "/ogc/collections/"+l+"/items?limit=97")
		if len(fs) == 0 {
			t.Errorf("%s: no features", l)
		}
		for _, f := range fs {
			if !strings.HasPrefix(f.ID, l+"/") {
				t.Errorf("%s: id %q is not {layer}/{name}", l, f.ID)
			}
		}
	}
	// The devices page to the end at the default limit (10) too.
	if n := len(all(t, "/ogc/collections/devices/items?kind=camera")); n != 326 {
		t.Errorf("cameras: %d, want the demo's 326", n)
	}
	page := items(t, http.StatusOK, "/ogc/collections/buildings/items")
	if len(page.Features) != 10 {
		t.Errorf("default limit: %d features, want 10", len(page.Features))
	}
	if _, ok := find(page.Links, "self", geoJSON); !ok {
		t.Error("items page without a self link")
	}
	page = items(t, http.StatusOK, "/ogc/collections/buildings/items?limit=1000000")
	if len(page.Features) > 10000 || len(page.Features) == 0 {
		t.Errorf("limit above the maximum: %d features, want at most 10000", len(page.Features))
	}
	for _, bad := range []string{"limit=0", "limit=-1", "limit=ten", "offset=-1"} {
		items(t, http.StatusBadRequest, "/ogc/collections/buildings/items?"+bad)
	}
	// /req/core/f-op: one feature by name and by its full id.
	var f feature
	get(t, http.StatusOK, "/ogc/collections/bridges/items/qiansimen").json(t, &f)
	if f.ID != "bridges/qiansimen" {
		t.Errorf("item id %q", f.ID)
	}
	get(t, http.StatusOK, "/ogc/collections/bridges/items/"+url.PathEscape("bridges/qiansimen"))
	get(t, http.StatusNotFound, "/ogc/collections/bridges/items/nope")
}

// Part 1 /req/core/query-param-unknown, query-param-invalid: a parameter
// an endpoint does not take is a 400 with the JSON error body; property
// filters only for queryables (Part 3 queryables-query-parameters).
func TestUnknownParameters(t *testing.T) {
	for _, q := range []string{"foo=bar", "sortby=name", "sortby=", "properties=name", "properties=", "crs=" + url.QueryEscape("http://www.opengis.net/def/crs/EPSG/0/4326"),
		"f=xyz", "f=html", "bbox-crs=" + url.QueryEscape("http://www.opengis.net/def/crs/EPSG/0/3857") + "&bbox=0,0,1,1",
		"filter-lang=cql2-json&filter=TRUE", "resultType=hits"} {
		items(t, http.StatusBadRequest, "/ogc/collections/devices/items?"+q)
	}
	for _, path := range []string{"/ogc?foo=1", "/ogc/conformance?f=xml", "/ogc/collections?limit=1", "/ogc/collections/devices?bbox=0,0,1,1",
		"/ogc/collections/devices/queryables?x=1", "/ogc/collections/bridges/items/qiansimen?limit=1", "/ogc/api?f=yaml"} {
		items(t, http.StatusBadRequest, path)
	}
	for _, q := range []string{"f=json", "f=geojson", "kind=camera", "status=online", "attached_to=nope", "values.ch4=0.5", "id=devices/x"} {
		items(t, http.StatusOK, "/ogc/collections/devices/items?"+q)
	}
	cams := items(t, http.StatusOK, "/ogc/collections/devices/items?kind=camera&limit=1000")
	if *cams.NumberMatched != 326 {
		t.Errorf("kind=camera matched %d", *cams.NumberMatched)
	}
	for _, f := range cams.Features {
		if f.Props["kind"] != "camera" {
			t.Fatalf("kind=camera returned %s of kind %v", f.ID, f.Props["kind"])
		}
	}
}

// Part 3 /req/queryables: JSON Schema, listing every prop the items carry
// with its type.
func TestQueryables(t *testing.T) {
	for _, l := range layers {
		r := get(t, http.StatusOK, "/ogc/collections/"+l+"/queryables")
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/schema+json") {
			t.Errorf("%s queryables: Content-Type %q", l, ct)
		}
		var q struct {
			Schema     string                    `json:"$schema"`
			ID         string                    `json:"$id"`
			Type       string                    `json:"type"`
			Properties map[string]map[string]any `json:"properties"`
		}
		r.json(t, &q)
		if !strings.Contains(q.Schema, "json-schema.org") || q.Type != "object" || q.ID == "" {
			t.Errorf("%s queryables: not a JSON Schema object: %s %s %s", l, q.Schema, q.Type, q.ID)
		}
		for _, m := range []string{"id", "geometry", "version", "updated"} {
			if _, ok := q.Properties[m]; !ok {
				t.Errorf("%s queryables lack %s", l, m)
			}
		}
		if f := q.Properties["geometry"]["format"]; !strings.HasPrefix(fmt.Sprint(f), "geometry-") {
			t.Errorf("%s: geometry format %v", l, f)
		}
		if l == "buildings" || l == "grids" {
			continue // large: the devices below carry the varied props
		}
		for _, f := range all(t, "/ogc/collections/"+l+"/items?limit=10000") {
			for k, v := range f.Props {
				s, ok := q.Properties[k]
				if !ok {
					t.Fatalf("%s: %s carries %s, which the queryables lack", l, f.ID, k)
				}
				if !typeFits(s["type"], v) {
					t.Fatalf("%s: %s.%s = %v does not fit the queryable type %v", l, f.ID, k, v, s["type"])
				}
			}
		}
	}
	// GDAL 3.6 asks for plain JSON; it gets the same document as such.
	r := get(t, http.StatusOK, "/ogc/collections/devices/queryables", "Accept", "application/geo+json, application/json")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("queryables for Accept: application/json: Content-Type %q", ct)
	}
}

func typeFits(typ any, v any) bool {
	switch v.(type) {
	case nil:
		return true
	case string:
		return typ == "string" || typ == nil
	case float64:
		return typ == "number" || typ == "integer" || typ == nil
	case bool:
		return typ == "boolean" || typ == nil
	case []any:
		return typ == "array" || typ == nil
	case map[string]any:
		return typ == "object" || typ == nil
	}
	return false
}

// Part 1 /req/core/fc-bbox-response: exact on the geometry (ogcx's
// differential test covers exactness); here the shape of the answers.
func TestBBox(t *testing.T) {
	box := "106.50,29.54,106.56,29.58"
	in := all(t, "/ogc/collections/vehicles/items?limit=1000&bbox="+box)
	every := all(t, "/ogc/collections/vehicles/items?limit=1000")
	if len(in) == 0 || len(in) >= len(every) {
		t.Errorf("bbox kept %d of %d vehicles", len(in), len(every))
	}
	for _, f := range in {
		var g struct{ Coordinates [2]float64 }
		if err := json.Unmarshal(f.Geometry, &g); err != nil {
			t.Fatal(err)
		}
		if p := g.Coordinates; p[0] < 106.50 || p[0] > 106.56 || p[1] < 29.54 || p[1] > 29.58 {
			t.Errorf("bbox returned %s at %v", f.ID, p)
		}
	}
	if six := all(t, "/ogc/collections/vehicles/items?limit=1000&bbox=106.50,29.54,-10,106.56,29.58,100"); len(six) != len(in) {
		t.Errorf("6-number bbox kept %d, the 4-number one %d", len(six), len(in))
	}
	if far := all(t, "/ogc/collections/vehicles/items?limit=1000&bbox=170,-10,-170,10"); len(far) != 0 {
		t.Errorf("a box across the antimeridian kept %d Chongqing vehicles", len(far))
	}
	for _, bad := range []string{"1,2,3", "a,b,c,d", "106.6,29.5,106.5,29.6,1,2,3", "0,100,1,101"} {
		items(t, http.StatusBadRequest, "/ogc/collections/vehicles/items?bbox="+bad)
	}
}

// Part 1 /req/core/fc-time-response: a feature whose time (updated) lies
// in the instant or interval is selected, and every feature without a time
// (B: datetime matches all features not associated with a temporal
// geometry); the same for instants, closed and both kinds of open
// intervals.
func TestDatetime(t *testing.T) {
	op := demo.token(t, "operator", "500000")
	name := fmt.Sprintf("ogcconf-%d", time.Now().UnixNano())
	body := `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.55,29.56]},"properties":{"kind":"patrol","plate":"OGC"}}`
	if r := do(t, http.MethodPut, "/api/entities/vehicles/"+name, op, strings.NewReader(body), "Content-Type", "application/json"); r.status/100 != 2 {
		t.Fatalf("PUT vehicle: %d %s", r.status, r.body)
	}
	var f feature
	get(t, http.StatusOK, "/ogc/collections/vehicles/items/"+name).json(t, &f)
	at, err := time.Parse(time.RFC3339Nano, f.Updated)
	if err != nil {
		t.Fatalf("the vehicle just put has no time: %q", f.Updated)
	}
	every := all(t, "/ogc/collections/vehicles/items?limit=1000")
	var untimed []string
	for _, v := range every {
		if v.Updated == "" {
			untimed = append(untimed, v.ID)
		}
	}
	sort.Strings(untimed)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	before, after := at.Add(-time.Hour), at.Add(time.Hour)
	old := "2000-01-01T00:00:00Z"
	for _, c := range []struct {
		datetime string
		withIt   bool
	}{
		{ts(at), true},                         // the instant itself
		{strings.ToLower(ts(at)), true},        // t and z in lower case (RFC 3339 §5.6)
		{old, false},                           // another instant
		{ts(before) + "/" + ts(after), true},   // closed, around it
		{old + "/2001-01-01T00:00:00Z", false}, // closed, long before
		{ts(before) + "/..", true},             // open end
		{ts(after) + "/..", false},             // open end, after it
		{"../" + ts(after), true},              // open start
		{"../" + old, false},                   // open start, long before
		{"/" + ts(after), true},                // open start, empty
		{ts(before) + "/", true},               // open end, empty
		{"../..", true},                        // every time
	} {
		fs := all(t, "/ogc/collections/vehicles/items?limit=1000&datetime="+url.QueryEscape(c.datetime))
		var got []string
		has := false
		for _, v := range fs {
			switch {
			case v.ID == "vehicles/"+name:
				has = true
			case v.Updated == "":
				got = append(got, v.ID)
			default:
				vt, _ := time.Parse(time.RFC3339Nano, v.Updated)
				if !inside(vt, c.datetime) {
					t.Errorf("datetime=%s returned %s of %s", c.datetime, v.ID, v.Updated)
				}
			}
		}
		sort.Strings(got)
		if has != c.withIt {
			t.Errorf("datetime=%s: the vehicle updated at %s selected: %v, want %v", c.datetime, f.Updated, has, c.withIt)
		}
		if strings.Join(got, ",") != strings.Join(untimed, ",") {
			t.Errorf("datetime=%s kept %d of the %d vehicles without a time", c.datetime, len(got), len(untimed))
		}
	}
	for _, bad := range []string{"yesterday", "2020-13-01T00:00:00Z", "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z", "..", "2020-01-01"} {
		items(t, http.StatusBadRequest, "/ogc/collections/vehicles/items?datetime="+url.QueryEscape(bad))
	}
	var c collection
	get(t, http.StatusOK, "/ogc/collections/vehicles").json(t, &c)
	if c.Extent.Temporal == nil || len(c.Extent.Temporal.Interval) != 1 || c.Extent.Temporal.Interval[0][1] == nil {
		t.Errorf("vehicles: no temporal extent though one has a time: %+v", c.Extent.Temporal)
	}
}

// inside reports whether t lies in a datetime parameter's instant or
// interval (a test oracle: RFC 3339 ends, .. or empty for open ones).
func inside(t time.Time, dt string) bool {
	a, b, interval := strings.Cut(strings.ToUpper(dt), "/")
	parse := func(s string) (time.Time, bool) {
		if s == "" || s == ".." {
			return time.Time{}, false
		}
		v, _ := time.Parse(time.RFC3339Nano, s)
		return v, true
	}
	from, hasFrom := parse(a)
	if !interval {
		return t.Equal(from)
	}
	to, hasTo := parse(b)
	return (!hasFrom || !t.Before(from)) && (!hasTo || !t.After(to))
}

// Part 3 /req/filter, /req/features-filter, CQL2 basic: a filter selects
// the same as the property filter; cql-text (GDAL 3.6's name) is the same
// language; unknown names and bad text are 400s.
func TestCQL2Filter(t *testing.T) {
	byProp := all(t, "/ogc/collections/devices/items?limit=1000&kind=camera")
	for _, q := range []string{
		"filter=" + url.QueryEscape("kind = 'camera'"),
		"filter=" + url.QueryEscape("kind = 'camera'") + "&filter-lang=cql2-text",
		"filter=" + url.QueryEscape("kind = 'camera'") + "&filter-lang=cql-text",
		"filter=" + url.QueryEscape("(kind = 'camera') AND (attached_to IS NULL)"),
		"filter=" + url.QueryEscape("kind IN ('camera') AND NOT (kind <> 'camera')"),
	} {
		got := all(t, "/ogc/collections/devices/items?limit=1000&"+q)
		if len(got) != len(byProp) {
			t.Errorf("%s matched %d, kind=camera %d", q, len(got), len(byProp))
		}
	}
	for _, bad := range []string{"nope = 1", "kind = ", "kind == 'x'", "S_INTERSECTS(geometry, POINT(1))"} {
		items(t, http.StatusBadRequest, "/ogc/collections/devices/items?filter="+url.QueryEscape(bad))
	}
	sw := all(t, "/ogc/collections/devices/items?limit=10000&filter="+url.QueryEscape("S_INTERSECTS(geometry, BBOX(106.50,29.54,106.56,29.58)) AND kind = 'camera'"))
	boxed := all(t, "/ogc/collections/devices/items?limit=10000&kind=camera&bbox=106.50,29.54,106.56,29.58")
	if len(sw) != len(boxed) {
		t.Errorf("S_INTERSECTS BBOX matched %d cameras, bbox= %d", len(sw), len(boxed))
	}
}
