package demo

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

var update = flag.Bool("update", false, "rewrite testdata/summary.json")

var (
	cityOnce sync.Once
	city1    *City
	cityErr  error
)

// defaultCity is generated once and shared by the read-only tests.
func defaultCity(t *testing.T) *City {
	t.Helper()
	cityOnce.Do(func() { city1, cityErr = Generate(Options{}) })
	if cityErr != nil {
		t.Fatal(cityErr)
	}
	return city1
}

// digest hashes every feature's id, coordinates (exact bits) and props
// (JSON, keys sorted), in load order.
func digest(t *testing.T, c *City) string {
	t.Helper()
	h := sha256.New()
	var buf [8]byte
	num := func(v float64) {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
		h.Write(buf[:])
	}
	for _, f := range c.All() {
		h.Write([]byte(f.ID.String()))
		switch g := f.Geometry.(type) {
		case orb.Point:
			num(g[0])
			num(g[1])
		case orb.LineString:
			for _, p := range g {
				num(p[0])
				num(p[1])
			}
		case orb.Polygon:
			for _, r := range g {
				for _, p := range r {
					num(p[0])
					num(p[1])
				}
			}
		}
		b, err := json.Marshal(f.Props)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestDeterministic(t *testing.T) {
	a := defaultCity(t)
	b, err := Generate(Options{Seed: 2016, Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	da := digest(t, a)
	if db := digest(t, b); da != db {
		t.Fatalf("two generations differ: %s vs %s", da, db)
	}
	c, err := Generate(Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if da == digest(t, c) {
		t.Fatal("seed 7 gave the same city as seed 2016")
	}
}

// TestSummaryGolden pins the per-layer and per-kind counts of the default city.
func TestSummaryGolden(t *testing.T) {
	got, err := json.MarshalIndent(defaultCity(t).Counts(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "summary.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("summary differs from %s (run with -update if intended):\n%s", path, got)
	}
}

func TestCounts(t *testing.T) {
	n := defaultCity(t).Counts()
	for k, want := range map[string]int{
		"buildings": 50000, "devices/septic_gas": 2083, "devices/camera": 326,
		"vehicles/muck_truck": 120, "vehicles/patrol": 40, "workers": 600, "bridges": 7, "rivers": 2,
	} {
		if n[k] != want {
			t.Errorf("%s: %d, want %d", k, n[k], want)
		}
	}
	if h := n["devices/hydrant_pressure"]; h < 3000 || h > 9000 {
		t.Errorf("hydrant gauges: %d, want a quarter of ~22,000 high-rise", h)
	}
	if n["roads"] < 200 {
		t.Errorf("roads: %d", n["roads"])
	}
}

func TestScaleKeepsLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a scale-2 city")
	}
	a := defaultCity(t)
	b, err := Generate(Options{Scale: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []twin.Layer{twin.Regions, twin.Rivers, twin.Bridges, twin.Roads} {
		ja, _ := json.Marshal(a.Features[l])
		jb, _ := json.Marshal(b.Features[l])
		if string(ja) != string(jb) {
			t.Errorf("layer %s differs between scale 1 and 2", l)
		}
	}
	na, nb := a.Counts(), b.Counts()
	for _, k := range []string{"buildings", "devices/septic_gas", "devices/camera", "vehicles", "workers"} {
		if nb[k] != 2*na[k] {
			t.Errorf("%s: %d at scale 2, want %d", k, nb[k], 2*na[k])
		}
	}
}

func TestFeaturesValid(t *testing.T) {
	c := defaultCity(t)
	area := box
	area.Min = orb.Point{area.Min[0] - 0.01, area.Min[1] - 0.01}
	area.Max = orb.Point{area.Max[0] + 0.01, area.Max[1] + 0.01}
	seen := map[twin.ID]bool{}
	tracked := map[string]bool{}
	for _, f := range c.All() {
		if seen[f.ID] {
			t.Fatalf("duplicate id %s", f.ID)
		}
		seen[f.ID] = true
		if err := twin.ValidName(f.ID.Name); err != nil {
			t.Fatal(err)
		}
		if f.ID.Layer == twin.Vehicles || f.ID.Layer == twin.Workers || f.ID.Layer == twin.Devices {
			if tracked[f.ID.Name] {
				t.Fatalf("telemetry name %s not unique across tracked layers", f.ID.Name)
			}
			tracked[f.ID.Name] = true
		}
		if f.Geometry == nil {
			t.Fatalf("%s: no geometry", f.ID)
		}
		if !area.Contains(f.Geometry.Bound().Min) || !area.Contains(f.Geometry.Bound().Max) {
			t.Fatalf("%s: bound %v outside the city", f.ID, f.Geometry.Bound())
		}
		switch g := f.Geometry.(type) {
		case orb.Polygon:
			if len(g) == 0 || len(g[0]) < 4 || g[0][0] != g[0][len(g[0])-1] {
				t.Fatalf("%s: ring not closed or too short", f.ID)
			}
			if math.Abs(signedArea(g[0][:len(g[0])-1])) == 0 {
				t.Fatalf("%s: empty polygon", f.ID)
			}
			// O(n²) check: every region, river and a sample of buildings.
			if f.ID.Layer != twin.Buildings || len(seen)%97 == 0 {
				if planar.RingSelfIntersects(g[0]) {
					t.Fatalf("%s: self-intersecting ring", f.ID)
				}
			}
		case orb.LineString:
			if len(g) < 2 {
				t.Fatalf("%s: line with %d points", f.ID, len(g))
			}
		case orb.Point:
		default:
			t.Fatalf("%s: unexpected geometry %T", f.ID, g)
		}
	}
}

func TestRegionCodes(t *testing.T) {
	c := defaultCity(t)
	districts := map[string]string{"500103": "Yuzhong", "500104": "Dadukou", "500105": "Jiangbei", "500106": "Shapingba",
		"500107": "Jiulongpo", "500108": "Nan'an", "500109": "Beibei", "500112": "Yubei"}
	streets := map[string][]string{}
	street9 := regexp.MustCompile(`^5001\d{2}\d{3}$`)
	var cities int
	for _, f := range c.Features[twin.Regions] {
		code := f.Prop("code")
		if code != f.ID.Name {
			t.Fatalf("%s: code %q", f.ID, code)
		}
		switch f.Prop("level") {
		case "city":
			cities++
			if code != CityCode || f.Prop("parent") != "" {
				t.Fatalf("city region %s", code)
			}
		case "district":
			if districts[code] != f.Prop("name") || f.Prop("parent") != CityCode {
				t.Fatalf("district %s %q parent %q", code, f.Prop("name"), f.Prop("parent"))
			}
		case "street":
			if !street9.MatchString(code) || !strings.HasPrefix(code, f.Prop("parent")) || districts[f.Prop("parent")] == "" {
				t.Fatalf("street %s parent %s", code, f.Prop("parent"))
			}
			streets[f.Prop("parent")] = append(streets[f.Prop("parent")], code)
		default:
			t.Fatalf("%s: level %q", f.ID, f.Prop("level"))
		}
	}
	if cities != 1 || len(streets) != 8 {
		t.Fatalf("%d cities, %d districts with streets", cities, len(streets))
	}
	for d, ss := range streets {
		if len(ss) < 6 || len(ss) > 20 {
			t.Errorf("district %s has %d streets", d, len(ss))
		}
		sort.Strings(ss)
		for i, s := range ss {
			if want := fmt.Sprintf("%s%03d", d, i+1); s != want {
				t.Errorf("street %d of %s is %s, want %s", i, d, s, want)
			}
		}
	}
}

// TestTiling checks that districts tile the city box and streets tile their
// district: areas add up, and every inner border edge is shared exactly.
func TestTiling(t *testing.T) {
	c := defaultCity(t)
	area := func(p orb.Polygon) float64 { return math.Abs(signedArea(p[0][:len(p[0])-1])) }
	boxArea := (box.Max[0] - box.Min[0]) * (box.Max[1] - box.Min[1])
	sum := 0.0
	edges := map[[2]orb.Point]int{}
	for _, d := range c.Districts {
		sum += area(d.Polygon)
		r := d.Polygon[0]
		for i := 0; i+1 < len(r); i++ {
			edges[[2]orb.Point{r[i], r[i+1]}]++
		}
		ss := 0.0
		for _, s := range d.Streets {
			ss += area(s.Polygon)
		}
		if rel := math.Abs(ss-area(d.Polygon)) / area(d.Polygon); rel > 1e-6 {
			t.Errorf("district %s: streets cover %.8f of %.8f", d.Code, ss, area(d.Polygon))
		}
	}
	if rel := math.Abs(sum-boxArea) / boxArea; rel > 1e-9 {
		t.Errorf("districts cover %.10f of the box's %.10f", sum, boxArea)
	}
	onBox := func(a, b orb.Point) bool {
		for k := 0; k < 2; k++ {
			for _, v := range []float64{box.Min[k], box.Max[k]} {
				if a[k] == v && b[k] == v {
					return true
				}
			}
		}
		return false
	}
	for e, n := range edges {
		if n != 1 {
			t.Fatalf("edge %v used %d times in one direction (overlap)", e, n)
		}
		if !onBox(e[0], e[1]) && edges[[2]orb.Point{e[1], e[0]}] != 1 {
			t.Fatalf("inner edge %v is not shared by a neighbouring district", e)
		}
	}
	// Spot check: the tip of Yuzhong is at Chaotianmen, Jiangbei is north.
	if d := c.district(orb.Point{106.575, 29.562}); d == nil || d.Code != "500103" {
		t.Errorf("Jiefangbei area not in Yuzhong: %v", d)
	}
	if d := c.district(orb.Point{106.56, 29.60}); d == nil || d.Code != "500105" {
		t.Errorf("north of the Jialing not in Jiangbei: %v", d)
	}
}

func TestNoBuildingInRiver(t *testing.T) {
	c := defaultCity(t)
	for _, f := range c.Features[twin.Buildings] {
		ring := f.Geometry.(orb.Polygon)[0]
		fb := f.Geometry.Bound()
		for _, rv := range c.Rivers {
			if !rv.Polygon.Bound().Intersects(fb) {
				continue
			}
			for i := 0; i+1 < len(ring); i++ {
				if planar.SegmentIntersectsPolygon(ring[i], ring[i+1], rv.Polygon) {
					t.Fatalf("%s touches the %s", f.ID, rv.Name)
				}
			}
		}
		if h, _ := f.Number("height_m"); (h >= 24) != f.Props.Get("high_rise").(bool) || h < 9 || h > 200 {
			t.Fatalf("%s: height %v high_rise %v", f.ID, h, f.Props.Get("high_rise"))
		}
		if f.Props.Get("high_rise").(bool) && !regexp.MustCompile(`^FC-5001\d\d-\d{6}$`).MatchString(f.Prop("fire_code")) {
			t.Fatalf("%s: fire code %q", f.ID, f.Prop("fire_code"))
		}
	}
}

func TestBridges(t *testing.T) {
	c := defaultCity(t)
	want := []string{"qiansimen", "huanghuayuan", "jiahua", "dongshuimen", "chaotianmen", "niujiaotuo", "shibanpo"}
	rivers := map[string]orb.Polygon{}
	for _, rv := range c.Rivers {
		rivers[rv.Name] = rv.Polygon
	}
	roads := map[string]bool{}
	for _, r := range c.Features[twin.Roads] {
		roads[fmt.Sprint(r.Geometry)] = true
	}
	fs := c.Features[twin.Bridges]
	if len(fs) != len(want) {
		t.Fatalf("%d bridges", len(fs))
	}
	for i, f := range fs {
		if f.ID.Name != want[i] {
			t.Errorf("bridge %d is %s, want %s", i, f.ID.Name, want[i])
		}
		ls := f.Geometry.(orb.LineString)
		river := rivers[f.Prop("river")]
		if river == nil {
			t.Fatalf("%s: river %q", f.ID, f.Prop("river"))
		}
		if planar.PointInPolygon(ls[0], river) || planar.PointInPolygon(ls[1], river) ||
			!planar.SegmentIntersectsPolygon(ls[0], ls[1], river) {
			t.Errorf("%s does not cross the %s from bank to bank", f.ID, f.Prop("river"))
		}
		conn := f.Props.Get("connects").([]any)
		da, db := c.district(ls[0]), c.district(ls[1])
		if len(conn) != 2 || conn[0] == conn[1] || da == nil || db == nil || da.Code != conn[0] || db.Code != conn[1] {
			t.Errorf("%s connects %v; ends in %v and %v", f.ID, conn, da, db)
		}
		if l := distMetres(ls[0], ls[1]); l < 500 || l > 2000 {
			t.Errorf("%s is %.0f m long", f.ID, l)
		}
		r := f.Props.Get("restrictions").(map[string]any)["muck_truck"].(map[string]any)["forbidden"].([]any)
		if len(r) != 2 || r[0] != "07:00-09:00" {
			t.Errorf("%s restrictions %v", f.ID, r)
		}
		if !roads[fmt.Sprint(ls)] {
			t.Errorf("%s carries no road", f.ID)
		}
	}
}

func TestDevicesVehiclesWorkers(t *testing.T) {
	c := defaultCity(t)
	buildings := map[string]*twin.Feature{}
	for _, b := range c.Features[twin.Buildings] {
		buildings[b.ID.String()] = b
	}
	points := map[string]int{}
	for _, d := range c.Features[twin.Devices] {
		switch d.Prop("kind") {
		case "septic_gas":
			if buildings[d.Prop("attached_to")] == nil {
				t.Fatalf("%s attached to %q", d.ID, d.Prop("attached_to"))
			}
			v := d.Props.Get("values").(map[string]any)
			if ch4, _ := twin.ToFloat(v["ch4"]); ch4 <= 0 || ch4 >= 1 {
				t.Fatalf("%s ch4 %v", d.ID, v["ch4"])
			}
		case "hydrant_pressure":
			b := buildings[d.Prop("attached_to")]
			if b == nil || !b.Props.Get("high_rise").(bool) {
				t.Fatalf("%s on %q, want a high-rise", d.ID, d.Prop("attached_to"))
			}
		case "camera":
			points[d.Prop("point")]++
		}
	}
	if len(points) != 181 {
		t.Errorf("%d camera points, want 181", len(points))
	}
	plates := map[string]bool{}
	for _, v := range c.Features[twin.Vehicles] {
		p := v.Prop("plate")
		if !strings.HasPrefix(p, "渝A·") || plates[p] {
			t.Fatalf("%s plate %q", v.ID, p)
		}
		plates[p] = true
		route := c.Routes[v.ID.Name]
		if len(route) < 2 || route[0] != v.Geometry.(orb.Point) {
			t.Fatalf("%s route %v", v.ID, route)
		}
	}
	grids := map[string]*twin.Feature{}
	for _, g := range c.Features[twin.Grids] {
		grids[g.Prop("code")] = g
	}
	if len(grids) < 1000 {
		t.Fatalf("%d grids from locate.MakeGrids", len(grids))
	}
	for _, w := range c.Features[twin.Workers] {
		p := w.Geometry.(orb.Point)
		s, ok := c.Street(w.Prop("street"))
		if !ok || c.WorkerStreet[w.ID.Name] != s || !planar.PointInPolygon(p, s.Polygon) {
			t.Fatalf("%s not in its street %q", w.ID, w.Prop("street"))
		}
		if w.Prop("status") != "available" {
			t.Fatalf("%s props %v", w.ID, w.Props)
		}
		g := grids[w.Prop("grid")]
		if g == nil || g.Prop("street") != s.Code || !planar.Contains(g.Geometry, p) {
			t.Fatalf("%s does not start in its grid %q of street %s", w.ID, w.Prop("grid"), s.Code)
		}
	}
}

func TestNoGrids(t *testing.T) {
	c, err := Generate(Options{NoGrids: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Features[twin.Grids]); n != 0 {
		t.Fatalf("%d grids with NoGrids", n)
	}
	for _, w := range c.Features[twin.Workers] {
		if w.Prop("grid") != "" {
			t.Fatalf("%s grid %q without grids", w.ID, w.Prop("grid"))
		}
	}
}

// TestGridsHook checks that workers start inside a grid of their street and
// carry its code when a grid maker is given.
func TestGridsHook(t *testing.T) {
	c, err := Generate(Options{Grids: func(streets []*twin.Feature) []*twin.Feature {
		var out []*twin.Feature
		for _, s := range streets {
			out = append(out, &twin.Feature{ID: twin.NewID(twin.Grids, "g"+s.ID.Name), Geometry: s.Geometry,
				Props: twin.NewProps(map[string]any{"code": "g" + s.ID.Name, "street": s.ID.Name})})
		}
		return out
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Features[twin.Grids]) != len(c.Features[twin.Regions])-9 {
		t.Fatalf("%d grids", len(c.Features[twin.Grids]))
	}
	for _, w := range c.Features[twin.Workers] {
		if w.Prop("grid") != "g"+w.Prop("street") {
			t.Fatalf("%s grid %q street %q", w.ID, w.Prop("grid"), w.Prop("street"))
		}
	}
}

// TestRoadsDryExceptBridges checks that only bridge decks cross the water
// and that every road has a name and a class.
func TestRoadsDryExceptBridges(t *testing.T) {
	c := defaultCity(t)
	decks := map[string]bool{}
	for _, b := range c.Bridges {
		decks[b.Name+" Bridge"] = true
	}
	classes := map[string]int{}
	for _, f := range c.Features[twin.Roads] {
		ls := f.Geometry.(orb.LineString)
		classes[f.Prop("class")]++
		if f.Prop("name") == "" {
			t.Errorf("%s has no name", f.ID)
		}
		wet := false
		for i := 0; i+1 < len(ls); i++ {
			wet = wet || c.crossesWater(ls[i], ls[i+1])
		}
		if wet != decks[f.Prop("name")] {
			t.Errorf("%s %q: crosses water %v", f.ID, f.Prop("name"), wet)
		}
	}
	if classes["primary"] < 20 || classes["secondary"] < 80 || classes["residential"] < 200 || len(classes) != 3 {
		t.Errorf("road classes %v", classes)
	}
}

// TestRegionsHaveChineseNames (issue 14 item 1): the tier selector shows
// every region in Chinese, streets included, and grid workers have Chinese
// names too.
func TestRegionsHaveChineseNames(t *testing.T) {
	c := defaultCity(t)
	for _, f := range append(append([]*twin.Feature(nil), c.Features[twin.Regions]...), c.Features[twin.Workers]...) {
		if zh := f.Prop("name_zh"); zh == "" || !strings.ContainsFunc(zh, func(r rune) bool { return r >= 0x4e00 && r <= 0x9fff }) {
			t.Errorf("%s (%s) has name_zh %q", f.ID, f.Prop("level"), zh)
		}
	}
}

// TestDisplayNamesZH: buildings, their persons and vehicles have Chinese
// display names (issue 14): buildings named after their street's place,
// unique; owners_zh parallel to owners; every vehicle a name_zh.
func TestDisplayNamesZH(t *testing.T) {
	c := defaultCity(t)
	place := map[string]string{}
	for _, d := range c.Districts {
		for _, s := range d.Streets {
			place[s.Code] = s.PlaceZH
		}
	}
	seen := map[string]string{}
	cjk := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return r >= 0x4e00 && r <= 0x9fff })
	}
	for i, f := range c.Features[twin.Buildings] {
		zh := f.Prop("name_zh")
		if !cjk(zh) || !strings.HasPrefix(zh, place[c.sites[i].street]) {
			t.Fatalf("%s in %s: name_zh %q", f.ID, c.sites[i].street, zh)
		}
		if other, dup := seen[zh]; dup {
			t.Fatalf("%s and %s are both %q", other, f.ID, zh)
		}
		seen[zh] = f.ID.Name
		own, zhs := twin.PropStrings(f.Props.Get("owners")), twin.PropStrings(f.Props.Get("owners_zh"))
		if len(own) != len(zhs) || !cjk(zhs[0]) {
			t.Fatalf("%s owners %v owners_zh %v", f.ID, own, zhs)
		}
	}
	for _, v := range c.Features[twin.Vehicles] {
		if !cjk(v.Prop("name_zh")) {
			t.Fatalf("%s name_zh %q", v.ID, v.Prop("name_zh"))
		}
	}
	if a, b := personNameZH(42), personNameZH(42); a != b || a == personNameZH(43) {
		t.Fatalf("person names %q %q %q", a, b, personNameZH(43))
	}
}
