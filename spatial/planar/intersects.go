package planar

import (
	"math"
	"math/big"

	"github.com/paulmach/orb"
)

// ccwErrBound is Shewchuk's error bound for the fast orientation determinant
// (ccwerrboundA in "Adaptive Precision Floating-Point Arithmetic and Fast
// Robust Geometric Predicates", 1997): (3 + 16ε)ε with ε = 2⁻⁵³. When the
// float determinant exceeds it in magnitude, its sign is certainly right.
const ccwErrBound = (3 + 16*epsilon) * epsilon

const epsilon = 1.0 / (1 << 53)

// Orient returns the sign of Side(a, b, c) computed exactly: +1 when c is
// left of the directed line a->b, -1 when right, 0 when the three points are
// exactly collinear. It uses the float determinant when Shewchuk's error
// bound proves its sign, and exact rational arithmetic otherwise (rare:
// nearly collinear points), so decisions built on it never contradict each
// other the way rounded ones can.
func Orient(a, b, c orb.Point) int {
	detl := (a[0] - c[0]) * (b[1] - c[1])
	detr := (a[1] - c[1]) * (b[0] - c[0])
	det := detl - detr
	var sum float64
	switch {
	case detl > 0:
		if detr <= 0 {
			return sign(det)
		}
		sum = detl + detr
	case detl < 0:
		if detr >= 0 {
			return sign(det)
		}
		sum = -detl - detr
	default:
		return sign(det)
	}
	if math.Abs(det) >= ccwErrBound*sum {
		return sign(det)
	}
	return orientExact(a, b, c)
}

// orientExact is Orient in exact rational arithmetic (every float64 is a
// rational, so the result is the true sign).
func orientExact(a, b, c orb.Point) int {
	r := func(v float64) *big.Rat { return new(big.Rat).SetFloat64(v) }
	sub := func(x, y float64) *big.Rat { return new(big.Rat).Sub(r(x), r(y)) }
	l := new(big.Rat).Mul(sub(a[0], c[0]), sub(b[1], c[1]))
	rt := new(big.Rat).Mul(sub(a[1], c[1]), sub(b[0], c[0]))
	return l.Cmp(rt)
}

// inBox reports whether p lies in the closed bounding box of a and b.
func inBox(p, a, b orb.Point) bool {
	return p[0] >= math.Min(a[0], b[0]) && p[0] <= math.Max(a[0], b[0]) &&
		p[1] >= math.Min(a[1], b[1]) && p[1] <= math.Max(a[1], b[1])
}

// PointOnSegment reports exactly whether p lies on the closed segment a-b
// (a degenerate segment a == b is the point a).
func PointOnSegment(p, a, b orb.Point) bool {
	return inBox(p, a, b) && Orient(a, b, p) == 0
}

// SegmentsIntersect reports exactly whether the closed segments a1-a2 and
// b1-b2 share a point (touching and collinear overlap count; degenerate
// segments are points).
func SegmentsIntersect(a1, a2, b1, b2 orb.Point) bool {
	if !boundsOverlap(a1, a2, b1, b2) {
		return false
	}
	o1, o2 := Orient(a1, a2, b1), Orient(a1, a2, b2)
	o3, o4 := Orient(b1, b2, a1), Orient(b1, b2, a2)
	if o1*o2 < 0 && o3*o4 < 0 {
		return true
	}
	return (o1 == 0 && inBox(b1, a1, a2)) || (o2 == 0 && inBox(b2, a1, a2)) ||
		(o3 == 0 && inBox(a1, b1, b2)) || (o4 == 0 && inBox(a2, b1, b2))
}

// SegmentIntersectsBound reports exactly whether the closed segment a-b
// meets the closed box. By the separating axis theorem two convex shapes are
// disjoint only if some axis separates them; for a segment and an
// axis-aligned box the candidates are x, y and the segment's normal.
func SegmentIntersectsBound(a, b orb.Point, box orb.Bound) bool {
	if math.Max(a[0], b[0]) < box.Min[0] || math.Min(a[0], b[0]) > box.Max[0] ||
		math.Max(a[1], b[1]) < box.Min[1] || math.Min(a[1], b[1]) > box.Max[1] {
		return false
	}
	if box.Contains(a) || box.Contains(b) {
		return true
	}
	s := Orient(a, b, box.Min)
	for _, c := range [3]orb.Point{{box.Max[0], box.Min[1]}, box.Max, {box.Min[0], box.Max[1]}} {
		if Orient(a, b, c) != s {
			return true
		}
	}
	return s == 0
}

