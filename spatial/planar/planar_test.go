package planar

import (
	"math"
	"testing"

	"github.com/paulmach/orb"
)

// square with a square hole: outer 0..10, hole 4..6.
var holed = orb.Polygon{
	{{0, 0}, {10, 0}, {10, 10}, {0, 10}, {0, 0}},
	{{4, 4}, {4, 6}, {6, 6}, {6, 4}, {4, 4}},
}

func TestPointInPolygon(t *testing.T) {
	cases := []struct {
		p    orb.Point
		want bool
	}{
		{orb.Point{1, 1}, true},
		{orb.Point{5, 5}, false}, // in the hole
		{orb.Point{3.9, 5}, true},
		{orb.Point{11, 5}, false},
		{orb.Point{-0.1, 5}, false},
		{orb.Point{5, 10.1}, false},
		{orb.Point{9.99, 9.99}, true},
	}
	for _, c := range cases {
		if got := PointInPolygon(c.p, holed); got != c.want {
			t.Errorf("PointInPolygon(%v) = %v, want %v", c.p, got, c.want)
		}
		if got := Contains(holed, c.p); got != c.want {
			t.Errorf("Contains(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	mp := orb.MultiPolygon{holed, {{{20, 0}, {30, 0}, {25, 5}, {20, 0}}}}
	if !PointInMultiPolygon(orb.Point{25, 2}, mp) || PointInMultiPolygon(orb.Point{5, 5}, mp) || !Contains(mp, orb.Point{1, 1}) {
		t.Error("multipolygon containment wrong")
	}
	if Contains(orb.LineString{{0, 0}, {1, 1}}, orb.Point{0.5, 0.5}) {
		t.Error("a line contains nothing")
	}
	// Open ring (no closing point) works too.
	if !PointInRing(orb.Point{1, 1}, orb.Ring{{0, 0}, {2, 0}, {2, 2}, {0, 2}}) {
		t.Error("open ring")
	}
}

// A point on the edge shared by two adjacent squares is in exactly one.
func TestSharedEdgeExactlyOnce(t *testing.T) {
	left := orb.Polygon{{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}}
	right := orb.Polygon{{{1, 0}, {2, 0}, {2, 1}, {1, 1}, {1, 0}}}
	for _, y := range []float64{0.1, 0.5, 0.9} {
		p := orb.Point{1, y}
		n := 0
		if PointInPolygon(p, left) {
			n++
		}
		if PointInPolygon(p, right) {
			n++
		}
		if n != 1 {
			t.Errorf("point %v on shared edge is in %d polygons", p, n)
		}
	}
}

func TestSide(t *testing.T) {
	a, b := orb.Point{0, 0}, orb.Point{1, 0}
	if Side(a, b, orb.Point{0.5, 1}) <= 0 || Side(a, b, orb.Point{0.5, -1}) >= 0 || Side(a, b, orb.Point{3, 0}) != 0 {
		t.Error("Side signs wrong")
	}
}

func TestSegmentIntersection(t *testing.T) {
	cases := []struct {
		a1, a2, b1, b2 orb.Point
		want           orb.Point
		ok             bool
	}{
		{orb.Point{0, 0}, orb.Point{2, 2}, orb.Point{0, 2}, orb.Point{2, 0}, orb.Point{1, 1}, true},
		{orb.Point{0, 0}, orb.Point{1, 0}, orb.Point{0, 1}, orb.Point{1, 1}, orb.Point{}, false},    // parallel
		{orb.Point{0, 0}, orb.Point{1, 1}, orb.Point{1, 1}, orb.Point{2, 0}, orb.Point{1, 1}, true}, // touch at end
		{orb.Point{0, 0}, orb.Point{1, 0}, orb.Point{2, -1}, orb.Point{2, 1}, orb.Point{}, false},   // beyond end
		{orb.Point{0, 0}, orb.Point{4, 0}, orb.Point{2, 0}, orb.Point{6, 0}, orb.Point{2, 0}, true}, // collinear overlap
		{orb.Point{0, 0}, orb.Point{1, 0}, orb.Point{2, 0}, orb.Point{3, 0}, orb.Point{}, false},    // collinear apart
	}
	for _, c := range cases {
		got, ok := SegmentIntersection(c.a1, c.a2, c.b1, c.b2)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("SegmentIntersection(%v,%v,%v,%v) = %v,%v want %v,%v", c.a1, c.a2, c.b1, c.b2, got, ok, c.want, c.ok)
		}
	}
}

func TestSegmentCrossesLine(t *testing.T) {
	// A bridge drawn west to east along y=0, with a vertex at x=1.
	bridge := orb.LineString{{0, 0}, {1, 0}, {2, 0}}
	// Northbound: from y<0 (right of an eastward line) to y>0 (its left).
	c := SegmentCrossesLine(orb.Point{0.5, -1}, orb.Point{0.5, 1}, bridge)
	if len(c) != 1 || c[0].Side != RightToLeft || c[0].Index != 0 || c[0].Point != (orb.Point{0.5, 0}) {
		t.Fatalf("northbound: %+v", c)
	}
	c = SegmentCrossesLine(orb.Point{1.5, 1}, orb.Point{1.5, -1}, bridge)
	if len(c) != 1 || c[0].Side != LeftToRight || c[0].Index != 1 {
		t.Fatalf("southbound: %+v", c)
	}
	// Through the shared vertex: reported once.
	c = SegmentCrossesLine(orb.Point{1, -1}, orb.Point{1, 1}, bridge)
	if len(c) != 1 || c[0].Side != RightToLeft || c[0].Index != 1 {
		t.Fatalf("through vertex: %+v", c)
	}
	// Through the final vertex of the line.
	c = SegmentCrossesLine(orb.Point{2, -1}, orb.Point{2, 1}, bridge)
	if len(c) != 1 || c[0].Index != 1 {
		t.Fatalf("through last vertex: %+v", c)
	}
	// Ending on the line: a touch, not a crossing.
	c = SegmentCrossesLine(orb.Point{0.5, -1}, orb.Point{0.5, 0}, bridge)
	if len(c) != 1 || c[0].Side != Touch {
		t.Fatalf("touch: %+v", c)
	}
	// Missing the line.
	if c = SegmentCrossesLine(orb.Point{3, -1}, orb.Point{3, 1}, bridge); len(c) != 0 {
		t.Fatalf("miss: %+v", c)
	}
	// A zigzag line crossed twice, returned in order along the movement.
	zig := orb.LineString{{0, 0}, {2, 2}, {4, 0}}
	c = SegmentCrossesLine(orb.Point{0, 1}, orb.Point{4, 1}, zig)
	if len(c) != 2 || c[0].Point != (orb.Point{1, 1}) || c[1].Point != (orb.Point{3, 1}) || c[0].T >= c[1].T {
		t.Fatalf("zigzag: %+v", c)
	}
	if c[0].Side != LeftToRight || c[1].Side != RightToLeft {
		t.Fatalf("zigzag sides: %+v", c)
	}
}

// Crossing at a vertex whose coordinates are not exactly representable is
// still reported exactly once.
func TestSegmentCrossesLineVertexRounding(t *testing.T) {
	ls := orb.LineString{{106.1, 29.1}, {106.3, 29.3}, {106.7, 29.2}}
	for i := 0; i < 50; i++ {
		dx := float64(i-25) * 1e-3
		a := orb.Point{106.3 + dx, 29.0}
		b := orb.Point{106.3 - dx, 29.6}
		c := SegmentCrossesLine(a, b, ls)
		if len(c) != 1 {
			t.Fatalf("dx=%v: %d crossings %+v", dx, len(c), c)
		}
	}
}

func TestSegmentIntersectsPolygon(t *testing.T) {
	cases := []struct {
		a, b orb.Point
		want bool
	}{
		{orb.Point{1, 1}, orb.Point{2, 2}, true},   // inside
		{orb.Point{-1, 1}, orb.Point{1, 1}, true},  // one end inside
		{orb.Point{-1, 1}, orb.Point{11, 1}, true}, // passes through
		{orb.Point{-1, -1}, orb.Point{-1, 11}, false},
		{orb.Point{4.5, 4.5}, orb.Point{5.5, 5.5}, false}, // inside the hole
		{orb.Point{4.5, 4.5}, orb.Point{7, 7}, true},      // leaves the hole
	}
	for _, c := range cases {
		if got := SegmentIntersectsPolygon(c.a, c.b, holed); got != c.want {
			t.Errorf("SegmentIntersectsPolygon(%v,%v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestCentroid(t *testing.T) {
	p, ok := Centroid(orb.Polygon{{{0, 0}, {4, 0}, {4, 2}, {0, 2}, {0, 0}}})
	if !ok || p != (orb.Point{2, 1}) {
		t.Errorf("rectangle centroid %v", p)
	}
	// Clockwise ring gives the same centroid.
	p, _ = Centroid(orb.Polygon{{{0, 0}, {0, 2}, {4, 2}, {4, 0}, {0, 0}}})
	if p != (orb.Point{2, 1}) {
		t.Errorf("clockwise centroid %v", p)
	}
	// Holed square: centroid (5,5) is in the hole, so a point inside instead.
	p, ok = Centroid(holed)
	if !ok || !PointInPolygon(p, holed) {
		t.Errorf("holed centroid %v not inside", p)
	}
	// C shape: area centroid falls in the notch.
	c := orb.Polygon{{{0, 0}, {10, 0}, {10, 2}, {2, 2}, {2, 8}, {10, 8}, {10, 10}, {0, 10}, {0, 0}}}
	p, ok = Centroid(c)
	if !ok || !PointInPolygon(p, c) {
		t.Errorf("C centroid %v not inside", p)
	}
	p, ok = Centroid(orb.LineString{{0, 0}, {2, 0}, {2, 2}})
	if !ok || p != (orb.Point{2, 0}) {
		t.Errorf("line midpoint %v", p)
	}
	p, _ = Centroid(orb.MultiLineString{{{0, 0}, {1, 0}}, {{0, 5}, {10, 5}}})
	if p != (orb.Point{5, 5}) {
		t.Errorf("multiline midpoint %v", p)
	}
	p, _ = Centroid(orb.MultiPolygon{{{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}}, {{{10, 0}, {11, 0}, {11, 1}, {10, 1}, {10, 0}}}})
	if !PointInMultiPolygon(p, orb.MultiPolygon{{{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}}, {{{10, 0}, {11, 0}, {11, 1}, {10, 1}, {10, 0}}}}) {
		t.Errorf("multipolygon rep %v outside", p)
	}
	if p, _ = Centroid(orb.Point{3, 4}); p != (orb.Point{3, 4}) {
		t.Error("point")
	}
	for _, g := range []orb.Geometry{nil, orb.LineString{}, orb.Polygon{}, orb.MultiPolygon{}, orb.MultiPoint{}, orb.Collection{}} {
		if _, ok := Centroid(g); ok {
			t.Errorf("Centroid(%#v) ok for empty", g)
		}
	}
	if p, ok = Centroid(orb.Collection{orb.LineString{}, orb.Point{1, 2}}); !ok || p != (orb.Point{1, 2}) {
		t.Error("collection")
	}
	if math.IsNaN(p[0]) {
		t.Error("NaN")
	}
}

func TestRingSelfIntersects(t *testing.T) {
	cases := []struct {
		name string
		r    orb.Ring
		want bool
	}{
		{"square", orb.Ring{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 0}}, false},
		{"open square", orb.Ring{{0, 0}, {1, 0}, {1, 1}, {0, 1}}, false},
		{"bowtie", orb.Ring{{0, 0}, {1, 1}, {1, 0}, {0, 1}, {0, 0}}, true},
		{"spike back", orb.Ring{{0, 0}, {2, 0}, {1, 0}, {1, 1}, {0, 0}}, true},
		{"triangle", orb.Ring{{0, 0}, {1, 0}, {0, 1}, {0, 0}}, false},
		{"C shape", orb.Ring{{0, 0}, {10, 0}, {10, 2}, {2, 2}, {2, 8}, {10, 8}, {10, 10}, {0, 10}, {0, 0}}, false},
		{"touching vertex", orb.Ring{{0, 0}, {2, 0}, {1, 1}, {2, 2}, {0, 2}, {1, 1}, {0, 0}}, true},
	}
	for _, c := range cases {
		if got := RingSelfIntersects(c.r); got != c.want {
			t.Errorf("%s: RingSelfIntersects = %v, want %v", c.name, got, c.want)
		}
	}
}

func BenchmarkPointInPolygon(b *testing.B) {
	// A 200-vertex circle-ish street polygon.
	r := make(orb.Ring, 0, 201)
	for i := 0; i < 200; i++ {
		a := float64(i) / 200 * 2 * math.Pi
		r = append(r, orb.Point{106.5 + 0.01*math.Cos(a), 29.5 + 0.01*math.Sin(a)})
	}
	r = append(r, r[0])
	poly := orb.Polygon{r}
	p := orb.Point{106.503, 29.502}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = PointInPolygon(p, poly)
	}
}

func BenchmarkSegmentCrossesLine(b *testing.B) {
	ls := make(orb.LineString, 0, 50)
	for i := 0; i < 50; i++ {
		ls = append(ls, orb.Point{106.5 + float64(i)*0.001, 29.5 + float64(i%2)*0.0005})
	}
	a, c := orb.Point{106.5205, 29.49}, orb.Point{106.5205, 29.51}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = SegmentCrossesLine(a, c, ls)
	}
}
