// Package planar holds predicates on the lon/lat plane: point-in-polygon,
// segment intersection, which side of a line a point is on, and
// representative points.
//
// Longitude and latitude are treated as plane coordinates (degrees). That is
// exact for containment and crossing questions whose answers do not depend on
// scale (the lon/lat map is a continuous bijection, so "inside" and "crosses"
// are preserved up to the straight-vs-great-circle edge difference, which is
// millimetres for city-sized edges). Use package sphere for anything measured
// in metres. The antimeridian is not handled.
//
// All functions are pure and safe for concurrent use.
package planar

import (
	"math"

	"github.com/paulmach/orb"
)

// PointInRing reports whether p is inside ring r by the even-odd rule. The
// ring may be open or closed and of either orientation. A point exactly on
// an edge is decided by a half-open rule: of two rings sharing that edge,
// exactly one contains it, so a point on a street border lands in one street.
func PointInRing(p orb.Point, r orb.Ring) bool {
	in := false
	n := len(r)
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		a, b := r[i], r[j]
		if (a[1] > p[1]) != (b[1] > p[1]) &&
			p[0] < (b[0]-a[0])*(p[1]-a[1])/(b[1]-a[1])+a[0] {
			in = !in
		}
	}
	return in
}

// PointInPolygon reports whether p is inside the outer ring of poly and not
// inside any of its holes.
func PointInPolygon(p orb.Point, poly orb.Polygon) bool {
	if len(poly) == 0 || !PointInRing(p, poly[0]) {
		return false
	}
	for _, hole := range poly[1:] {
		if PointInRing(p, hole) {
			return false
		}
	}
	return true
}

// PointInMultiPolygon reports whether p is inside any polygon of mp.
func PointInMultiPolygon(p orb.Point, mp orb.MultiPolygon) bool {
	for _, poly := range mp {
		if PointInPolygon(p, poly) {
			return true
		}
	}
	return false
}

// Contains reports whether the areal geometry g (Polygon, MultiPolygon, Ring
// or Bound) contains p. Points and lines contain nothing: false.
func Contains(g orb.Geometry, p orb.Point) bool {
	switch g := g.(type) {
	case orb.Polygon:
		return PointInPolygon(p, g)
	case orb.MultiPolygon:
		return PointInMultiPolygon(p, g)
	case orb.Ring:
		return PointInRing(p, g)
	case orb.Bound:
		return g.Contains(p)
	case orb.Collection:
		for _, c := range g {
			if Contains(c, p) {
				return true
			}
		}
	}
	return false
}

// Side returns the cross product (b-a) x (p-a): positive when p is left of
// the directed line a->b, negative when right, zero when collinear. Its
// magnitude is twice the area of triangle a,b,p in square degrees.
func Side(a, b, p orb.Point) float64 {
	return (b[0]-a[0])*(p[1]-a[1]) - (b[1]-a[1])*(p[0]-a[0])
}

func sign(v float64) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// SegmentIntersection returns a point common to segments a1-a2 and b1-b2 and
// whether there is one. Touching counts (an endpoint on the other segment).
// For collinear overlapping segments it returns the overlap point nearest a1.
func SegmentIntersection(a1, a2, b1, b2 orb.Point) (orb.Point, bool) {
	t, ok := segmentParam(a1, a2, b1, b2)
	if !ok {
		return orb.Point{}, false
	}
	return lerp(a1, a2, t), true
}

// segmentParam returns the parameter t along a1-a2 of its first common point
// with b1-b2.
func segmentParam(a1, a2, b1, b2 orb.Point) (float64, bool) {
	rx, ry := a2[0]-a1[0], a2[1]-a1[1]
	sx, sy := b2[0]-b1[0], b2[1]-b1[1]
	qx, qy := b1[0]-a1[0], b1[1]-a1[1]
	den := rx*sy - ry*sx
	if den == 0 {
		if qx*ry-qy*rx != 0 {
			return 0, false // parallel, not collinear
		}
		return collinearParam(a1, a2, b1, b2)
	}
	t := (qx*sy - qy*sx) / den
	u := (qx*ry - qy*rx) / den
	if t < 0 || t > 1 || u < 0 || u > 1 {
		return 0, false
	}
	return t, true
}

