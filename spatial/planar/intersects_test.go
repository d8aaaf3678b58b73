package planar

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/paulmach/orb"
)

func TestOrientExactWhereFloatsLie(t *testing.T) {
	// Points nearly collinear at lon/lat magnitudes: the rounded cross
	// product is unreliable here; Orient must agree with exact arithmetic.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		a := orb.Point{106.5 + rng.Float64()*0.1, 29.5 + rng.Float64()*0.1}
		b := orb.Point{106.5 + rng.Float64()*0.1, 29.5 + rng.Float64()*0.1}
		s := rng.Float64()
		c := orb.Point{a[0] + s*(b[0]-a[0]), a[1] + s*(b[1]-a[1])} // rounded onto the line
		c[0] = math.Nextafter(c[0], c[0]+float64(rng.IntN(3)-1))
		if got, want := Orient(a, b, c), orientExact(a, b, c); got != want {
			t.Fatalf("Orient(%v,%v,%v) = %d, exact %d", a, b, c, got, want)
		}
		// Orientation is antisymmetric and cyclic, exactly.
		if Orient(a, b, c) != -Orient(b, a, c) || Orient(a, b, c) != Orient(b, c, a) {
			t.Fatalf("Orient not antisymmetric/cyclic at %v %v %v", a, b, c)
		}
	}
	if Orient(orb.Point{0, 0}, orb.Point{1, 1}, orb.Point{2, 2}) != 0 ||
		Orient(orb.Point{0, 0}, orb.Point{1, 0}, orb.Point{0, 1}) != 1 {
		t.Fatal("simple orientations wrong")
	}
}

