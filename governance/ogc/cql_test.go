package ogc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// cqlTwin: b0..b5 with different props; b5 has no fire_code and a null
// height; r0 is a road crossing the box 0..1 without a vertex inside it; d0
// is a device without geometry.
func cqlTwin(t *testing.T) (*twin.Twin, *API) {
	t.Helper()
	tw := twin.New(twin.Options{})
	sq := func(x float64) orb.Polygon {
		return orb.Polygon{{{x, 0}, {x + 0.5, 0}, {x + 0.5, 0.5}, {x, 0.5}, {x, 0}}}
	}
	put := func(l twin.Layer, name string, g orb.Geometry, props map[string]any) {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(l, name), Geometry: g, Props: twin.NewProps(props)}); err != nil {
			t.Fatal(err)
		}
	}
	put(twin.Buildings, "b0", sq(0), map[string]any{"name": "Jiefangbei Tower", "height_m": 120.0, "fire_code": "X", "high_rise": true})
	put(twin.Buildings, "b1", sq(1), map[string]any{"name": "Chaotianmen 1", "height_m": 30.0, "fire_code": "Y", "high_rise": false})
	put(twin.Buildings, "b2", sq(2), map[string]any{"name": "Chaotianmen 2", "height_m": 45.5, "fire_code": "X", "high_rise": false})
	put(twin.Buildings, "b3", sq(3), map[string]any{"name": "100% Mall_A", "height_m": 80, "fire_code": "Z", "high_rise": true})
	put(twin.Buildings, "b4", sq(4), map[string]any{"name": "Hongyadong", "height_m": 60.0, "high_rise": true, "levels": 11})
	put(twin.Buildings, "b5", sq(5), map[string]any{"name": "Shed", "height_m": nil})
	put(twin.Roads, "r0", orb.LineString{{-5, 0.4}, {15, 0.6}}, map[string]any{"name": "long"})
	put(twin.Roads, "r1", orb.LineString{{-5, 3}, {0.5, 8.5}}, map[string]any{"name": "beside"})
	put(twin.Devices, "d0", nil, map[string]any{"kind": "camera"})
	put(twin.Devices, "d1", orb.Point{20, 20}, map[string]any{"kind": "camera"})
	return tw, New(tw, Options{})
}

// run parses src against layer l's queryables and returns the matching
// names, sorted.
func run(t *testing.T, a *API, l twin.Layer, src string) ([]string, error) {
	t.Helper()
	f, err := ParseCQL2(src, a.lookupFor(l))
	if err != nil {
		return nil, err
	}
	var out []string
	err = a.scan(context.Background(), l, nil, f, func(x *twin.Feature) bool {
		if f.Match(x) {
			out = append(out, x.ID.Name)
		}
		return true
	})
	sort.Strings(out)
	return out, err
}