// collinearParam handles collinear segments (including degenerate ones).
func collinearParam(a1, a2, b1, b2 orb.Point) (float64, bool) {
	rx, ry := a2[0]-a1[0], a2[1]-a1[1]
	rr := rx*rx + ry*ry
	if rr == 0 { // a is a point
		if onSegment(a1, b1, b2) {
			return 0, true
		}
		return 0, false
	}
	proj := func(p orb.Point) float64 { return ((p[0]-a1[0])*rx + (p[1]-a1[1])*ry) / rr }
	t0, t1 := proj(b1), proj(b2)
	if t0 > t1 {
		t0, t1 = t1, t0
	}
	if t1 < 0 || t0 > 1 {
		return 0, false
	}
	return math.Max(0, t0), true
}

// onSegment reports whether p lies on segment a-b.
func onSegment(p, a, b orb.Point) bool {
	if Side(a, b, p) != 0 {
		return false
	}
	return p[0] >= math.Min(a[0], b[0]) && p[0] <= math.Max(a[0], b[0]) &&
		p[1] >= math.Min(a[1], b[1]) && p[1] <= math.Max(a[1], b[1])
}

func lerp(a, b orb.Point, t float64) orb.Point {
	return orb.Point{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])}
}

// Crossing directions for Crossing.Side.
const (
	// LeftToRight: the moving segment went from the left of the line (as
	// drawn, first vertex to last) to its right.
	LeftToRight = 1
	// RightToLeft is the opposite direction.
	RightToLeft = -1
	// Touch: an end of the moving segment lies on the line; no side change.
	Touch = 0
)

// Crossing is one place where a moving segment meets a line.
type Crossing struct {
	Point orb.Point // where they meet
	Index int       // the line segment met: ls[Index] -> ls[Index+1]
	// Side is LeftToRight, RightToLeft or Touch, relative to the line's
	// direction at segment Index.
	Side int
	// T is the fraction along the moving segment a->b, 0..1; crossings are
	// returned in increasing T.
	T float64
}