func TestIntersects(t *testing.T) {
	box := orb.Bound{Min: orb.Point{0, 0}, Max: orb.Point{10, 10}}
	holedSq := orb.Polygon{
		{{0, 0}, {10, 0}, {10, 10}, {0, 10}, {0, 0}},
		{{4, 4}, {4, 6}, {6, 6}, {6, 4}, {4, 4}},
	}
	tri := orb.Polygon{{{20, 0}, {30, 0}, {25, 5}, {20, 0}}}
	cases := []struct {
		name string
		a, b orb.Geometry
		want bool
	}{
		// The false negative of the envelope-and-vertex test: a long road
		// crossing the box with no vertex inside and no box corner inside
		// the road's bounds.
		{"line through box, no vertex inside", orb.LineString{{-5, 4}, {15, 6}}, box, true},
		{"line beside box, envelopes overlap", orb.LineString{{-5, 9}, {2, 16}}, box, false},
		{"line touching box corner", orb.LineString{{-1, 11}, {1, 9}}, orb.Bound{Min: orb.Point{0, 0}, Max: orb.Point{0.5, 10.5}}, true},
		{"line touching corner exactly", orb.LineString{{-1, 1}, {1, -1}}, box, true},
		{"line inside box", orb.LineString{{1, 1}, {2, 2}}, box, true},
		{"diagonal off corner", orb.LineString{{-1, 0.5}, {0.5, -1}}, box, false},
		{"point on box edge", orb.Point{10, 5}, box, true},
		{"point outside box", orb.Point{10.0000001, 5}, box, false},
		{"point in hole", orb.Point{5, 5}, holedSq, false},
		{"point on hole edge", orb.Point{4, 5}, holedSq, true},
		{"point on outer edge", orb.Point{0, 5}, holedSq, true},
		{"box in hole", orb.Bound{Min: orb.Point{4.5, 4.5}, Max: orb.Point{5.5, 5.5}}, holedSq, false},
		{"box around hole", orb.Bound{Min: orb.Point{3, 3}, Max: orb.Point{7, 7}}, holedSq, true},
		{"box inside polygon", orb.Bound{Min: orb.Point{1, 1}, Max: orb.Point{2, 2}}, holedSq, true},
		{"polygon inside box", tri, orb.Bound{Min: orb.Point{19, -1}, Max: orb.Point{31, 6}}, true},
		{"polygon apart", tri, holedSq, false},
		{"polygon inside polygon", orb.Polygon{{{1, 1}, {2, 1}, {2, 2}, {1, 1}}}, holedSq, true},
		{"polygon in hole", orb.Polygon{{{4.5, 4.5}, {5.5, 4.5}, {5, 5.5}, {4.5, 4.5}}}, holedSq, false},
		{"polygon containing polygon", holedSq, orb.Polygon{{{-1, -1}, {11, -1}, {11, 11}, {-1, 11}, {-1, -1}}}, true},
		{"polygons sharing an edge", orb.Polygon{{{10, 0}, {12, 0}, {12, 10}, {10, 10}, {10, 0}}}, holedSq, true},
		{"line in hole", orb.LineString{{4.5, 5}, {5.5, 5}}, holedSq, false},
		{"line crossing polygon, vertices outside", orb.LineString{{-1, 1}, {11, 1}}, holedSq, true},
		{"line inside polygon", orb.LineString{{1, 1}, {2, 1}}, holedSq, true},
		{"crossing lines", orb.LineString{{0, 0}, {2, 2}}, orb.LineString{{0, 2}, {2, 0}}, true},
		{"parallel lines", orb.LineString{{0, 0}, {2, 0}}, orb.LineString{{0, 1}, {2, 1}}, false},
		{"collinear overlap", orb.LineString{{0, 0}, {2, 0}}, orb.LineString{{1, 0}, {3, 0}}, true},
		{"collinear apart", orb.LineString{{0, 0}, {1, 0}}, orb.LineString{{2, 0}, {3, 0}}, false},
		{"point on line", orb.Point{1, 1}, orb.LineString{{0, 0}, {2, 2}}, true},
		{"point near line", orb.Point{1, 1.0000001}, orb.LineString{{0, 0}, {2, 2}}, false},
		{"points", orb.MultiPoint{{1, 1}, {3, 3}}, orb.Point{3, 3}, true},
		{"multipolygon", orb.MultiPolygon{tri, holedSq}, orb.Point{25, 1}, true},
		{"collection", orb.Collection{orb.Point{50, 50}, orb.LineString{{-5, 4}, {15, 6}}}, box, true},
		{"ring", orb.Ring{{0, 0}, {1, 0}, {1, 1}, {0, 0}}, orb.Point{0.6, 0.5}, true},
		{"degenerate box on line", orb.Bound{Min: orb.Point{1, 1}, Max: orb.Point{1, 1}}, orb.LineString{{0, 0}, {2, 2}}, true},
		{"boxes touching", orb.Bound{Min: orb.Point{10, 10}, Max: orb.Point{11, 11}}, box, true},
		{"one-point line", orb.LineString{{5, 5}}, box, true},
		{"nil", nil, box, false},
		{"empty polygon", orb.Polygon{}, box, false},
	}
	for _, c := range cases {
		if got := Intersects(c.a, c.b); got != c.want {
			t.Errorf("%s: Intersects(a, b) = %v, want %v", c.name, got, c.want)
		}
		if got := Intersects(c.b, c.a); got != c.want {
			t.Errorf("%s: Intersects(b, a) = %v, want %v", c.name, got, c.want)
		}
	}
}

// A box given as a Bound and as the equivalent polygon must agree, for
// random segments and triangles: two code paths, one answer.
func TestBoundAgreesWithPolygon(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	pt := func() orb.Point { return orb.Point{rng.Float64() * 10, rng.Float64() * 10} }
	for i := 0; i < 20000; i++ {
		a, b := pt(), pt()
		box := orb.Bound{Min: a, Max: a}.Extend(b)
		var g orb.Geometry = orb.LineString{pt(), pt()}
		if i%2 == 1 {
			p, q, r := pt(), pt(), pt()
			g = orb.Polygon{{p, q, r, p}}
		}
		if x, y := Intersects(g, box), Intersects(g, box.ToPolygon()); x != y {
			t.Fatalf("%v vs %v: bound %v, polygon %v", g, box, x, y)
		}
	}
}

// Points on an edge shared by two squares are covered by both.
func TestCoversSharedEdge(t *testing.T) {
	left := orb.Polygon{{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}}
	right := orb.Polygon{{{1, 0}, {2, 0}, {2, 1}, {1, 1}, {1, 0}}}
	for _, y := range []float64{0, 0.3, 1} {
		p := orb.Point{1, y}
		if !PolygonCovers(left, p) || !PolygonCovers(right, p) {
			t.Errorf("%v not covered by both", p)
		}
	}
}