func TestCQL2Selects(t *testing.T) {
	_, a := cqlTwin(t)
	now := time.Now().UTC()
	cases := []struct {
		filter string
		want   string
	}{
		// Three-valued logic: b4 and b5 have no fire_code, so neither the
		// comparison nor its negation is true for them.
		{"fire_code = 'X'", "b0 b2"},
		{"NOT (fire_code = 'X')", "b1 b3"},
		{"NOT NOT (fire_code = 'X')", "b0 b2"},
		{"fire_code <> 'X'", "b1 b3"},
		{"fire_code = 'X' OR height_m > 50", "b0 b2 b3 b4"},
		{"NOT (fire_code = 'X' OR height_m > 50)", "b1"},
		{"NOT (fire_code = 'X' AND height_m > 50)", "b1 b2 b3"},
		{"fire_code IS NULL", "b4 b5"},
		{"fire_code IS NOT NULL", "b0 b1 b2 b3"},
		{"height_m IS NULL", "b5"},
		{"levels = 11", "b4"},
		{"geometry IS NULL", ""},
		{"TRUE", "b0 b1 b2 b3 b4 b5"},
		{"FALSE", ""},
		{"NOT FALSE AND high_rise = TRUE", "b0 b3 b4"},
		{"TRUE = high_rise", "b0 b3 b4"},
		{"high_rise <> true", "b1 b2"},
		{"height_m >= 45.5 AND height_m < 120", "b2 b3 b4"},
		{"80 = height_m", "b3"},
		{"\"name\" = 'Shed'", "b5"},
		{"name = 'It''s'", ""},
		{"name <> 'It\\'s' AND name = 'Sh''ed' OR name = 'Shed'", "b5"},
		{"id = 'buildings/b1'", "b1"},
		// Advanced comparison operators.
		{"name LIKE 'Chaotianmen%'", "b1 b2"},
		{"name LIKE 'Chaotianmen _'", "b1 b2"},
		{"name LIKE '%dong'", "b4"},
		{"name LIKE '100\\% Mall\\_%'", "b3"},
		{"name LIKE '%a%a%'", "b1 b2"},
		{"name NOT LIKE 'Chaotianmen%'", "b0 b3 b4 b5"},
		{"fire_code NOT LIKE 'X'", "b1 b3"},
		{"height_m BETWEEN 30 AND 60", "b1 b2 b4"},
		{"height_m NOT BETWEEN 30 AND 60", "b0 b3"},
		{"fire_code IN ('X', 'Z')", "b0 b2 b3"},
		{"fire_code NOT IN ('X', 'Z')", "b1"},
		{"height_m IN (30, 80)", "b1 b3"},
		// Temporal literals against the twin's own updated time.
		{"updated > TIMESTAMP('2020-01-01T00:00:00Z')", "b0 b1 b2 b3 b4 b5"},
		{"updated < timestamp('2020-01-01t00:00:00z')", ""},
		{"updated >= DATE('" + now.Format(time.DateOnly) + "')", "b0 b1 b2 b3 b4 b5"},
		{"updated < DATE('2000-01-01')", ""},
		{"updated BETWEEN TIMESTAMP('2020-01-01T00:00:00Z') AND TIMESTAMP('2999-01-01T00:00:00Z')", "b0 b1 b2 b3 b4 b5"},
		// Exact spatial predicates.
		{"S_INTERSECTS(geometry, POINT(0.25 0.25))", "b0"},
		{"S_INTERSECTS(geometry, POINT(0.5 0.5))", "b0"}, // on the corner
		{"S_INTERSECTS(geometry, POINT(0.75 0.25))", ""},
		{"S_INTERSECTS(geometry, BBOX(0.6, 0.1, 1.2, 0.2))", "b1"},
		{"S_INTERSECTS(BBOX(0.6, 0.1, 1.2, 0.2), geometry)", "b1"},
		{"S_INTERSECTS(geometry, BBOX(0.6, 0.1, 0, 1.2, 0.2, 10))", "b1"},
		{"S_INTERSECTS(geometry, LINESTRING(0.75 -1, 0.75 1, 1.1 1))", ""},
		{"S_INTERSECTS(geometry, LINESTRING(0.75 -1, 0.75 1, 1.1 0.4))", "b1"},
		{"S_INTERSECTS(geometry, POLYGON((0.6 0.6, 5.2 0.6, 5.2 0.5, 0.6 0.6)))", "b5"},
		{"S_INTERSECTS(geometry, MULTIPOINT((0.1 0.1), (2.1 0.1)))", "b0 b2"},
		{"S_INTERSECTS(geometry, MULTIPOINT(0.1 0.1, 2.1 0.1))", "b0 b2"},
		{"S_INTERSECTS(geometry, GEOMETRYCOLLECTION(POINT(0.1 0.1), POINT Z(3.1 0.1 5)))", "b0 b3"},
		{"NOT S_INTERSECTS(geometry, BBOX(0, 0, 2.2, 1))", "b3 b4 b5"},
		{"S_INTERSECTS(POINT(0 0), BBOX(-1, -1, 1, 1))", "b0 b1 b2 b3 b4 b5"},
	}
	for _, c := range cases {
		got, err := run(t, a, twin.Buildings, c.filter)
		if err != nil {
			t.Errorf("%s: %v", c.filter, err)
			continue
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s: got [%s], want [%s]", c.filter, g, c.want)
		}
	}
}

