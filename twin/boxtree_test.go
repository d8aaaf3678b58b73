package twin

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin/internal/rtree"
	"github.com/paulmach/orb"
)

// TestBoxTreeMatchesScan checks the float32 R-tree (boxtree.go) against a
// brute-force scan of the exact float64 bounds: Search must return exactly
// the objects whose bounds intersect the box (edges included) and Nearest
// every object in the order and at the distances of the exact boxes. The
// coordinates come from a small lattice, and query edges are set on object
// coordinates and one float64 step beside them, where float32 rounding
// would otherwise add or drop an object. Once with a tree built by Put,
// once with one packed by Load (boxTree.fill) and then changed by Put and
// Delete. TWIN_BOXTREE_SEED=N reruns a seed.
func TestBoxTreeMatchesScan(t *testing.T) {
	seed := testseed.Seed(t, "TWIN_BOXTREE_SEED")
	r := rand.New(rand.NewPCG(seed, 1))
	coord := func(base float64) float64 {
		switch r.IntN(3) {
		case 0: // a lattice: many objects share coordinates and edges
			return base + float64(r.IntN(200))*1e-4
		case 1: // float32-exact values
			return float64(float32(base + r.Float64()*0.02))
		}
		return base + r.Float64()*0.02
	}
	point := func() orb.Point { return orb.Point{coord(106.5), coord(29.5)} }
	geom := func() orb.Geometry {
		p := point()
		switch r.IntN(4) {
		case 0:
			w, h := 1e-5+r.Float64()*1e-3, 1e-5+r.Float64()*1e-3
			return orb.Polygon{{p, {p[0] + w, p[1]}, {p[0] + w, p[1] + h}, {p[0], p[1] + h}, p}}
		case 1:
			return orb.LineString{p, point()}
		}
		return p
	}
	for _, load := range []bool{false, true} {
		tw := New(Options{})
		model := map[ID]orb.Geometry{}
		var ids []ID
		// With load, the objects are loaded (a packed tree, boxTree.fill),
		// some of them twice (the later one stays) and some without a
		// geometry.
		var loaded []*Feature
		for i := range 3000 {
			id := NewID(Buildings, fmt.Sprintf("b%d", i))
			f := &Feature{ID: id, Geometry: geom()}
			ids = append(ids, id)
			if load {
				if r.IntN(10) == 0 {
					loaded = append(loaded, &Feature{ID: id, Geometry: geom()})
				}
				if r.IntN(20) == 0 {
					f.Geometry = nil
				}
				loaded = append(loaded, f)
				if f.Geometry != nil {
					model[id] = f.Geometry
				}
				continue
			}
			if _, err := tw.Put(f); err != nil {
				t.Fatal(err)
			}
			model[id] = f.Geometry
		}
		tw.Load(loaded)
		// Moves and removals, so that removal finds the rounded boxes.
		for range 1500 {
			id := ids[r.IntN(len(ids))]
			if _, ok := model[id]; ok && r.IntN(3) == 0 {
				if _, err := tw.Delete(id); err != nil {
					t.Fatal(err)
				}
				delete(model, id)
				continue
			}
			f := &Feature{ID: id, Geometry: geom()}
			if _, err := tw.Put(f); err != nil {
				t.Fatal(err)
			}
			model[id] = f.Geometry
		}
		// Query edges: an object's coordinate, one float64 step either side
		// of it, or anywhere.
		var xs, ys []float64
		for _, id := range ids { // not the map: a seed must give the same queries
			g, ok := model[id]
			if !ok {
				continue
			}
			b := g.Bound()
			xs = append(xs, b.Min[0], b.Max[0])
			ys = append(ys, b.Min[1], b.Max[1])
		}
		edge := func(vs []float64, base float64) float64 {
			switch r.IntN(4) {
			case 0:
				return coord(base)
			case 1:
				v := vs[r.IntN(len(vs))]
				return math.Nextafter(v, math.Inf(1-2*r.IntN(2)))
			}
			return vs[r.IntN(len(vs))]
		}
		for q := range 400 {
			x0, x1 := edge(xs, 106.5), edge(xs, 106.5)
			y0, y1 := edge(ys, 29.5), edge(ys, 29.5)
			b := orb.Bound{Min: orb.Point{min(x0, x1), min(y0, y1)}, Max: orb.Point{max(x0, x1), max(y0, y1)}}
			var want, got []string
			for id, g := range model {
				if g.Bound().Intersects(b) {
					want = append(want, id.Name)
				}
			}
			tw.Search(Buildings, b, func(f *Feature) bool {
				got = append(got, f.ID.Name)
				return true
			})
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("load %v, query %d: Search(%v) = %d objects, the scan finds %d\n got %v\nwant %v", load, q, b, len(got), len(want), got, want)
			}
		}
		for q := range 100 {
			p := orb.Point{edge(xs, 106.5), edge(ys, 29.5)}
			kx := math.Cos(p[1]*math.Pi/180) * metresPerDegree
			dist := map[ID]float64{}
			var want []float64
			for id, g := range model {
				b := g.Bound()
				dx := axisGap(p[0], b.Min[0], b.Max[0]) * kx
				dy := axisGap(p[1], b.Min[1], b.Max[1]) * metresPerDegree
				dist[id] = math.Sqrt(dx*dx + dy*dy)
				want = append(want, dist[id])
			}
			slices.Sort(want)
			k := 1 + r.IntN(300) // past the first chunk of 64
			var got []float64
			seen := map[ID]bool{}
			tw.Nearest(Buildings, p, func(f *Feature, d float64) bool {
				if seen[f.ID] {
					t.Fatalf("load %v, query %d: Nearest(%v) yielded %s twice", load, q, p, f.ID)
				}
				seen[f.ID] = true
				if d != dist[f.ID] {
					t.Fatalf("load %v, query %d: Nearest(%v) gave %s at %v m, its exact box is at %v m", load, q, p, f.ID, d, dist[f.ID])
				}
				got = append(got, d)
				return len(got) < k
			})
			if !slices.Equal(got, want[:k]) {
				t.Fatalf("load %v, query %d: Nearest(%v) distances\n got %v\nwant %v", load, q, p, got, want[:k])
			}
		}
	}
}

