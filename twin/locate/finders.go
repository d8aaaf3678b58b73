package locate

import (
	"math"

	"github.com/paulmach/orb"
	"github.com/tidwall/rtree"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/planar"
)

// rtreeFinder finds candidates by bounding box in an R-tree, then tests
// each with point-in-polygon.
type rtreeFinder struct {
	tr rtree.RTreeG[*region]
}

func newRTreeFinder(rs []*region) *rtreeFinder {
	f := &rtreeFinder{}
	for _, r := range rs {
		f.tr.Insert(r.bound.Min, r.bound.Max, r)
	}
	return f
}

func (f *rtreeFinder) find(p orb.Point, _ uint64) *region {
	var best *region
	f.tr.Search(p, p, func(_, _ [2]float64, r *region) bool {
		if (best == nil || r.code < best.code) && r.contains(p) {
			best = r
		}
		return true
	})
	return best
}

// bucketRes is the H3 resolution of the bucket index: the point resolution,
// so the res-9 cell Locate computes anyway is the bucket key. Cells average
// 0.105 km², so most of a street is in cells wholly inside it (answered
// without a polygon test); a main urban area of ~5,000 km² is ~50,000 keys
// per level.
const bucketRes = hex.PointRes

// bucket lists the regions that may contain a point of one cell.
type bucket struct {
	full  *region   // the cell lies wholly inside this region: no test needed
	cands []*region // the region's boundary crosses the cell: test p
}

// buckets finds candidates by the point's res-9 cell: cells wholly inside
// one region answer without any polygon test.
type buckets struct {
	m map[uint64]*bucket
}

func newBuckets(rs []*region) *buckets {
	b := &buckets{m: map[uint64]*bucket{}}
	get := func(c uint64) *bucket {
		x := b.m[c]
		if x == nil {
			x = &bucket{}
			b.m[c] = x
		}
		return x
	}
	for _, r := range rs { // sorted by code, so cands stay sorted
		edge := edgeCells(r)
		for c := range edge {
			x := get(c)
			x.cands = append(x.cands, r)
		}
		for _, c := range hex.Cover(r.geom, bucketRes) {
			if edge[c] {
				continue
			}
			if x := get(c); x.full == nil || r.code < x.full.code {
				x.full = r
			}
		}
	}
	return b
}

// edgeCells returns every cell the region's boundary crosses: the sampled
// boundary cover, plus those of its neighbours that an exact
// segment-against-hexagon test finds clipped (sampling can miss a corner).
func edgeCells(r *region) map[uint64]bool {
	edge := map[uint64]bool{}
	bc := hex.BoundaryCover(r.geom, bucketRes)
	for _, c := range bc {
		edge[c] = true
	}
	var rings []orb.Ring
	switch g := r.geom.(type) {
	case orb.Polygon:
		rings = g
	case orb.MultiPolygon:
		for _, p := range g {
			rings = append(rings, p...)
		}
	}
	tested := map[uint64]bool{}
	for _, c := range bc {
		for _, n := range hex.Disk(c, 1) {
			if edge[n] || tested[n] {
				continue
			}
			tested[n] = true
			if ringsCross(rings, hex.CellPolygon(n)) {
				edge[n] = true
			}
		}
	}
	return edge
}

// ringsCross reports whether any edge of rings meets the hexagon cell.
func ringsCross(rings []orb.Ring, cell orb.Polygon) bool {
	cb := cell.Bound()
	for _, ring := range rings {
		n := len(ring)
		for i := 0; i < n; i++ {
			a, b := ring[i], ring[(i+1)%n] // also closes an open ring
			if math.Max(a[0], b[0]) < cb.Min[0] || math.Min(a[0], b[0]) > cb.Max[0] ||
				math.Max(a[1], b[1]) < cb.Min[1] || math.Min(a[1], b[1]) > cb.Max[1] {
				continue
			}
			if planar.SegmentIntersectsPolygon(a, b, cell) {
				return true
			}
		}
	}
	return false
}

// whole reports the region every point of cell finds (nil: none), when
// that needs no polygon test: no region's boundary crosses the cell.
func (b *buckets) whole(cell uint64) (r *region, ok bool) {
	x := b.m[cell]
	if x == nil {
		return nil, true
	}
	return x.full, len(x.cands) == 0
}

func (b *buckets) find(p orb.Point, cell uint64) *region {
	x := b.m[cell]
	if x == nil {
		return nil
	}
	best := x.full
	for _, r := range x.cands {
		if (best == nil || r.code < best.code) && r.contains(p) {
			best = r
		}
	}
	return best
}
