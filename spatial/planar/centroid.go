package planar

import (
	"math"
	"sort"

	"github.com/paulmach/orb"
)

// Centroid returns a representative point of g, used to give a line or an
// area one region and one grid:
//   - Point: itself; MultiPoint: the member nearest the mean.
//   - LineString: the point halfway along its length; MultiLineString: that
//     of its longest line.
//   - Polygon, MultiPolygon, Ring, Bound: the area centroid (holes
//     subtracted); when that falls outside the area (a C-shaped street), a
//     point inside instead, on the horizontal through the centroid.
//   - Collection: that of its first non-empty member.
//
// ok is false for nil or empty geometries and for zero-area polygons whose
// boundary is also empty.
func Centroid(g orb.Geometry) (p orb.Point, ok bool) {
	switch g := g.(type) {
	case orb.Point:
		return g, true
	case orb.MultiPoint:
		return multiPointRep(g)
	case orb.LineString:
		return lineMidpoint(g)
	case orb.MultiLineString:
		best, bestLen := -1, -1.0
		for i, ls := range g {
			if l := length(ls); len(ls) > 0 && l > bestLen {
				best, bestLen = i, l
			}
		}
		if best < 0 {
			return orb.Point{}, false
		}
		return lineMidpoint(g[best])
	case orb.Ring:
		return polygonRep(orb.Polygon{g})
	case orb.Polygon:
		return polygonRep(g)
	case orb.MultiPolygon:
		return multiPolygonRep(g)
	case orb.Bound:
		return g.Center(), true
	case orb.Collection:
		for _, c := range g {
			if p, ok := Centroid(c); ok {
				return p, true
			}
		}
	}
	return orb.Point{}, false
}

func multiPointRep(mp orb.MultiPoint) (orb.Point, bool) {
	if len(mp) == 0 {
		return orb.Point{}, false
	}
	var mx, my float64
	for _, p := range mp {
		mx += p[0]
		my += p[1]
	}
	m := orb.Point{mx / float64(len(mp)), my / float64(len(mp))}
	best, bestD := mp[0], math.Inf(1)
	for _, p := range mp {
		if d := sq(p[0]-m[0]) + sq(p[1]-m[1]); d < bestD {
			best, bestD = p, d
		}
	}
	return best, true
}

func sq(v float64) float64 { return v * v }

func length(ls orb.LineString) float64 {
	var l float64
	for i := 1; i < len(ls); i++ {
		l += math.Hypot(ls[i][0]-ls[i-1][0], ls[i][1]-ls[i-1][1])
	}
	return l
}

// lineMidpoint walks half the planar length of ls. Along a city road the
// lon/lat distortion is the same at both ends, so the planar halfway point is
// the metric one to well under a metre per kilometre.
func lineMidpoint(ls orb.LineString) (orb.Point, bool) {
	if len(ls) == 0 {
		return orb.Point{}, false
	}
	half := length(ls) / 2
	for i := 1; i < len(ls); i++ {
		seg := math.Hypot(ls[i][0]-ls[i-1][0], ls[i][1]-ls[i-1][1])
		if seg >= half && seg > 0 {
			return lerp(ls[i-1], ls[i], half/seg), true
		}
		half -= seg
	}
	return ls[len(ls)-1], true
}

// ringMoments returns the signed area and the first moments of ring r
// (shoelace formula); the centroid is (cx/(6a), cy/(6a)) with a the area.
// Coordinates are taken relative to origin o: in absolute lon/lat the cross
// products of a 20 m building cancel catastrophically (metres-level error).
func ringMoments(r orb.Ring, o orb.Point) (a, cx, cy float64) {
	n := len(r)
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		x0, y0 := r[j][0]-o[0], r[j][1]-o[1]
		x1, y1 := r[i][0]-o[0], r[i][1]-o[1]
		c := x0*y1 - x1*y0
		a += c
		cx += (x0 + x1) * c
		cy += (y0 + y1) * c
	}
	return a / 2, cx, cy
}

// polygonMoments sums outer ring minus holes, whatever their orientation.
// Moments are relative to origin o.
func polygonMoments(poly orb.Polygon, o orb.Point) (a, cx, cy float64) {
	for i, r := range poly {
		ra, rx, ry := ringMoments(r, o)
		s := 1.0
		if (ra < 0) != (i > 0) { // outer must count positive, holes negative
			s = -1
		}
		a += s * ra
		cx += s * rx
		cy += s * ry
	}
	return a, cx, cy
}

func polygonRep(poly orb.Polygon) (orb.Point, bool) {
	if len(poly) == 0 || len(poly[0]) == 0 {
		return orb.Point{}, false
	}
	o := poly[0][0]
	a, cx, cy := polygonMoments(poly, o)
	if a <= 0 {
		// Degenerate (zero area): fall back to the outline's midpoint.
		return lineMidpoint(orb.LineString(poly[0]))
	}
	c := orb.Point{o[0] + cx/(6*a), o[1] + cy/(6*a)}
	if PointInPolygon(c, poly) {
		return c, true
	}
	if p, ok := interiorPoint(poly, c[1]); ok {
		return p, true
	}
	b := poly[0].Bound()
	if p, ok := interiorPoint(poly, (b.Min[1]+b.Max[1])/2); ok {
		return p, true
	}
	return c, true
}

func multiPolygonRep(mp orb.MultiPolygon) (orb.Point, bool) {
	var a, cx, cy, bestA float64
	best := -1
	var o orb.Point
	for _, poly := range mp {
		if len(poly) > 0 && len(poly[0]) > 0 {
			o = poly[0][0]
			break
		}
	}
	for i, poly := range mp {
		pa, px, py := polygonMoments(poly, o)
		a += pa
		cx += px
		cy += py
		if len(poly) > 0 && len(poly[0]) > 0 && (best < 0 || pa > bestA) {
			best, bestA = i, pa
		}
	}
	if best < 0 {
		return orb.Point{}, false
	}
	if a > 0 {
		c := orb.Point{o[0] + cx/(6*a), o[1] + cy/(6*a)}
		if PointInMultiPolygon(c, mp) {
			return c, true
		}
	}
	return polygonRep(mp[best])
}

// interiorPoint intersects the horizontal line at latitude y with every ring
// edge (half-open rule, as PointInRing), and returns the midpoint of the
// widest inside interval. Intervals alternate outside/inside by even-odd.
func interiorPoint(poly orb.Polygon, y float64) (orb.Point, bool) {
	var xs []float64
	for _, r := range poly {
		n := len(r)
		for i, j := 0, n-1; i < n; j, i = i, i+1 {
			a, b := r[i], r[j]
			if (a[1] > y) != (b[1] > y) {
				xs = append(xs, (b[0]-a[0])*(y-a[1])/(b[1]-a[1])+a[0])
			}
		}
	}
	sort.Float64s(xs)
	best, bestW := -1, 0.0
	for i := 0; i+1 < len(xs); i += 2 {
		if w := xs[i+1] - xs[i]; w > bestW {
			best, bestW = i, w
		}
	}
	if best < 0 {
		return orb.Point{}, false
	}
	p := orb.Point{(xs[best] + xs[best+1]) / 2, y}
	return p, PointInPolygon(p, poly)
}