// TestBox32Outward: a float32 box rounded outward contains the float64 one
// and is the tightest that does.
func TestBox32Outward(t *testing.T) {
	for _, v := range []float64{0, 1, -1, 106.55, -29.123456789, 180, -180, 90, math.SmallestNonzeroFloat64, float64(float32(106.55))} {
		lo, hi := down32(v), up32(v)
		if float64(lo) > v || float64(hi) < v {
			t.Fatalf("%v: [%v, %v] does not contain it", v, lo, hi)
		}
		if float64(lo) != v && float64(math.Nextafter32(lo, float32(math.Inf(1)))) <= v {
			t.Fatalf("%v: %v is not the largest float32 at or below it", v, lo)
		}
		if float64(hi) != v && float64(math.Nextafter32(hi, float32(math.Inf(-1)))) >= v {
			t.Fatalf("%v: %v is not the smallest float32 at or above it", v, hi)
		}
		if float64(float32(v)) == v && (lo != float32(v) || hi != float32(v)) {
			t.Fatalf("%v is a float32 and was rounded to [%v, %v]", v, lo, hi)
		}
	}
}

// BenchmarkSearchPoints: a viewport search and a 10-nearest query over
// 200k points, the reads the float32 boxes must not slow down.
func BenchmarkSearchPoints(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	tw := New(Options{})
	fs := make([]*Feature, 200_000)
	for i := range fs {
		fs[i] = &Feature{ID: NewID(Vehicles, fmt.Sprintf("v%d", i)), Geometry: orb.Point{106.4 + r.Float64()*0.4, 29.4 + r.Float64()*0.4}}
	}
	tw.Load(fs)
	b.Run("search", func(b *testing.B) {
		n := 0
		for b.Loop() {
			x, y := 106.4+r.Float64()*0.36, 29.4+r.Float64()*0.36
			tw.Search(Vehicles, orb.Bound{Min: orb.Point{x, y}, Max: orb.Point{x + 0.04, y + 0.04}}, func(*Feature) bool { n++; return true })
		}
	})
	b.Run("nearest10", func(b *testing.B) {
		for b.Loop() {
			k := 0
			tw.Nearest(Vehicles, orb.Point{106.4 + r.Float64()*0.4, 29.4 + r.Float64()*0.4}, func(*Feature, float64) bool { k++; return k < 10 })
		}
	})
}