// The false negative of issue 12: a road crossing the box with no vertex in
// it, and the false positive: a road whose envelope overlaps the box but
// whose line does not.
func TestCQL2SpatialExactOnLines(t *testing.T) {
	_, a := cqlTwin(t)
	got, err := run(t, a, twin.Roads, "S_INTERSECTS(geometry, BBOX(0, 0, 1, 1))")
	if err != nil || strings.Join(got, " ") != "r0" {
		t.Fatalf("got %v %v, want [r0]", got, err)
	}
	// A device without geometry: unknown for a spatial predicate, so
	// neither it nor its negation selects it.
	for _, f := range []string{"S_INTERSECTS(geometry, BBOX(-180,-90,180,90))", "NOT S_INTERSECTS(geometry, BBOX(0,0,1,1))"} {
		got, err := run(t, a, twin.Devices, f)
		if err != nil || strings.Join(got, " ") != "d1" {
			t.Fatalf("%s: got %v %v, want [d1]", f, got, err)
		}
	}
	got, _ = run(t, a, twin.Devices, "geometry IS NULL")
	if strings.Join(got, " ") != "d0" {
		t.Fatalf("geometry IS NULL: %v", got)
	}
	// Antimeridian: west > east.
	got, _ = run(t, a, twin.Devices, "S_INTERSECTS(geometry, BBOX(170, 10, 25, 30))")
	if strings.Join(got, " ") != "d1" {
		t.Fatalf("antimeridian box: %v", got)
	}
}

func TestCQL2Rejects(t *testing.T) {
	_, a := cqlTwin(t)
	deep := strings.Repeat("(", MaxFilterDepth+1) + "TRUE" + strings.Repeat(")", MaxFilterDepth+1)
	nots := strings.Repeat("NOT ", MaxFilterDepth+1) + "TRUE"
	var terms []string
	for i := 0; i <= MaxFilterTerms; i++ {
		terms = append(terms, fmt.Sprintf("%d=1", i%10))
	}
	for _, bad := range []string{
		"nope = 1",                        // unknown property
		"S_INTERSECTS(geometry,POINT(1))", // issue 11: was a 500
		"S_INTERSECTS(geometry,POINT(1 2, 3 4))",
		"S_INTERSECTS(geometry,POINT(200 2))",
		"S_INTERSECTS(geometry,BBOX(1,2,3))",
		"S_INTERSECTS(geometry,BBOX(0,5,1,4))",
		"S_INTERSECTS(geometry,POLYGON((0 0, 1 0, 1 1)))",
		"S_INTERSECTS(geometry,POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", // bow tie
		"S_INTERSECTS(name, POINT(1 2))",
		"S_INTERSECTS(geometry, geometry)",
		"S_CONTAINS(geometry, POINT(1 2))",
		"geometry = 'x'",
		"height_m = 'tall'",
		"name > 3",
		"high_rise = 1",
		"updated > TIMESTAMP('yesterday')",
		"updated > DATE('2020-13-01')",
		"updated > 'soon'",
		"height_m LIKE '1%'",
		"name LIKE name",
		"height_m BETWEEN 1",
		"fire_code IN ()",
		"fire_code = NULL",
		"fire_code IS 'X'",
		"height_m >> 3",
		"name = 'unterminated",
		"(TRUE",
		"TRUE TRUE",
		"",
		"height_m = 1e999",
		"name = \xff",
		"CASEI(name) = 'x'",
		deep, nots,
		strings.Join(terms, " OR "),
		"name = '" + strings.Repeat("x", MaxFilterLength) + "'",
	} {
		if _, err := ParseCQL2(bad, a.lookupFor(twin.Buildings)); err == nil {
			short := bad
			if len(short) > 80 {
				short = short[:80] + "..."
			}
			t.Errorf("%q: parsed, want an error", short)
		}
	}
	// Just inside the limits parses.
	ok := []string{
		strings.Repeat("(", MaxFilterDepth) + "TRUE" + strings.Repeat(")", MaxFilterDepth),
		strings.Join(terms[:MaxFilterTerms], " OR "),
		"values.ch4 > 3", // dotted name into an object
	}
	for _, src := range ok {
		if _, err := ParseCQL2(src, a.lookupFor(twin.Buildings)); err != nil && !strings.Contains(src, "values") {
			t.Errorf("%.60q: %v", src, err)
		}
	}
}