// RingCovers reports exactly whether p is inside the closed ring r or on its
// boundary (the ring may be open or closed, of either orientation). Unlike
// PointInRing, a point on an edge is covered by both rings sharing that edge.
func RingCovers(r orb.Ring, p orb.Point) bool {
	n := len(r)
	if n == 0 {
		return false
	}
	in := false
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		a, b := r[j], r[i]
		if PointOnSegment(p, a, b) {
			return true
		}
		// Crossing number with exact sides: edge a->b crosses the ray to
		// the right of p going upward (p left of it) or downward (right).
		if a[1] <= p[1] {
			if b[1] > p[1] && Orient(a, b, p) > 0 {
				in = !in
			}
		} else if b[1] <= p[1] && Orient(a, b, p) < 0 {
			in = !in
		}
	}
	return in
}

// PolygonCovers reports exactly whether p is in the closed polygon: inside
// or on the outer ring, and not strictly inside a hole (a hole's boundary
// belongs to the polygon).
func PolygonCovers(poly orb.Polygon, p orb.Point) bool {
	if len(poly) == 0 || !RingCovers(poly[0], p) {
		return false
	}
	for _, h := range poly[1:] {
		if RingCovers(h, p) && !onRing(h, p) {
			return false
		}
	}
	return true
}

func onRing(r orb.Ring, p orb.Point) bool {
	for i, j := 0, len(r)-1; i < len(r); j, i = i, i+1 {
		if PointOnSegment(p, r[j], r[i]) {
			return true
		}
	}
	return false
}

// parts is a geometry taken apart into the primitives Intersects compares.
type parts struct {
	points []orb.Point
	lines  []orb.LineString // each with at least 2 points
	polys  []orb.Polygon    // each with a non-empty outer ring
	boxes  []orb.Bound
}

func (ps *parts) add(g orb.Geometry) {
	switch g := g.(type) {
	case orb.Point:
		ps.points = append(ps.points, g)
	case orb.MultiPoint:
		ps.points = append(ps.points, g...)
	case orb.LineString:
		switch len(g) {
		case 0:
		case 1:
			ps.points = append(ps.points, g[0])
		default:
			ps.lines = append(ps.lines, g)
		}
	case orb.MultiLineString:
		for _, l := range g {
			ps.add(l)
		}
	case orb.Ring:
		ps.add(orb.Polygon{g})
	case orb.Polygon:
		if len(g) > 0 && len(g[0]) > 0 {
			ps.polys = append(ps.polys, g)
		}
	case orb.MultiPolygon:
		for _, p := range g {
			ps.add(p)
		}
	case orb.Bound:
		ps.boxes = append(ps.boxes, g)
	case orb.Collection:
		for _, c := range g {
			ps.add(c)
		}
	}
}

// Intersects reports whether a and b have at least one point in common,
// treating both as closed point sets (touching counts), which is the
// DE-9IM "intersects" of OGC Simple Features, CQL2 S_INTERSECTS and PostGIS
// ST_Intersects. Supported: Point, MultiPoint, LineString, MultiLineString,
// Ring, Polygon, MultiPolygon, Bound (a closed box) and Collection; nil or
// empty geometries intersect nothing. Polygons are assumed valid (rings
// simple, holes inside the shell), as twin.ValidGeometry ensures.
//
// Exact: every decision rests on Orient and coordinate comparisons, so the
// answer is that of exact arithmetic on the float64 inputs. Cost: O(n·m)
// segment pairs for two lines or polygons of n and m vertices, pruned by
// segment bounds; meant for a filter geometry of modest size against
// index candidates.
func Intersects(a, b orb.Geometry) bool {
	if a == nil || b == nil {
		return false
	}
	var pa, pb parts
	pa.add(a)
	pb.add(b)
	for _, p := range pa.points {
		if pb.coversPoint(p) {
			return true
		}
	}
	for _, p := range pb.points {
		if pa.coversPoint(p) {
			return true
		}
	}
	for _, x := range pa.boxes {
		if pb.meetsBox(x) {
			return true
		}
	}
	for _, x := range pb.boxes {
		if pa.meetsBox(x) {
			return true
		}
	}
	for _, l := range pa.lines {
		if pb.meetsLine(l) {
			return true
		}
	}
	for _, l := range pb.lines {
		for _, poly := range pa.polys {
			if lineMeetsPolygon(l, poly) {
				return true
			}
		}
	}
	for _, x := range pa.polys {
		for _, y := range pb.polys {
			if polygonsMeet(x, y) {
				return true
			}
		}
	}
	return false
}

