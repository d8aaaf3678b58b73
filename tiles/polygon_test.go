package tiles

import (
	"reflect"
	"slices"
	"testing"

	"github.com/paulmach/orb"
)

// TestClipPolygon: clipping at the buffered tile edge gives separate
// valid polygons (never zero-width bridges along the edge) with the exact
// area inside the box, holes that cross the edge open into the exterior,
// and a box wholly inside a polygon becomes the box.
func TestClipPolygon(t *testing.T) {
	const lo, hi = clipLo, clipHi
	rect := func(x0, y0, x1, y1 float64) []orb.Point {
		return []orb.Point{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}}
	}
	// An arch (∩) whose top lies above the tile: two legs inside.
	arch := []orb.Point{{100, 1000}, {100, -500}, {900, -500}, {900, 1000}, {700, 1000}, {700, -300}, {300, -300}, {300, 1000}}
	for _, c := range []struct {
		name  string
		rings [][]orb.Point
		polys int
		area  float64 // total, holes subtracted
	}{
		{"inside", [][]orb.Point{rect(0, 0, 10, 10)}, 1, 100},
		{"outside", [][]orb.Point{rect(5000, 0, 5010, 10)}, 0, 0},
		{"arch", [][]orb.Point{arch}, 2, 2 * 200 * (1000 - lo)},
		{"cover", [][]orb.Point{rect(-9000, -9000, 9000, 9000)}, 1, (hi - lo) * (hi - lo)},
		{"cover with hole", [][]orb.Point{rect(-9000, -9000, 9000, 9000), rect(10, 10, 20, 20)}, 1, (hi-lo)*(hi-lo) - 100},
		{"hole crossing", [][]orb.Point{rect(-9000, 0, 9000, 1000), rect(4000, 100, 5000, 200)}, 1, (hi-lo)*1000 - (hi-4000)*100},
		{"hole outside", [][]orb.Point{rect(-9000, 0, 9000, 1000), rect(5000, 100, 6000, 200)}, 1, (hi - lo) * 1000},
	} {
		polys := clipPolygon(c.rings)
		if len(polys) != c.polys {
			t.Errorf("%s: %d polygons, want %d: %v", c.name, len(polys), c.polys, polys)
			continue
		}
		var w writer
		w.sh.reset(kindPolygon)
		area := 0.0
		for _, p := range polys {
			for i, r := range p {
				w.sh.addPart(r, i == 0)
				area += surveyor(r) / 2
			}
		}
		if area != c.area {
			t.Errorf("%s: area %v, want %v: %v", c.name, area, c.area, polys)
		}
		if a, b := w.invalidPair(); a >= 0 {
			t.Errorf("%s: parts %d and %d invalid: %v", c.name, a, b, polys)
		}
	}
}

// TestShapeMakesPolygonsValid: a spike and a ring that simplification
// makes cross itself come out valid, and a bow tie (invalid after
// rounding) loses its offending part instead of reaching the tile.
func TestShapeMakesPolygonsValid(t *testing.T) {
	for _, c := range []struct {
		name string
		g    orb.Polygon
		tol  float64
		ok   bool
	}{
		{"spike", orb.Polygon{{{0, 0}, {100, 0}, {100, 100}, {100, 200}, {100, 100}, {0, 100}, {0, 0}}}, 1, true},
		// A deep notch over a shallow V: simplified at tolerance 10 the
		// V becomes straight and passes above the notch's tip.
		{"simplified crossing", orb.Polygon{{{0, 10}, {500, 2}, {1000, 10}, {1000, 1000}, {505, 1000}, {500, 5},
			{495, 1000}, {0, 1000}, {0, 10}}}, 10, true},
		{"bow tie", orb.Polygon{{{0, 0}, {100, 100}, {100, 0}, {0, 100}, {0, 0}}}, 1, false},
	} {
		var w writer
		load := func() bool { w.sh.flatten(c.g); return true }
		ok := w.shape(load, c.tol)
		if ok {
			if a, b := w.invalidPair(); a >= 0 {
				t.Errorf("%s: parts %d, %d invalid: %v", c.name, a, b, w.sh.pts)
			}
		}
		if ok != c.ok {
			t.Errorf("%s: drawn %v, want %v: %v", c.name, ok, c.ok, w.sh.pts)
		}
		if c.name == "simplified crossing" && ok && len(w.sh.pts) != 8 {
			t.Errorf("%s: %v, want the unsimplified ring", c.name, w.sh.pts)
		}
	}
}

// TestClipperReuse: one writer clipping shapes one after another (its
// clipper's scratch reused) gives each the parts a fresh writer gives it,
// multipolygons and holes included.
func TestClipperReuse(t *testing.T) {
	rect := func(x0, y0, x1, y1 float64) orb.Ring {
		return orb.Ring{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}
	}
	arch := orb.Ring{{100, 1000}, {100, -500}, {900, -500}, {900, 1000}, {700, 1000}, {700, -300}, {300, -300}, {300, 1000}, {100, 1000}}
	shapes := []orb.Geometry{
		orb.Polygon{arch},
		orb.MultiPolygon{{rect(-9000, 0, 9000, 1000), rect(4000, 100, 5000, 200), rect(100, 100, 200, 200)},
			{rect(-100, 2000, 300, 2500)}, {rect(10, 3000, 20, 3010)}},
		orb.Polygon{rect(-9000, -9000, 9000, 9000), rect(10, 10, 20, 20)},
		orb.Polygon{rect(5000, 0, 5010, 10)},
		orb.MultiPolygon{{arch}, {rect(-50, -50, 4200, 50), rect(0, 0, 10, 10)}},
		orb.Polygon{rect(-100, 4000, 50, 4300)},
	}
	clipped := func(w *writer, g orb.Geometry) shape {
		w.sh.flatten(g)
		if !w.clipPolygons() {
			return shape{}
		}
		return shape{kind: w.sh.kind, pts: slices.Clone(w.sh.pts), parts: slices.Clone(w.sh.parts)}
	}
	var reused writer
	for round := range 2 {
		for i, g := range shapes {
			var fresh writer
			want := clipped(&fresh, g)
			if got := clipped(&reused, g); !reflect.DeepEqual(got, want) {
				t.Errorf("round %d, shape %d: %+v, want %+v", round, i, got, want)
			}
		}
	}
}
