package twin

import (
	"math"

	"github.com/citytwin/citytwin/twin/internal/rtree"
	"github.com/paulmach/orb"
)

// boxTree is one layer's spatial index: an R-tree of the features by their
// bounds, held as float32 boxes rounded outward (a point's one float32 step
// wide, held in a leaf of points: ~18 B a point packed, not ~27). A leaf entry of float64
// boxes cost ~57 B per object at a million vehicles (a 2.6 KB leaf of 64
// entries, about 45 used); float32 boxes make the leaf 1.5 KB (issue 16
// goal 4), and 63 entries a node (twin/internal/rtree) keep it in the
// 1536-B size class rather than the 1792-B one. A rounded box contains the
// exact one, so the tree finds every object the exact box would, and a few
// more by at most one float32 step (under a metre at city longitudes);
// search drops those with the exact bounds (only for an object whose
// rounded box overlaps the query by a float32 step or less:
// surelyIntersects), and Nearest orders objects by
// their exact box distance (nearby).
//
// The zero boxTree is empty and ready; it is not safe for concurrent writes
// (the twin's lock guards it).
type boxTree struct {
	tr rtree.Tree[*Feature]
}

// down32 is the largest float32 at or below v.
func down32(v float64) float32 {
	f := float32(v)
	if float64(f) > v {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return f
}

// up32 is the smallest float32 at or above v.
func up32(v float64) float32 {
	f := float32(v)
	if float64(f) < v {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// box32 is b rounded outward to float32, at least one float32 step wide on
// each axis: a point's box is then always one step wide (rtree.IsPoint),
// even where its coordinates are float32s already, and the index holds it
// in 8 B, not 16 (rtree's leaves of points).
func box32(b orb.Bound) (lo, hi [2]float32) {
	for i := range 2 {
		lo[i], hi[i] = down32(b.Min[i]), up32(b.Max[i])
		if lo[i] == hi[i] {
			hi[i] = math.Nextafter32(hi[i], float32(math.Inf(1)))
		}
	}
	return lo, hi
}

// Len is the number of objects indexed.
func (x *boxTree) Len() int { return x.tr.Len() }

// insert adds f, which has a geometry.
func (x *boxTree) insert(f *Feature) {
	lo, hi := box32(f.Geometry.Bound())
	x.tr.Insert(lo, hi, f)
}

// packedPerNode is how many entries fill puts in a node: 56 of 63, so a
// packed tree holds a point in ~19 B (leaves of points; ~28 B in leaves
// of boxes; an insertion-built one, its nodes about 70 % full, ~24 and
// ~35 B), and a node takes seven more objects (moving vehicles, new ones)
// before it splits (issue 16 goal 4). Full nodes (63) hold a box in ~25 B
// but split at the first arrival: after 200k vehicles each stepped ~100 m
// twice, 40.0 B against 34.8 with 56 in leaves of boxes (23.5 in leaves of
// points; BenchmarkIndexChurn).
const packedPerNode = 56

// fill adds fs, which have geometries, packed (rtree.Tree.Fill) when the
// tree is empty (a layer's first load), otherwise one by one.
func (x *boxTree) fill(fs []*Feature) {
	es := make([]rtree.Entry[*Feature], len(fs))
	for i, f := range fs {
		lo, hi := box32(f.Geometry.Bound())
		es[i] = rtree.Entry[*Feature]{Min: lo, Max: hi, Data: f}
	}
	x.tr.Fill(es, packedPerNode)
}

// remove removes f, inserted with the same geometry (features are
// immutable, so its box rounds the same).
func (x *boxTree) remove(f *Feature) {
	lo, hi := box32(f.Geometry.Bound())
	x.tr.Delete(lo, hi, f)
}

// replace puts f in the place of old, both with geometries (Tree.Replace:
// in place when f's box lies in old's leaf's box).
func (x *boxTree) replace(old, f *Feature) {
	olo, ohi := box32(old.Geometry.Bound())
	lo, hi := box32(f.Geometry.Bound())
	x.tr.Replace(olo, ohi, old, lo, hi, f)
}

// search calls fn for each object whose exact bounds intersect b (edges
// included, as orb.Bound.Intersects), until fn returns false.
func (x *boxTree) search(b orb.Bound, fn func(*Feature) bool) {
	lo, hi := box32(b)
	x.tr.Search(lo, hi, func(min, max [2]float32, f *Feature) bool {
		if !surelyIntersects(min, max, b) && !f.Geometry.Bound().Intersects(b) {
			return true
		}
		return fn(f)
	})
}

// surelyIntersects reports whether the exact box that rounded outward to
// min, max intersects b, by the rounded box alone: the exact box's
// minimum lies below the float32 after min, its maximum above the one
// before max, so a rounded box overlapping b by more than a float32 step
// has an exact box that intersects it. Only the hits along b's edges are
// then read (a polygon's bounds walked through its interface: 2-4 % of a
// centre z15 tile's CPU when every hit not inside b was).
func surelyIntersects(min, max [2]float32, b orb.Bound) bool {
	up, down := float32(math.Inf(1)), float32(math.Inf(-1))
	return float64(math.Nextafter32(min[0], up)) <= b.Max[0] && float64(math.Nextafter32(min[1], up)) <= b.Max[1] &&
		float64(math.Nextafter32(max[0], down)) >= b.Min[0] && float64(math.Nextafter32(max[1], down)) >= b.Min[1]
}

// nearby calls fn for the objects in increasing order of dist of their
// rounded boxes, until fn returns false: a lower bound of the distance of
// each object's exact box, never more than one float32 step short of it.
// It reads no object (the walk stays in the tree's nodes, under the twin's
// lock); Nearest orders by the exact distances afterwards (hitHeap). dist
// must not grow when a box grows (a distance from a point does not).
func (x *boxTree) nearby(dist func(min, max [2]float64) float64, fn func(f *Feature, lower float64) bool) {
	x.tr.Nearby(func(min, max [2]float32, _ *Feature, _ bool) float64 {
		return dist([2]float64{float64(min[0]), float64(min[1])}, [2]float64{float64(max[0]), float64(max[1])})
	}, func(_, _ [2]float32, f *Feature, lower float64) bool {
		return fn(f, lower)
	})
}

// hitHeap is a min-heap of hits by distance (not container/heap: its
// Push boxes every hit into an interface, an allocation each).
type hitHeap []hit

func (h *hitHeap) push(x hit) {
	*h = append(*h, x)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].d <= q[i].d {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *hitHeap) pop() hit {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = hit{}
	q = q[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && q[c+1].d < q[c].d {
			c++
		}
		if q[i].d <= q[c].d {
			break
		}
		q[i], q[c] = q[c], q[i]
		i = c
	}
	*h = q
	return top
}
