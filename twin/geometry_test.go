package twin

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/paulmach/orb"
)

func TestValidGeometry(t *testing.T) {
	square := orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29.1}, {106, 29}}}
	bowtie := orb.Polygon{{{106, 29}, {106.1, 29.1}, {106.1, 29}, {106, 29.1}, {106, 29}}}
	for _, c := range []struct {
		g    orb.Geometry
		want string // "" = valid
	}{
		{orb.Point{106.5, 29.5}, ""},
		{square, ""},
		{orb.LineString{{106, 29}, {106.1, 29}}, ""},
		{nil, "empty"},
		{orb.Point{200, 29}, "out of range"},
		{orb.Point{math.NaN(), 29}, "not finite"},
		{orb.LineString{{106, 29}}, "at least 2"},
		{bowtie, "self-intersecting"},
		{orb.MultiPolygon{}, "empty"},
		{orb.Collection{orb.Point{1, 2}}, "unsupported"},
	} {
		err := ValidGeometry(c.g)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.g, err, c.want)
		}
	}
}

func TestValidGeometryDegenerate(t *testing.T) {
	p := orb.Point{106.5, 29.5}
	for _, c := range []struct {
		g    orb.Geometry
		want string
	}{
		{orb.Polygon{{p, p, p, p}}, "distinct points"},
		{orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29}, {106, 29}}}, "distinct points"},
		{orb.Polygon{{{106, 29}, {106.1, 29}, {106.2, 29}, {106, 29}}}, "self-intersecting"}, // collinear: folds back
		// Repeated consecutive points are allowed.
		{orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29.1}, {106, 29}}}, ""},
		// Unclosed rings are closed.
		{orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29.1}}}, ""},
	} {
		err := ValidGeometry(c.g)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.g, err, c.want)
		}
	}
}

// TestRingSweepMatchesExhaustive: the O(n log n) sweep answers as the
// exhaustive pair test on random rings drawn on a small integer grid, where
// shared vertices, touching and collinear edges are common. The seed is
// printed on failure.
func TestRingSweepMatchesExhaustive(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	simple := 0
	for k := 0; k < 20000; k++ {
		n := 3 + rng.IntN(9)
		grid := 2 + rng.IntN(6)
		r := make(orb.Ring, 0, n+1)
		for len(r) < n {
			pt := orb.Point{float64(rng.IntN(grid)), float64(rng.IntN(grid))}
			if len(r) > 0 && r[len(r)-1] == pt {
				continue
			}
			r = append(r, pt)
		}
		if r[0] == r[len(r)-1] {
			continue
		}
		r = append(r, r[0])
		want := planar.RingSelfIntersects(r)
		if got := ringSelfIntersects(r); got != want {
			t.Fatalf("seed %d: ring %v: sweep says %v, exhaustive %v", seed, r, got, want)
		}
		if !want {
			simple++
		}
	}
	if simple < 100 {
		t.Fatalf("seed %d: only %d simple rings drawn: the test checks too little", seed, simple)
	}
}

// star is a simple ring of n vertices alternating between two radii: every
// edge's bounding box overlaps most others', the worst case for an
// index of boxes.
func star(n int) orb.Ring {
	r := make(orb.Ring, 0, n+1)
	for i := 0; i < n; i++ {
		a := 2 * math.Pi * float64(i) / float64(n)
		rad := 0.05
		if i%2 == 1 {
			rad = 0.0001
		}
		r = append(r, orb.Point{106.5 + rad*math.Cos(a), 29.5 + rad*math.Sin(a)})
	}
	return append(r, r[0])
}

// TestValidGeometryLarge: a 50,000-vertex simple polygon is valid, one with
// a crossing is not; the sweep handles both (the exhaustive test would make
// over a billion pair tests).
func TestValidGeometryLarge(t *testing.T) {
	r := star(50000)
	if err := ValidGeometry(orb.Polygon{r}); err != nil {
		t.Fatalf("simple star: %v", err)
	}
	bad := append(orb.Ring(nil), r...)
	bad[25000], bad[25002] = bad[25002], bad[25000]
	if err := ValidGeometry(orb.Polygon{bad}); err == nil || !strings.Contains(err.Error(), "self-intersecting") {
		t.Fatalf("star with a crossing: %v", err)
	}
	if n := VertexCount(orb.MultiPolygon{{r}, {r}}); n != 2*len(r) {
		t.Fatalf("VertexCount = %d, want %d", n, 2*len(r))
	}
}

func BenchmarkValidGeometryStar(b *testing.B) {
	p := orb.Polygon{star(20000)}
	for b.Loop() {
		if err := ValidGeometry(p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeGeometry(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // "" = decodes
	}{
		{`{"type":"Point","coordinates":[106.5,29.5]}`, ""},
		{`{"type":"Point","coordinates":[106.5,29.5,120]}`, ""},
		{`null`, ""},
		{`{"type":"Point","coordinates":[]}`, "0 number"},
		{`{"type":"Point","coordinates":[106.5]}`, "1 number"},
		{`{"type":"Point"}`, "no coordinates"},
		{`{"type":"Point","coordinates":null}`, "no coordinates"},
		{`{"type":"Point","coordinates":[[106.5,29.5]]}`, "deeper"},
		{`{"type":"LineString","coordinates":[[106.5,29.5],[106.6]]}`, "1 number"},
		{`{"type":"LineString","coordinates":[106.5,29.5]}`, "a number where"},
		{`{"type":"Polygon","coordinates":[[[106,29],[106.1,29],[106.1,29.1],[106,29]]]}`, ""},
		{`{"type":"Polygon","coordinates":[[[106,29],[106.1,29],[],[106,29]]]}`, "0 number"},
		{`{"type":"MultiPolygon","coordinates":[[[[106,29],["x",29]]]]}`, "arrays of numbers"},
		{`{"type":"Point","coordinates":[-1e2, 2.5E-3]}`, ""},
		{`{}`, "no type"},
		{`[`, "geometry"},
	} {
		g, err := DecodeGeometry([]byte(c.in))
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: (%v, %v), want %q", c.in, g, err, c.want)
		}
	}
	var f Feature
	if err := f.UnmarshalJSON([]byte(`{"type":"Feature","geometry":{"type":"Point","coordinates":[1]},"properties":{}}`)); err == nil {
		t.Errorf("Feature with the point [1] decoded as %v", f.Geometry)
	}
}

// FuzzDecodeGeometry: any input decodes or fails cleanly; what decodes has
// positions of two numbers, and ValidGeometry never panics on it.
func FuzzDecodeGeometry(f *testing.F) {
	for _, s := range []string{
		`{"type":"Point","coordinates":[106.5,29.5]}`, `{"type":"Point","coordinates":[]}`, `null`,
		`{"type":"Polygon","coordinates":[[[106,29],[106.1,29],[106.1,29.1],[106,29]]]}`,
		`{"type":"MultiPolygon","coordinates":[[[[0,0],[1,1],[1,0],[0,1],[0,0]]]]}`,
		`{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]}]}`,
		`{"type":"LineString","coordinates":[[1,2],[3,4,5]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeGeometry(b)
		if err != nil || g == nil {
			return
		}
		_ = ValidGeometry(g)
		_ = VertexCount(g)
	})
}