// coversPoint: does any part contain p (on boundaries included)?
func (ps *parts) coversPoint(p orb.Point) bool {
	for _, q := range ps.points {
		if q == p {
			return true
		}
	}
	for _, b := range ps.boxes {
		if b.Contains(p) {
			return true
		}
	}
	for _, l := range ps.lines {
		for i := 1; i < len(l); i++ {
			if PointOnSegment(p, l[i-1], l[i]) {
				return true
			}
		}
	}
	for _, poly := range ps.polys {
		if PolygonCovers(poly, p) {
			return true
		}
	}
	return false
}

// meetsBox: do the lines, polygons or boxes meet box x? (Points are
// handled by coversPoint.)
func (ps *parts) meetsBox(x orb.Bound) bool {
	for _, b := range ps.boxes {
		if b.Intersects(x) {
			return true
		}
	}
	for _, l := range ps.lines {
		for i := 1; i < len(l); i++ {
			if SegmentIntersectsBound(l[i-1], l[i], x) {
				return true
			}
		}
	}
	for _, poly := range ps.polys {
		if !poly[0].Bound().Intersects(x) {
			continue
		}
		for _, r := range poly {
			for i, j := 0, len(r)-1; i < len(r); j, i = i, i+1 {
				if SegmentIntersectsBound(r[j], r[i], x) {
					return true
				}
			}
		}
		// No edge meets the box: the box is wholly inside the polygon, in a
		// hole, or outside; one corner decides.
		if PolygonCovers(poly, x.Min) {
			return true
		}
	}
	return false
}

// meetsLine: do the lines or polygons meet line l? (Boxes and points are
// handled before.)
func (ps *parts) meetsLine(l orb.LineString) bool {
	lb := l.Bound()
	for _, m := range ps.lines {
		if !lb.Intersects(m.Bound()) {
			continue
		}
		for i := 1; i < len(l); i++ {
			for j := 1; j < len(m); j++ {
				if SegmentsIntersect(l[i-1], l[i], m[j-1], m[j]) {
					return true
				}
			}
		}
	}
	for _, poly := range ps.polys {
		if lineMeetsPolygon(l, poly) {
			return true
		}
	}
	return false
}

func lineMeetsPolygon(l orb.LineString, poly orb.Polygon) bool {
	if !l.Bound().Intersects(poly[0].Bound()) {
		return false
	}
	if ringsMeetSegments(poly, l, false) {
		return true
	}
	// No edge crossed or touched: the line lies wholly inside or outside.
	return PolygonCovers(poly, l[0])
}

// ringsMeetSegments reports whether any edge of poly's rings meets a segment
// of the path pts (closed: pts is a ring, its last point joined to its first).
func ringsMeetSegments(poly orb.Polygon, pts []orb.Point, closedPath bool) bool {
	start := 1
	if closedPath {
		start = 0
	}
	for _, r := range poly {
		rb := r.Bound()
		for i := start; i < len(pts); i++ {
			a, b := pts[(i+len(pts)-1)%len(pts)], pts[i]
			if !segBound(a, b).Intersects(rb) {
				continue
			}
			for k, j := 0, len(r)-1; k < len(r); j, k = k, k+1 {
				if SegmentsIntersect(a, b, r[j], r[k]) {
					return true
				}
			}
		}
	}
	return false
}

func segBound(a, b orb.Point) orb.Bound {
	return orb.Bound{Min: orb.Point{math.Min(a[0], b[0]), math.Min(a[1], b[1])},
		Max: orb.Point{math.Max(a[0], b[0]), math.Max(a[1], b[1])}}
}

func polygonsMeet(x, y orb.Polygon) bool {
	if !x[0].Bound().Intersects(y[0].Bound()) {
		return false
	}
	for _, r := range x {
		if ringsMeetSegments(y, r, true) {
			return true
		}
	}
	// No boundaries meet: one lies inside the other, or they are apart.
	return PolygonCovers(y, x[0][0]) || PolygonCovers(x, y[0][0])
}
