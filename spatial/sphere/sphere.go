// Package sphere measures distances and bearings in metres on a spherical
// Earth (mean radius R = 6371008.8 m, the IUGG mean radius that H3 also uses).
//
// Points are orb.Point{lon, lat} in WGS84 degrees. The spherical model errs by
// up to ~0.5% against the WGS84 ellipsoid, which is well inside GPS noise for
// city operations (geofence tolerance, nearby search, radius queries).
//
// All functions are pure and safe for concurrent use.
package sphere

import (
	"math"

	"github.com/paulmach/orb"
)

// EarthRadius is the mean Earth radius in metres.
const EarthRadius = 6371008.8

const (
	deg2rad = math.Pi / 180
	rad2deg = 180 / math.Pi
)

// Distance returns the great-circle distance between a and b in metres
// (haversine formula, numerically stable for short distances).
func Distance(a, b orb.Point) float64 {
	lat1, lat2 := a[1]*deg2rad, b[1]*deg2rad
	dLat := lat2 - lat1
	dLon := (b[0] - a[0]) * deg2rad
	s1 := math.Sin(dLat / 2)
	s2 := math.Sin(dLon / 2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	if h > 1 {
		h = 1
	}
	return 2 * EarthRadius * math.Asin(math.Sqrt(h))
}

// local is an equirectangular plane tangent at origin o: metres east and
// north of o. Error grows with the square of the distance from o; at city
// scale (tens of km) it is well under 1%, which is why the segment distances
// below use it instead of spherical cross-track formulas.
type local struct {
	o orb.Point
	k float64 // metres per degree of longitude at o
}

const metresPerDegree = EarthRadius * deg2rad

func newLocal(o orb.Point) local {
	return local{o: o, k: metresPerDegree * math.Cos(o[1]*deg2rad)}
}

func (l local) project(q orb.Point) (x, y float64) {
	dLon := q[0] - l.o[0]
	// Take the short way round the antimeridian.
	if dLon > 180 {
		dLon -= 360
	} else if dLon < -180 {
		dLon += 360
	}
	return dLon * l.k, (q[1] - l.o[1]) * metresPerDegree
}

// segmentDistance is the distance in metres from the origin to segment a-b.
func (l local) segmentDistance(a, b orb.Point) float64 {
	ax, ay := l.project(a)
	bx, by := l.project(b)
	return projectedDistance(ax, ay, bx, by)
}

// projectedDistance is the distance from (0,0) to the segment (ax,ay)-(bx,by).
func projectedDistance(ax, ay, bx, by float64) float64 {
	dx, dy := bx-ax, by-ay
	l2 := dx*dx + dy*dy
	t := 0.0
	if l2 > 0 {
		t = -(ax*dx + ay*dy) / l2
		t = math.Max(0, math.Min(1, t))
	}
	return math.Hypot(ax+t*dx, ay+t*dy)
}

// PointSegmentDistance returns the distance in metres from p to the segment
// a-b. It works on a local equirectangular projection around p: exact enough
// at city scale (segments up to tens of km), not for continental segments.
func PointSegmentDistance(p, a, b orb.Point) float64 {
	return newLocal(p).segmentDistance(a, b)
}

// PointLineDistance returns the distance in metres from p to the nearest
// point of ls (+Inf for an empty line; the point distance for one vertex).
func PointLineDistance(p orb.Point, ls orb.LineString) float64 {
	switch len(ls) {
	case 0:
		return math.Inf(1)
	case 1:
		return Distance(p, ls[0])
	}
	best := math.Inf(1)
	l := newLocal(p)
	ax, ay := l.project(ls[0])
	for i := 1; i < len(ls); i++ {
		bx, by := l.project(ls[i])
		if d := projectedDistance(ax, ay, bx, by); d < best {
			best = d
		}
		ax, ay = bx, by
	}
	return best
}

// PointRingDistance returns the distance in metres from p to the boundary of
// the ring r (the ring is treated as closed even if its last point is not
// its first).
func PointRingDistance(p orb.Point, r orb.Ring) float64 {
	d := PointLineDistance(p, orb.LineString(r))
	if n := len(r); n > 1 && r[0] != r[n-1] {
		d = math.Min(d, PointSegmentDistance(p, r[n-1], r[0]))
	}
	return d
}

// PointPolygonDistance returns 0 when p is inside poly (holes excluded) and
// otherwise the distance in metres to the nearest ring edge. Containment is
// tested on the lon/lat plane (even-odd rule), as planar.PointInPolygon does.
func PointPolygonDistance(p orb.Point, poly orb.Polygon) float64 {
	if len(poly) == 0 {
		return math.Inf(1)
	}
	if inPolygon(p, poly) {
		return 0
	}
	best := math.Inf(1)
	for _, r := range poly {
		best = math.Min(best, PointRingDistance(p, r))
	}
	return best
}

// PointGeometryDistance returns the distance in metres from p to any orb
// geometry (0 inside areas); +Inf for nil or empty geometries.
func PointGeometryDistance(p orb.Point, g orb.Geometry) float64 {
	switch g := g.(type) {
	case orb.Point:
		return Distance(p, g)
	case orb.MultiPoint:
		best := math.Inf(1)
		for _, q := range g {
			best = math.Min(best, Distance(p, q))
		}
		return best
	case orb.LineString:
		return PointLineDistance(p, g)
	case orb.MultiLineString:
		best := math.Inf(1)
		for _, l := range g {
			best = math.Min(best, PointLineDistance(p, l))
		}
		return best
	case orb.Ring:
		return PointPolygonDistance(p, orb.Polygon{g})
	case orb.Polygon:
		return PointPolygonDistance(p, g)
	case orb.MultiPolygon:
		best := math.Inf(1)
		for _, poly := range g {
			best = math.Min(best, PointPolygonDistance(p, poly))
		}
		return best
	case orb.Bound:
		return PointPolygonDistance(p, g.ToPolygon())
	case orb.Collection:
		best := math.Inf(1)
		for _, c := range g {
			best = math.Min(best, PointGeometryDistance(p, c))
		}
		return best
	}
	return math.Inf(1)
}

// Bearing returns the initial great-circle bearing from a to b in degrees
// clockwise from north, in [0, 360).
func Bearing(a, b orb.Point) float64 {
	lat1, lat2 := a[1]*deg2rad, b[1]*deg2rad
	dLon := (b[0] - a[0]) * deg2rad
	y := math.Sin(dLon) * math.Cos(lat2)
	x := math.Cos(lat1)*math.Sin(lat2) - math.Sin(lat1)*math.Cos(lat2)*math.Cos(dLon)
	brg := math.Atan2(y, x) * rad2deg
	brg = math.Mod(brg+360, 360)
	if brg >= 360 { // -0 and rounding
		brg = 0
	}
	return brg
}

// Destination returns the point reached by travelling metres along the great
// circle leaving p at the given bearing (degrees clockwise from north).
// Longitude is normalised to [-180, 180].
func Destination(p orb.Point, bearing, metres float64) orb.Point {
	d := metres / EarthRadius
	brg := bearing * deg2rad
	lat1, lon1 := p[1]*deg2rad, p[0]*deg2rad
	lat2 := math.Asin(math.Sin(lat1)*math.Cos(d) + math.Cos(lat1)*math.Sin(d)*math.Cos(brg))
	lon2 := lon1 + math.Atan2(math.Sin(brg)*math.Sin(d)*math.Cos(lat1), math.Cos(d)-math.Sin(lat1)*math.Sin(lat2))
	lon := math.Mod(lon2*rad2deg+540, 360) - 180
	return orb.Point{lon, lat2 * rad2deg}
}

// MetresToDegrees converts a distance in metres at latitude lat (degrees) to
// degrees of latitude (dLat) and of longitude (dLon). dLon grows towards the
// poles; it is capped at 360 when the cosine of lat vanishes.
func MetresToDegrees(lat, metres float64) (dLat, dLon float64) {
	dLat = metres / EarthRadius * rad2deg
	c := math.Cos(lat * deg2rad)
	if c < 1e-12 {
		return dLat, 360
	}
	dLon = math.Min(dLat/c, 360)
	return dLat, dLon
}

// ExpandBound grows b by metres on every side, for turning "within r metres"
// into a bbox prefilter. The longitude padding uses the latitude of b's edge
// farthest from the equator, so the result always contains the true buffer.
// Latitudes are clamped to [-90, 90].
func ExpandBound(b orb.Bound, metres float64) orb.Bound {
	lat := math.Max(math.Abs(b.Min[1]), math.Abs(b.Max[1]))
	dLat, _ := MetresToDegrees(0, metres)
	_, dLon := MetresToDegrees(math.Min(90, lat+dLat), metres)
	return orb.Bound{
		Min: orb.Point{b.Min[0] - dLon, math.Max(-90, b.Min[1]-dLat)},
		Max: orb.Point{b.Max[0] + dLon, math.Min(90, b.Max[1]+dLat)},
	}
}

// inPolygon is the even-odd point-in-polygon test on the lon/lat plane. It
// duplicates planar.PointInPolygon so that this leaf package has no sibling
// imports.
func inPolygon(p orb.Point, poly orb.Polygon) bool {
	in := false
	for _, r := range poly {
		n := len(r)
		for i, j := 0, n-1; i < n; j, i = i, i+1 {
			a, b := r[i], r[j]
			if (a[1] > p[1]) != (b[1] > p[1]) &&
				p[0] < (b[0]-a[0])*(p[1]-a[1])/(b[1]-a[1])+a[0] {
				in = !in
			}
		}
	}
	return in
}