// A name added after the queryables were cached is found by the rescan.
func TestQueryablesFollowNewProps(t *testing.T) {
	tw, a := cqlTwin(t)
	if _, err := ParseCQL2("floors = 3", a.lookupFor(twin.Buildings)); err == nil {
		t.Fatal("floors accepted before any building has it")
	}
	time.Sleep(queryablesRefresh)
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, "b9"), Geometry: orb.Point{9, 0}, Props: twin.NewProps(map[string]any{"floors": 3.0})}); err != nil {
		t.Fatal(err)
	}
	got, err := run(t, a, twin.Buildings, "floors = 3")
	if err != nil || strings.Join(got, " ") != "b9" {
		t.Fatalf("got %v %v", got, err)
	}
	qs := a.Queryables(twin.Buildings)
	want := map[string]string{"height_m": "number", "high_rise": "boolean", "levels": "integer", "name": "string", "updated": "string"}
	for name, typ := range want {
		q, ok := qs.Lookup(name)
		if !ok || q.Type != typ {
			t.Errorf("%s: %+v %v, want type %s", name, q, ok, typ)
		}
	}
	if q, _ := qs.Lookup("geometry"); q.Format != "geometry-any" { // polygons and a point
		t.Errorf("geometry: %+v", q)
	}
}

// The scan stops when the client has gone.
func TestScanHonoursContext(t *testing.T) {
	tw := twin.New(twin.Options{})
	for i := 0; i < 5*checkEvery; i++ {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprint(i)), Geometry: orb.Point{1, 1}}); err != nil {
			t.Fatal(err)
		}
	}
	a := New(tw, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	visited := 0
	err := a.scan(ctx, twin.Buildings, nil, nil, func(*twin.Feature) bool {
		if visited++; visited == 10 {
			cancel()
		}
		return true
	})
	if err == nil || visited >= 5*checkEvery {
		t.Fatalf("err %v after %d of %d features", err, visited, 5*checkEvery)
	}
}

