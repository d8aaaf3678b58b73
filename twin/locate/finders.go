package locate

import (
	"github.com/paulmach/orb"
	"github.com/tidwall/rtree"

	"github.com/citytwin/citytwin/spatial/hex"
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

// bucketRes is the H3 resolution of the bucket index: res-8 cells average
// 0.74 km², small enough that most of a street's area is in cells wholly
// inside it, coarse enough that a whole district is a few thousand cells.
const bucketRes = 8

// bucket lists the regions that may contain a point of one res-8 cell.
type bucket struct {
	full  *region   // the cell lies wholly inside this region: no test needed
	cands []*region // the region's boundary passes near the cell: test p
}

// buckets finds candidates by the point's res-8 parent cell: cells wholly
// inside one region answer without any polygon test.
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
	for _, r := range rs { // sorted by code
		// The boundary cells, widened by one ring, are a conservative set of
		// every cell the boundary could clip; a cell outside it whose centre
		// is inside lies wholly inside.
		edge := map[uint64]bool{}
		for _, c := range hex.BoundaryCover(r.geom, bucketRes) {
			for _, n := range hex.Disk(c, 1) {
				edge[n] = true
			}
		}
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

func (b *buckets) find(p orb.Point, cell uint64) *region {
	x := b.m[hex.Parent(cell, bucketRes)]
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