// BenchmarkIndexChurn reports the index's bytes per point (index-B/obj:
// its nodes in their size classes) for 200k vehicles in a 0.5-degree box, loaded
// (a packed tree, boxTree.fill) or put one by one (built by insertion),
// then after every vehicle moved once and twice: a step of up to ~100 m
// (a fleet's telemetry), or a jump to anywhere in the box (each move
// leaves a hole in one leaf and adds to another).
func BenchmarkIndexChurn(b *testing.B) {
	const vehicles = 200_000
	for _, how := range []string{"load", "put"} {
		for _, move := range []string{"step", "jump"} {
			b.Run(how+"/"+move, func(b *testing.B) {
				for b.Loop() {
					r := rand.New(rand.NewPCG(1, 2))
					pos := func() orb.Point { return orb.Point{106.3 + r.Float64()*0.5, 29.3 + r.Float64()*0.5} }
					tw := New(Options{FeedSize: 1 << 10})
					fs := make([]*Feature, vehicles)
					at := make([]orb.Point, vehicles)
					for i := range fs {
						at[i] = pos()
						fs[i] = &Feature{ID: NewID(Vehicles, fmt.Sprintf("v%06d", i)), Geometry: at[i]}
					}
					if how == "load" {
						tw.Load(fs)
					} else {
						for _, f := range fs {
							if _, err := tw.Put(f); err != nil {
								b.Fatal(err)
							}
						}
					}
					perObject := func() float64 {
						return float64(tw.index[tw.layerIndex(Vehicles)].tr.Bytes()) / vehicles
					}
					b.ReportMetric(perObject(), "index-B/obj")
					t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
					for round := 1; round <= 2; round++ {
						for i, f := range fs {
							if move == "jump" {
								at[i] = pos()
							} else {
								at[i] = orb.Point{at[i][0] + (r.Float64()-0.5)*2e-3, at[i][1] + (r.Float64()-0.5)*2e-3}
							}
							if _, _, err := tw.ApplySample(Sample{ID: f.ID, Time: t0.Add(time.Duration(round*vehicles+i) * time.Millisecond), HasPos: true, Pos: at[i]}); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(perObject(), fmt.Sprintf("moved%d-index-B/obj", round))
					}
				}
			})
		}
	}
}

// TestBox32Point: a point's box is one float32 step wide on each axis,
// float32 coordinates or not (the index holds it in a leaf of points),
// and contains the point; other boxes keep their tightest rounding.
func TestBox32Point(t *testing.T) {
	for _, p := range []orb.Point{{106.55, 29.5}, {float64(float32(106.55)), 29.5}, {0, 0}, {-180, 90}, {106.5, float64(float32(29.123))}} {
		lo, hi := box32(orb.Bound{Min: p, Max: p})
		if !rtree.IsPoint(lo, hi) {
			t.Fatalf("%v: box [%v, %v] is not a point's", p, lo, hi)
		}
		for i := range 2 {
			if float64(lo[i]) > p[i] || float64(hi[i]) < p[i] {
				t.Fatalf("%v: box [%v, %v] does not contain it", p, lo, hi)
			}
		}
	}
	lo, hi := box32(orb.Bound{Min: orb.Point{1, 2}, Max: orb.Point{3, 4}})
	if lo != [2]float32{1, 2} || hi != [2]float32{3, 4} {
		t.Fatalf("box [1 2, 3 4] rounded to [%v, %v]", lo, hi)
	}
}