// SegmentCrossesLine returns every place where the movement a->b meets ls,
// ordered along a->b. A crossing through a shared vertex of ls is reported
// once (on the segment starting at that vertex). Geofence "cross" rules use
// the Side of the crossings to tell direction (e.g. entering a bridge
// northbound); GPS jitter tolerance is the caller's business.
func SegmentCrossesLine(a, b orb.Point, ls orb.LineString) []Crossing {
	var out []Crossing
	last := len(ls) - 2
	for i := 0; i <= last; i++ {
		l1, l2 := ls[i], ls[i+1]
		t, u, ok := crossParams(a, b, l1, l2)
		if !ok {
			continue
		}
		// A hit at the end vertex of segment i is reported by segment i+1
		// from its start; the tolerance keeps rounding from losing it or
		// counting it twice.
		if i < last && u > 1-vertexEps {
			continue
		}
		pt := lerp(a, b, t)
		sa, sb := sign(Side(l1, l2, a)), sign(Side(l1, l2, b))
		side := Touch
		if sa > 0 && sb < 0 {
			side = LeftToRight
		} else if sa < 0 && sb > 0 {
			side = RightToLeft
		}
		out = append(out, Crossing{Point: pt, Index: i, Side: side, T: t})
	}
	// Insertion sort by T: crossings are few.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].T < out[j-1].T; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// vertexEps is the tolerance, as a fraction of a line segment, within which
// a hit counts as being on the segment's end vertex.
const vertexEps = 1e-9

// crossParams returns the parameters t along a-b and u along c-d of the
// meeting point of the two segments. u may fall vertexEps outside [0, 1] so
// that hits on a shared vertex are never lost to rounding. Collinear
// overlaps report their first point along a-b.
func crossParams(a, b, c, d orb.Point) (t, u float64, ok bool) {
	rx, ry := b[0]-a[0], b[1]-a[1]
	sx, sy := d[0]-c[0], d[1]-c[1]
	qx, qy := c[0]-a[0], c[1]-a[1]
	den := rx*sy - ry*sx
	if den == 0 {
		t, ok = segmentParam(a, b, c, d)
		if !ok {
			return 0, 0, false
		}
		p := lerp(a, b, t)
		if ss := sx*sx + sy*sy; ss > 0 {
			u = ((p[0]-c[0])*sx + (p[1]-c[1])*sy) / ss
		}
		return t, u, true
	}
	t = (qx*sy - qy*sx) / den
	u = (qx*ry - qy*rx) / den
	if t < 0 || t > 1 || u < -vertexEps || u > 1+vertexEps {
		return 0, 0, false
	}
	return t, u, true
}

func boundsOverlap(a, b, c, d orb.Point) bool {
	return math.Max(a[0], b[0]) >= math.Min(c[0], d[0]) && math.Max(c[0], d[0]) >= math.Min(a[0], b[0]) &&
		math.Max(a[1], b[1]) >= math.Min(c[1], d[1]) && math.Max(c[1], d[1]) >= math.Min(a[1], b[1])
}

// SegmentIntersectsRing reports whether segment a-b meets any edge of r
// (the ring is treated as closed).
func SegmentIntersectsRing(a, b orb.Point, r orb.Ring) bool {
	n := len(r)
	for i := 0; i < n; i++ {
		c, d := r[i], r[(i+1)%n]
		if !boundsOverlap(a, b, c, d) {
			continue
		}
		if _, ok := segmentParam(a, b, c, d); ok {
			return true
		}
	}
	return false
}

// SegmentIntersectsPolygon reports whether segment a-b has any point in
// common with poly: either end inside, or the segment meets any ring
// (which also covers a segment passing through the polygon, or entering a
// hole's boundary).
func SegmentIntersectsPolygon(a, b orb.Point, poly orb.Polygon) bool {
	if PointInPolygon(a, poly) || PointInPolygon(b, poly) {
		return true
	}
	for _, r := range poly {
		if SegmentIntersectsRing(a, b, r) {
			return true
		}
	}
	return false
}

// RingSelfIntersects reports whether any two non-adjacent edges of r meet,
// or two adjacent edges fold back over each other, which makes the ring
// invalid for containment tests. It is O(n²): meant for validation at import,
// not for hot paths. Rings with fewer than 4 distinct edges never do.
func RingSelfIntersects(r orb.Ring) bool {
	r = closed(r)
	n := len(r) - 1 // edges
	if n < 3 {
		return false
	}
	for i := 0; i < n; i++ {
		a1, a2 := r[i], r[i+1]
		for j := i + 1; j < n; j++ {
			b1, b2 := r[j], r[j+1]
			if !boundsOverlap(a1, a2, b1, b2) {
				continue
			}
			adjacent := j == i+1 || (i == 0 && j == n-1)
			if !adjacent {
				if _, ok := segmentParam(a1, a2, b1, b2); ok {
					return true
				}
				continue
			}
			// Adjacent edges share a vertex; they intersect improperly only
			// when collinear and folding back (overlap beyond the vertex).
			if Side(a1, a2, b1) == 0 && Side(a1, a2, b2) == 0 {
				shared, o1, o2 := a2, a1, b2
				if i == 0 && j == n-1 {
					shared, o1, o2 = a1, a2, b1
				}
				if (o1[0]-shared[0])*(o2[0]-shared[0])+(o1[1]-shared[1])*(o2[1]-shared[1]) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// closed returns r with its first point repeated at the end if missing.
func closed(r orb.Ring) orb.Ring {
	if len(r) > 0 && r[0] != r[len(r)-1] {
		c := make(orb.Ring, len(r), len(r)+1)
		copy(c, r)
		return append(c, r[0])
	}
	return r
}
