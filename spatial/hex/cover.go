package hex

import (
	"math"
	"slices"

	"github.com/paulmach/orb"
	"github.com/uber/h3-go/v4"
)

// Cover returns the cells at res that g occupies, deduplicated and sorted
// ascending:
//   - Point, MultiPoint: each point's cell.
//   - LineString, MultiLineString: every cell the line passes through,
//     sampled at a third of the average edge length so consecutive samples
//     are in the same or adjacent cells (no gaps along a road).
//   - Polygon, MultiPolygon, Ring, Bound: the cells whose centres are inside
//     (holes excluded) plus the cells the rings pass through, so even a
//     building smaller than one cell gets the cells it touches.
//   - Collection: the union of its members.
//
// A boundary that clips a cell's corner by less than the sampling step may
// miss that cell; callers needing a strictly conservative cover add Disk(c, 1)
// around the boundary cells. Cover returns nil for nil or empty geometries,
// invalid coordinates or resolution, and for polygon covers larger than
// MaxCoverCells.
func Cover(g orb.Geometry, res int) []uint64 {
	if !validRes(res) || g == nil {
		return nil
	}
	c := coverer{res: res, step: h3.HexagonEdgeLengthAvgM(res) / 3, set: map[uint64]struct{}{}}
	if !c.add(g) {
		return nil
	}
	out := make([]uint64, 0, len(c.set))
	for x := range c.set {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

// BoundaryCover returns the cells at res that the rings or lines of g pass
// through (for a point, its cell), sorted; Cover minus the polygon interior.
func BoundaryCover(g orb.Geometry, res int) []uint64 {
	if !validRes(res) || g == nil {
		return nil
	}
	c := coverer{res: res, step: h3.HexagonEdgeLengthAvgM(res) / 3, set: map[uint64]struct{}{}, noFill: true}
	if !c.add(g) {
		return nil
	}
	out := make([]uint64, 0, len(c.set))
	for x := range c.set {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

type coverer struct {
	res    int
	step   float64 // metres between samples along lines
	set    map[uint64]struct{}
	noFill bool // boundary only
}

// add puts g's cells in the set; false when g has invalid coordinates or an
// oversized polygon.
func (c *coverer) add(g orb.Geometry) bool {
	switch g := g.(type) {
	case orb.Point:
		return c.point(g)
	case orb.MultiPoint:
		for _, p := range g {
			if !c.point(p) {
				return false
			}
		}
	case orb.LineString:
		return c.line(g, false)
	case orb.MultiLineString:
		for _, l := range g {
			if !c.line(l, false) {
				return false
			}
		}
	case orb.Ring:
		return c.polygon(orb.Polygon{g})
	case orb.Polygon:
		return c.polygon(g)
	case orb.MultiPolygon:
		for _, p := range g {
			if !c.polygon(p) {
				return false
			}
		}
	case orb.Bound:
		return c.polygon(g.ToPolygon())
	case orb.Collection:
		for _, m := range g {
			if !c.add(m) {
				return false
			}
		}
	}
	return true
}

func (c *coverer) point(p orb.Point) bool {
	x := PointCell(p, c.res)
	if x == 0 {
		return false
	}
	c.set[x] = struct{}{}
	return true
}

// line samples each segment every c.step metres (distances by haversine,
// interpolation in lon/lat, which at city scale stays within metres of the
// great circle). closed adds the segment from the last point to the first.
func (c *coverer) line(ls []orb.Point, closed bool) bool {
	if len(ls) == 0 {
		return true
	}
	if !c.point(ls[0]) {
		return false
	}
	n := len(ls)
	segs := n - 1
	if closed && n > 1 && ls[0] != ls[n-1] {
		segs = n
	}
	for i := 0; i < segs; i++ {
		a, b := ls[i], ls[(i+1)%n]
		if !validPoint(b) {
			return false
		}
		k := int(math.Ceil(haversine(a, b) / c.step))
		if k > MaxCoverCells {
			return false
		}
		for j := 1; j <= k; j++ {
			t := float64(j) / float64(k)
			c.point(orb.Point{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])})
		}
	}
	return true
}

func (c *coverer) polygon(p orb.Polygon) bool {
	if len(p) == 0 || len(p[0]) == 0 {
		return true
	}
	for _, r := range p {
		if !c.line(r, true) {
			return false
		}
	}
	if c.noFill || len(p[0]) < 3 || c.tooSmallToHoldCell(p[0]) {
		return true
	}
	cells, ok := polygonToCells(p, c.res)
	if !ok {
		return false
	}
	for _, x := range cells {
		c.set[x] = struct{}{}
	}
	return true
}

// tooSmallToHoldCell reports whether ring r is narrower than any whole cell
// at c.res. Such a polygon holds no entire cell, so every cell whose centre
// it contains is also crossed by its boundary and already in the set: the
// costly polygon fill (tens of µs) can be skipped, which is the common case
// for buildings. A hexagon is √3 edges across its flats, and edges vary by
// less than a factor of 1.7 around the average; 0.9 average edge is safe.
func (c *coverer) tooSmallToHoldCell(r orb.Ring) bool {
	b := r.Bound()
	mid := (b.Min[1] + b.Max[1]) / 2
	w := haversine(orb.Point{b.Min[0], mid}, orb.Point{b.Max[0], mid})
	h := haversine(orb.Point{b.Min[0], b.Min[1]}, orb.Point{b.Min[0], b.Max[1]})
	return math.Min(w, h) < 0.9*h3.HexagonEdgeLengthAvgM(c.res)
}

// polygonToCells returns the cells whose centres are inside p. It refuses
// covers estimated above MaxCoverCells, and recovers from a panic inside
// h3-go (which indexes an empty buffer when the C call fails) so that a
// malformed polygon cannot bring down ingest.
func polygonToCells(p orb.Polygon, res int) (out []uint64, ok bool) {
	b := p[0].Bound()
	area := haversine(b.Min, orb.Point{b.Max[0], b.Min[1]}) * haversine(b.Min, orb.Point{b.Min[0], b.Max[1]})
	if area/h3.HexagonAreaAvgM2(res) > MaxCoverCells {
		return nil, false
	}
	gp := h3.GeoPolygon{GeoLoop: loop(p[0])}
	for _, h := range p[1:] {
		if len(h) >= 3 {
			gp.Holes = append(gp.Holes, loop(h))
		}
	}
	defer func() {
		if recover() != nil {
			out, ok = nil, false
		}
	}()
	cells := h3.PolygonToCells(gp, res)
	out = make([]uint64, 0, len(cells))
	for _, x := range cells {
		if x != 0 {
			out = append(out, uint64(x))
		}
	}
	return out, true
}

func loop(r orb.Ring) h3.GeoLoop {
	if n := len(r); n > 1 && r[0] == r[n-1] {
		r = r[:n-1]
	}
	l := make(h3.GeoLoop, len(r))
	for i, p := range r {
		l[i] = h3.NewLatLng(p[1], p[0])
	}
	return l
}

// haversine is the great-circle distance in metres on H3's sphere
// (R = 6371007.180918475 m is H3's authalic radius; the difference from the
// mean radius is irrelevant for sampling).
func haversine(a, b orb.Point) float64 {
	const r = 6371007.180918475
	const d2r = math.Pi / 180
	lat1, lat2 := a[1]*d2r, b[1]*d2r
	s1 := math.Sin((lat2 - lat1) / 2)
	s2 := math.Sin((b[0] - a[0]) * d2r / 2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	return 2 * r * math.Asin(math.Sqrt(math.Min(1, h)))
}
