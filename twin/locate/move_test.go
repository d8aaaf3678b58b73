package locate

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/twin"
)

// movePairs is how many random moves TestMoveMatchesH3 checks;
// TWIN_MOVE_PAIRS raises it (it was run with 5,000,000 random moves and
// 500,000 edge points: all equal to h3-go).
func movePairs(def int) int {
	if n, err := strconv.Atoi(os.Getenv("TWIN_MOVE_PAIRS")); err == nil && n > 0 {
		return n
	}
	return def
}

// TestMoveMatchesH3: LocateMove gives exactly what Locate gives, for random
// moves of up to ~500 m across the synthetic city and for points hugging
// cell edges (on both sides, down to the margin), and takes the fast path
// for most short moves.
func TestMoveMatchesH3(t *testing.T) {
	regions, streets := syntheticCity()
	l := New()
	l.Reset(regions, MakeGrids(streets))
	rng := rand.New(rand.NewPCG(7, 9))
	// withCell is a previous state: geometry g, one cell c.
	withCell := func(g orb.Geometry, c uint64) *twin.Feature {
		f := &twin.Feature{Geometry: g}
		f.SetCell(c)
		return f
	}
	check := func(p orb.Point, prev *twin.Feature) bool {
		t.Helper()
		gc, gr, gg := locateMove3(l, p, prev)
		wc, wr, wg := locate3(l, p)
		if !slices.Equal(gc, wc) || !slices.Equal(gr, wr) || gg != wg {
			t.Fatalf("move to %v from %v: got %v %v %q, want %v %v %q", p, prev.Cells(), gc, gr, gg, wc, wr, wg)
		}
		return len(prev.Cells()) == 1 && len(gc) == 1 && &gc[0] == &prev.Cells()[0]
	}
	// Warm the outline cache as lingering objects do.
	for _, q := range randomPoints(4096) {
		c := hex.PointCell(q, hex.PointRes)
		check(q, withCell(q, c))
	}
	starts := randomPoints(4096)
	n := movePairs(100000)
	fast := 0
	for i := 0; i < n; i++ {
		q := starts[i%len(starts)]
		step := 0.005 * rng.Float64() * rng.Float64() // mostly short moves
		a := rng.Float64() * 2 * math.Pi
		p := orb.Point{q[0] + step*math.Cos(a), q[1] + step*math.Sin(a)}
		prev := withCell(q, hex.PointCell(q, hex.PointRes))
		if check(p, prev) {
			fast++
		}
	}
	if fast < n/2 {
		t.Fatalf("fast path taken for %d of %d moves", fast, n)
	}
	// Points at and around every edge of cells near the start points, at
	// offsets across the margin on both sides.
	offs := []float64{-1e-5, -2e-6, -1e-6, -5e-7, 0, 5e-7, 9.9e-7, 1e-6, 1.01e-6, 1.5e-6, 2e-6, 1e-5}
	m := movePairs(100000) / 10
	edge := 0
	for i := 0; edge < m; i++ {
		c := hex.PointCell(starts[i%len(starts)], hex.PointRes)
		r := hex.CellPolygon(c)[0]
		prev := withCell(hex.CellCenter(c), c)
		l.shapes.get(c, nil, nil, false) // as if built under an index since replaced
		for k := 0; k+1 < len(r); k++ {
			a, b := r[k], r[k+1]
			ex, ey := b[0]-a[0], b[1]-a[1]
			ln := math.Hypot(ex, ey)
			nx, ny := -ey/ln, ex/ln // inward for the counter-clockwise ring
			u := rng.Float64()
			for _, d := range offs {
				check(orb.Point{a[0] + u*ex + d*nx, a[1] + u*ey + d*ny}, prev)
				edge++
			}
		}
	}
	// No previous cell, a polygon, or nil: plain Locate.
	p := starts[0]
	check(p, &twin.Feature{})
	check(p, withCell(orb.Polygon{{p, p, p}}, 1))
	if gc, _, _ := locateMove3(l, p, nil); len(gc) != 1 || gc[0] != hex.PointCell(p, hex.PointRes) {
		t.Fatalf("nil prev: %v", gc)
	}
}

