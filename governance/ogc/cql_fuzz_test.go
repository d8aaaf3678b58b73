package ogc

import (
	"context"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// FuzzCQL2 feeds arbitrary text to the parser. Nothing may panic; what
// parses is evaluated on features with and without the compared props and
// geometry (bounded by a deadline on the scan, as requests are), and a
// filter and its negation are never both TRUE for one feature.
//
//	go test -run '^$' -fuzz FuzzCQL2 -fuzztime 30s ./governance/ogc
func FuzzCQL2(f *testing.F) {
	for _, s := range []string{
		"fire_code = 'X'", "NOT (fire_code = 'X')", "fire_code IS NOT NULL AND height_m >= 24",
		"name LIKE 'Chao%\\_x_'", "height_m NOT BETWEEN 1 AND 2", "kind IN ('camera', 'septic_gas')",
		"updated > TIMESTAMP('2020-01-01t00:00:00z') OR updated < DATE('2030-01-01')",
		"S_INTERSECTS(geometry, BBOX(106.59,29.74,106.62,29.79))",
		"S_INTERSECTS(geometry, BBOX(170,10,0,-170,20,5))",
		"S_INTERSECTS(POLYGON((0 0, 1 0, 1 1, 0 0), (0.5 0.2, 0.6 0.2, 0.6 0.3, 0.5 0.2)), geometry)",
		"S_INTERSECTS(geometry, GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(0 0, 1 1), MULTIPOINT((1 1))))",
		"S_INTERSECTS(geometry,POINT(1))", "TRUE", "NOT FALSE", "((((TRUE))))", "values.ch4 > 0.5",
		"\"name\" <> 'It''s'", "1=1 OR 2=2", "-1.5e3 < height_m", "geometry IS NULL",
	} {
		f.Add(s)
	}
	tw := twin.New(twin.Options{})
	for i, g := range []orb.Geometry{nil, orb.Point{0.5, 0.5}, orb.LineString{{-1, 0.5}, {2, 0.6}},
		orb.Polygon{{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}}} {
		props := map[string]any{"name": "Chaotianmen", "height_m": float64(i * 20), "high_rise": i%2 == 0,
			"values": map[string]any{"ch4": 0.6}, "kind": "camera", "owners": []any{"a"}}
		if i == 0 {
			props = map[string]any{"name": nil}
		}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, string(rune('a'+i))), Geometry: g, Props: twin.NewProps(props)}); err != nil {
			f.Fatal(err)
		}
	}
	a := New(tw, Options{})
	lookup := a.lookupFor(twin.Buildings)
	f.Fuzz(func(t *testing.T, src string) {
		for _, lk := range []Lookup{nil, lookup} {
			x, err := ParseCQL2(src, lk)
			if err != nil {
				continue
			}
			neg, errNeg := ParseCQL2("NOT ("+src+")", lk)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.scan(ctx, twin.Buildings, nil, nil, func(ft *twin.Feature) bool {
				if x.Match(ft) && errNeg == nil && neg.Match(ft) {
					t.Fatalf("%q and its negation both hold for %s", src, ft.ID)
				}
				return true
			})
			cancel()
			if b, ok := x.Bound(); ok && b.IsEmpty() {
				t.Fatalf("%q: empty candidate box %v", src, b)
			}
		}
	})
}