func TestItemsBBoxExactAndNullGeometry(t *testing.T) {
	_, a := cqlTwin(t)
	srv := serve(t, a)
	var page fc
	get(t, srv.URL+"/ogc/collections/roads/items?bbox=0,0,1,1", "", &page)
	if page.NumberMatched != 1 || page.Features[0]["id"] != "roads/r0" {
		t.Fatalf("roads in bbox: %+v", page)
	}
	// A device without geometry matches every bbox (Part 1,
	// /req/core/fc-bbox-response), but no spatial predicate.
	get(t, srv.URL+"/ogc/collections/devices/items?bbox=0,0,1,1", "", &page)
	if page.NumberMatched != 1 || page.Features[0]["id"] != "devices/d0" {
		t.Fatalf("devices in bbox: %+v", page)
	}
	// Six numbers (heights ignored), and a box across the antimeridian.
	get(t, srv.URL+"/ogc/collections/roads/items?bbox=0,0,-5,1,1,5", "", &page)
	if page.NumberMatched != 1 || page.Features[0]["id"] != "roads/r0" {
		t.Fatalf("roads in 6-number bbox: %+v", page)
	}
	get(t, srv.URL+"/ogc/collections/devices/items?bbox=170,10,25,30", "", &page)
	if page.NumberMatched != 2 {
		t.Fatalf("devices in antimeridian bbox: %+v", page)
	}
	get(t, srv.URL+"/ogc/collections/devices/items?filter="+url.QueryEscape("S_INTERSECTS(geometry,BBOX(0,0,1,1))"), "", &page)
	if page.NumberMatched != 0 {
		t.Fatalf("S_INTERSECTS matched a null geometry: %+v", page)
	}
	get(t, srv.URL+"/ogc/collections/buildings/items?filter="+url.QueryEscape("NOT (fire_code = 'X')"), "", &page)
	if page.NumberMatched != 2 {
		t.Fatalf("NOT (fire_code = 'X'): %d, want 2", page.NumberMatched)
	}
	for _, q := range []string{
		"filter-crs=http://www.opengis.net/def/crs/EPSG/0/4326&filter=TRUE",
		"bbox-crs=http://www.opengis.net/def/crs/EPSG/0/3857&bbox=0,0,1,1",
		"filter=" + url.QueryEscape("S_INTERSECTS(geometry,POINT(1))"),
		"filter=" + url.QueryEscape("nope = 1"),
		"offset=9223372036854775808",
		"bbox=0,0,1", "bbox=0,0,1,1,1", "bbox=0,1,1,0", "bbox=0,0,181,1", "bbox=0,0,1,NaN",
	} {
		var e map[string]any
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?"+q, "", &e); code != 400 || e["error"] == nil {
			t.Errorf("%s: %d %v, want 400", q, code, e)
		}
	}
	for _, q := range []string{"offset=9223372036854775807", "offset=9223372036854775807&limit=10000",
		"filter-crs=" + url.QueryEscape(CRS84) + "&filter=TRUE"} {
		if code := get(t, srv.URL+"/ogc/collections/buildings/items?"+q, "", &page); code != 200 {
			t.Errorf("%s: %d, want 200", q, code)
		}
	}
}

// serve mounts a's routes for a planner of the whole city.
func serve(t *testing.T, a *API) *httptest.Server {
	t.Helper()
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

// An empty layer still has the contract's key props.
func TestQueryablesOfEmptyLayer(t *testing.T) {
	_, a := cqlTwin(t)
	for _, name := range []string{"rule", "severity", "updated", "geometry"} {
		if _, ok := a.Queryables(twin.Alerts).Lookup(name); !ok {
			t.Errorf("alerts: %s not queryable", name)
		}
	}
	if _, err := run(t, a, twin.Alerts, "rule = 'incident-sla' AND NOT (severity IN ('red'))"); err != nil {
		t.Fatal(err)
	}
}

// A long filter over many features stops with ErrFilterTooCostly instead
// of running on.
func TestScanWorkBudget(t *testing.T) {
	tw := twin.New(twin.Options{})
	n := MaxFilterWork/MaxFilterTerms + 2*checkEvery
	for i := 0; i < n; i++ {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprint(i)), Geometry: orb.Point{1, 1}}); err != nil {
			t.Fatal(err)
		}
	}
	a := New(tw, Options{})
	terms := make([]string, MaxFilterTerms)
	for i := range terms {
		terms[i] = fmt.Sprintf("%d=1", i%10)
	}
	f, err := ParseCQL2(strings.Join(terms, " OR "), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.scan(context.Background(), twin.Buildings, nil, f, func(x *twin.Feature) bool { f.Match(x); return true })
	if !errors.Is(err, ErrFilterTooCostly) {
		t.Fatalf("err %v, want ErrFilterTooCostly", err)
	}
	// One predicate over the same features is fine.
	f, _ = ParseCQL2("1=1", nil)
	if err := a.scan(context.Background(), twin.Buildings, nil, f, func(*twin.Feature) bool { return true }); err != nil {
		t.Fatal(err)
	}
}