// TestMoveAfterReset: a cell's cached place (the place of every point of
// a cell no street or district boundary crosses) is not kept across a
// Reset or SetGrids that changes it: moves staying in their cells get the
// new regions and grids, as Locate does.
func TestMoveAfterReset(t *testing.T) {
	regions, _ := syntheticCity()
	l, pts, prevs := stayingObjects(2048)
	uniform := 0
	for _, prev := range prevs {
		if sh := l.shapes.lookup(prev.Cell()); sh != nil && sh.uniform {
			uniform++
		}
	}
	if uniform < len(pts)/2 {
		t.Fatalf("%d of %d cells have a uniform place; the synthetic city's streets hold most cells whole", uniform, len(pts))
	}
	moveAll := func(stage string) {
		t.Helper()
		for i, p := range pts {
			q := orb.Point{p[0] + 1e-7, p[1]} // stays in its cell
			gc, gr, gg := locateMove3(l, q, prevs[i])
			wc, wr, wg := locate3(l, q)
			if !slices.Equal(gc, wc) || !slices.Equal(gr, wr) || gg != wg {
				t.Fatalf("%s: move to %v: got %v %v %q, want %v %v %q", stage, q, gc, gr, gg, wc, wr, wg)
			}
		}
	}
	moveAll("before")
	// Every street renamed (another district prefix), the grids with them.
	renamed := make([]*twin.Feature, 0, len(regions))
	var renamedStreets []*twin.Feature
	for _, r := range regions {
		if r.Prop("level") != LevelStreet {
			renamed = append(renamed, r)
			continue
		}
		s := regionFeature(LevelStreet, r.Prop("code")+"9", r.Prop("parent"), r.Geometry.(orb.Polygon))
		renamed = append(renamed, s)
		renamedStreets = append(renamedStreets, s)
	}
	l.Reset(renamed, MakeGrids(renamedStreets))
	moveAll("after Reset")
	moveAll("after Reset, cache refreshed")
	l.SetGrids(nil)
	moveAll("after SetGrids")
	// No city polygon (a point in no district has no path, uniformly) and
	// streets without a parent (their district looked up per point).
	var noCity []*twin.Feature
	for _, r := range regions {
		switch r.Prop("level") {
		case LevelCity:
		case LevelStreet:
			noCity = append(noCity, regionFeature(LevelStreet, r.Prop("code"), "", r.Geometry.(orb.Polygon)))
		default:
			noCity = append(noCity, r)
		}
	}
	l.Reset(noCity, nil)
	moveAll("no city polygon, streets without parents")
	moveAll("no city polygon, streets without parents, cache refreshed")
	// A city polygon reaching past its districts: there only the polygon
	// test tells a point of the city from one outside it.
	w, s, e, n := originLon-0.005, originLat-0.005, originLon+4*districtW+0.005, originLat+2*districtH+0.005
	big := regionFeature(LevelCity, "500000", "", orb.Polygon{{{w, s}, {e, s}, {e, n}, {w, n}, {w, s}}})
	l.Reset(append(noCity, big), nil)
	moveAll("a city wider than its districts")
	moveAll("a city wider than its districts, cache refreshed")
}

// stayingObjects is a locator over the synthetic city and n objects, each
// seen once staying where it is (so its cell's outline and place are
// cached): their points and previous states.
func stayingObjects(n int) (*Locator, []orb.Point, []*twin.Feature) {
	regions, streets := syntheticCity()
	l := New()
	l.Reset(regions, MakeGrids(streets))
	pts := randomPoints(n)
	prevs := make([]*twin.Feature, len(pts))
	for i, p := range pts {
		prevs[i] = &twin.Feature{Geometry: p}
		prevs[i].SetCell(hex.PointCell(p, hex.PointRes))
		l.LocateMove(p, prevs[i])
	}
	return l, pts, prevs
}

// TestShapeCacheBounded: the outline cache is dropped when full.
func TestShapeCacheBounded(t *testing.T) {
	var s shapes
	c := hex.PointCell(orb.Point{106.5, 29.5}, hex.PointRes)
	if s.lookup(c) != nil {
		t.Fatal("empty cache answered")
	}
	for j := 0; j < 3; j++ {
		s.get(c, nil, nil, false)
	}
	if len(s.m) != 1 || s.lookup(c) == nil {
		t.Fatalf("cache %d", len(s.m))
	}
	one := s.m[c]
	s.m = make(map[uint64]*cellShape, maxShapes)
	for i := 0; i < maxShapes; i++ {
		s.m[uint64(i)] = one
	}
	s.get(c, nil, nil, false)
	if len(s.m) != 1 {
		t.Fatalf("full cache not dropped: %d", len(s.m))
	}
}

// BenchmarkLocateMove: a point moving ~10 m per sample, as a tracked
// vehicle does, through LocateMove and through Locate.
func BenchmarkLocateMove(b *testing.B) {
	l, pts, prevs := stayingObjects(4096)
	b.Run("move", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			j := i % len(pts)
			_, _, _ = locateMove3(l, orb.Point{pts[j][0] + 1e-4, pts[j][1]}, prevs[j])
		}
	})
	b.Run("locate", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			j := i % len(pts)
			_, _, _ = locate3(l, orb.Point{pts[j][0] + 1e-4, pts[j][1]})
		}
	})
}
