// Package gcj02 converts between WGS84 (GPS, EPSG:4326) and GCJ-02, the
// obfuscated datum that Chinese map providers (AMap, Tencent, DataV) publish
// in. Much of the Chongqing source data is GCJ-02 while the twin stores WGS84
// (CONTRACT: coordinates are WGS84 everywhere on the wire), so importers
// convert on the way in.
//
// The forward transform is the widely published reverse-engineered formula
// (Krasovsky 1940 ellipsoid, polynomial + trigonometric offset; see e.g.
// github.com/googollee/eviltransform). It has no closed-form inverse, so
// ToWGS84 inverts it by fixed-point iteration to well under a centimetre.
//
// All functions are pure and safe for concurrent use. Coordinates are
// [lon, lat] in degrees.
package gcj02

import (
	"math"

	"github.com/paulmach/orb"
)

const (
	// semiMajor is the Krasovsky 1940 ellipsoid semi-major axis in metres,
	// the ellipsoid the GCJ-02 formula is defined on.
	semiMajor = 6378245.0
	// eccSq is that ellipsoid's first eccentricity squared.
	eccSq = 0.00669342162296594323

	// tolerance ends the inverse iteration: 1e-10° is about 0.01 mm.
	tolerance = 1e-10
	maxIter   = 30
)

// OutOfChina reports whether p lies outside the rectangle in which GCJ-02 is
// applied; outside it the two datums coincide and no shift is made. The
// rectangle is the conventional one used by the published formula (it also
// covers neighbouring countries; that is what providers do too).
func OutOfChina(p orb.Point) bool {
	lon, lat := p[0], p[1]
	return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271
}

// FromWGS84 shifts a WGS84 point into GCJ-02. Points outside China (and NaN
// input) are returned unchanged.
func FromWGS84(p orb.Point) orb.Point {
	if OutOfChina(p) || math.IsNaN(p[0]) || math.IsNaN(p[1]) {
		return p
	}
	dLon, dLat := delta(p[0], p[1])
	return orb.Point{p[0] + dLon, p[1] + dLat}
}

// ToWGS84 converts a GCJ-02 point back to WGS84. It iterates
// w <- w - (FromWGS84(w) - p), which converges because the offset varies
// slowly (its gradient is ~1e-3); the result reproduces p through FromWGS84
// to about 1e-10° (0.01 mm), far inside the 0.5 m the importers need.
// Points outside China are returned unchanged.
func ToWGS84(p orb.Point) orb.Point {
	if OutOfChina(p) || math.IsNaN(p[0]) || math.IsNaN(p[1]) {
		return p
	}
	w := p
	for i := 0; i < maxIter; i++ {
		g := FromWGS84(w)
		dx, dy := g[0]-p[0], g[1]-p[1]
		w[0] -= dx
		w[1] -= dy
		if math.Abs(dx) < tolerance && math.Abs(dy) < tolerance {
			break
		}
	}
	return w
}

// delta is the GCJ-02 offset (degrees) at WGS84 lon, lat.
func delta(lon, lat float64) (dLon, dLat float64) {
	x, y := lon-105.0, lat-35.0
	dLat = transformLat(x, y)
	dLon = transformLon(x, y)
	radLat := lat / 180.0 * math.Pi
	magic := math.Sin(radLat)
	magic = 1 - eccSq*magic*magic
	sqrtMagic := math.Sqrt(magic)
	dLat = (dLat * 180.0) / ((semiMajor * (1 - eccSq)) / (magic * sqrtMagic) * math.Pi)
	dLon = (dLon * 180.0) / (semiMajor / sqrtMagic * math.Cos(radLat) * math.Pi)
	return dLon, dLat
}

func transformLat(x, y float64) float64 {
	r := -100.0 + 2.0*x + 3.0*y + 0.2*y*y + 0.1*x*y + 0.2*math.Sqrt(math.Abs(x))
	r += (20.0*math.Sin(6.0*x*math.Pi) + 20.0*math.Sin(2.0*x*math.Pi)) * 2.0 / 3.0
	r += (20.0*math.Sin(y*math.Pi) + 40.0*math.Sin(y/3.0*math.Pi)) * 2.0 / 3.0
	r += (160.0*math.Sin(y/12.0*math.Pi) + 320*math.Sin(y*math.Pi/30.0)) * 2.0 / 3.0
	return r
}

func transformLon(x, y float64) float64 {
	r := 300.0 + x + 2.0*y + 0.1*x*x + 0.1*x*y + 0.1*math.Sqrt(math.Abs(x))
	r += (20.0*math.Sin(6.0*x*math.Pi) + 20.0*math.Sin(2.0*x*math.Pi)) * 2.0 / 3.0
	r += (20.0*math.Sin(x*math.Pi) + 40.0*math.Sin(x/3.0*math.Pi)) * 2.0 / 3.0
	r += (150.0*math.Sin(x/12.0*math.Pi) + 300.0*math.Sin(x/30.0*math.Pi)) * 2.0 / 3.0
	return r
}

// ToWGS84Geometry returns a new geometry with every vertex of g converted
// from GCJ-02 to WGS84; g is not modified. A nil geometry gives nil.
func ToWGS84Geometry(g orb.Geometry) orb.Geometry { return mapGeometry(g, ToWGS84) }

// FromWGS84Geometry returns a new geometry with every vertex of g converted
// from WGS84 to GCJ-02; g is not modified.
func FromWGS84Geometry(g orb.Geometry) orb.Geometry { return mapGeometry(g, FromWGS84) }

func mapGeometry(g orb.Geometry, f func(orb.Point) orb.Point) orb.Geometry {
	switch g := g.(type) {
	case nil:
		return nil
	case orb.Point:
		return f(g)
	case orb.MultiPoint:
		return orb.MultiPoint(mapPoints(g, f))
	case orb.LineString:
		return orb.LineString(mapPoints(g, f))
	case orb.Ring:
		return orb.Ring(mapPoints(g, f))
	case orb.MultiLineString:
		out := make(orb.MultiLineString, len(g))
		for i, ls := range g {
			out[i] = mapPoints(ls, f)
		}
		return out
	case orb.Polygon:
		return mapPolygon(g, f)
	case orb.MultiPolygon:
		out := make(orb.MultiPolygon, len(g))
		for i, p := range g {
			out[i] = mapPolygon(p, f)
		}
		return out
	case orb.Collection:
		out := make(orb.Collection, len(g))
		for i, c := range g {
			out[i] = mapGeometry(c, f)
		}
		return out
	case orb.Bound:
		return orb.MultiPoint{f(g.Min), f(g.Max)}.Bound()
	}
	return orb.Clone(g)
}

func mapPolygon(p orb.Polygon, f func(orb.Point) orb.Point) orb.Polygon {
	out := make(orb.Polygon, len(p))
	for i, r := range p {
		out[i] = mapPoints(r, f)
	}
	return out
}

func mapPoints[S ~[]orb.Point](ps S, f func(orb.Point) orb.Point) []orb.Point {
	if ps == nil {
		return nil
	}
	out := make([]orb.Point, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}
