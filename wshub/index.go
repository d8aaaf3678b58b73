package wshub

import (
	"math"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Routing buckets subscriptions by web-mercator tile at a fixed zoom, per
// layer, so that routing one change costs the subscribers near it, not every
// subscriber: a change looks up the tiles of its old and new bounds.
const (
	// bucketZoom is the tile zoom of the buckets. A z13 tile is 0.044
	// degrees of longitude, about 4.3 x 3.8 km at Chongqing's latitude: a
	// street-level viewport (z14..z17) covers one to four of them, a
	// district view (z12) a dozen, the whole demo city about 80.
	bucketZoom = 13
	// maxBucketTiles is how many z13 tiles a bbox may cover before its
	// subscription goes to the layer's global bucket (checked on every
	// change of the layer) instead of per-tile buckets: 256 tiles is about
	// 70 x 60 km, more than the city core.
	maxBucketTiles = 256
	// maxLat is the web-mercator latitude limit.
	maxLat = 85.05112878
)

// tileKey packs the bucket tile's x and y (each < 1<<bucketZoom).
type tileKey uint32

// tileRange is the inclusive range of bucket tiles covering a bound.
type tileRange struct{ x0, y0, x1, y1 uint32 }

func (r tileRange) count() int { return int(r.x1-r.x0+1) * int(r.y1-r.y0+1) }

func (r tileRange) each(fn func(tileKey)) {
	for x := r.x0; x <= r.x1; x++ {
		for y := r.y0; y <= r.y1; y++ {
			fn(tileKey(x<<bucketZoom | y))
		}
	}
}

func tileOf(p orb.Point) (x, y uint32) {
	const n = 1 << bucketZoom
	lon := math.Max(-180, math.Min(180, p[0]))
	lat := math.Max(-maxLat, math.Min(maxLat, p[1])) * math.Pi / 180
	fx := (lon + 180) / 360 * n
	fy := (1 - math.Log(math.Tan(lat)+1/math.Cos(lat))/math.Pi) / 2 * n
	return uint32(math.Max(0, math.Min(n-1, fx))), uint32(math.Max(0, math.Min(n-1, fy)))
}

func tilesOf(b orb.Bound) tileRange {
	if b.Min == b.Max { // a point (most changes: vehicles): one projection, not two
		x, y := tileOf(b.Min)
		return tileRange{x, y, x, y}
	}
	x0, y0 := tileOf(orb.Point{b.Min[0], b.Max[1]}) // north-west
	x1, y1 := tileOf(orb.Point{b.Max[0], b.Min[1]}) // south-east
	return tileRange{x0, y0, x1, y1}
}

// layerIndex holds one layer's subscriptions. Buckets are slices, not
// sets: the router walks them for every change (a map's iteration cost
// several times a slice's), while subscribers join and leave a few times a
// second at most.
type layerIndex struct {
	tiles  map[tileKey][]*sub
	global []*sub // bboxes too large for tile buckets
	all    []*sub // every subscription of the layer
}

// index maps layers and tiles to subscriptions. It is guarded by Hub.mu:
// add and remove under the write lock, candidates under the read lock from
// the single router goroutine (candidates writes sub.mark).
type index struct {
	layers map[twin.Layer]*layerIndex
	gen    uint64 // dedup generation for candidates
}

func newIndex() *index { return &index{layers: map[twin.Layer]*layerIndex{}} }

func (ix *index) add(s *sub) {
	r := tilesOf(s.bbox)
	s.global = r.count() > maxBucketTiles
	for _, l := range s.layers {
		li := ix.layers[l]
		if li == nil {
			li = &layerIndex{tiles: map[tileKey][]*sub{}}
			ix.layers[l] = li
		}
		li.all = append(li.all, s)
		if s.global {
			li.global = append(li.global, s)
			continue
		}
		r.each(func(k tileKey) { li.tiles[k] = append(li.tiles[k], s) })
	}
}

// without removes s from subs (order is not kept).
func without(subs []*sub, s *sub) []*sub {
	for i, x := range subs {
		if x == s {
			last := len(subs) - 1
			subs[i] = subs[last]
			subs[last] = nil
			return subs[:last]
		}
	}
	return subs
}

func (ix *index) remove(s *sub) {
	r := tilesOf(s.bbox)
	for _, l := range s.layers {
		li := ix.layers[l]
		if li == nil {
			continue
		}
		li.all = without(li.all, s)
		if s.global {
			li.global = without(li.global, s)
			continue
		}
		r.each(func(k tileKey) {
			if m := without(li.tiles[k], s); len(m) > 0 {
				li.tiles[k] = m
			} else {
				delete(li.tiles, k)
			}
		})
	}
}

// candidates calls fn once for each subscription of layer l whose buckets
// meet bound a or bound b (either may be absent). fn still has to check the
// exact bbox and scope. Only the router goroutine may call it.
func (ix *index) candidates(l twin.Layer, a, b *orb.Bound, fn func(*sub)) {
	li := ix.layers[l]
	if li == nil || len(li.all) == 0 {
		return
	}
	ix.gen++
	gen := ix.gen
	for _, s := range li.global {
		s.mark = gen
		fn(s)
	}
	for _, bd := range [2]*orb.Bound{a, b} {
		if bd == nil {
			continue
		}
		r := tilesOf(*bd)
		if r.count() > len(li.tiles) {
			// A huge feature (a district polygon): scanning the occupied
			// buckets is cheaper than enumerating its tiles.
			for _, s := range li.all {
				if s.mark != gen {
					s.mark = gen
					fn(s)
				}
			}
			return
		}
		for x := r.x0; x <= r.x1; x++ {
			for y := r.y0; y <= r.y1; y++ {
				for _, s := range li.tiles[tileKey(x<<bucketZoom|y)] {
					if s.mark != gen {
						s.mark = gen
						fn(s)
					}
				}
			}
		}
	}
}
