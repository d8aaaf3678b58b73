package importer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// geomTolerance (degrees, ~0.01 mm) absorbs float noise from a store's
// encoding; anything larger is a real change.
const geomTolerance = 1e-9

// sameContent reports whether a stored object already holds what the
// importer would write: equal props (compared as canonical JSON, so a
// stored float64 equals an int, and key order does not matter) and equal
// geometry; with an Enricher, also the same region path and grid.
func sameContent(old, nf *twin.Feature, enriched bool) bool {
	if !sameGeometry(old.Geometry, nf.Geometry) {
		return false
	}
	if enriched && !old.Place.Equal(nf.Place) {
		return false
	}
	a, err1 := json.Marshal(old.Props)
	b, err2 := json.Marshal(nf.Props)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

func sameGeometry(a, b orb.Geometry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.GeoJSONType() != b.GeoJSONType() {
		return false
	}
	switch a := a.(type) {
	case orb.Point:
		return samePoint(a, b.(orb.Point))
	case orb.MultiPoint:
		return samePoints(a, b.(orb.MultiPoint))
	case orb.LineString:
		return samePoints(a, b.(orb.LineString))
	case orb.MultiLineString:
		bb := b.(orb.MultiLineString)
		if len(a) != len(bb) {
			return false
		}
		for i := range a {
			if !samePoints(a[i], bb[i]) {
				return false
			}
		}
		return true
	case orb.Polygon:
		return samePolygon(a, b.(orb.Polygon))
	case orb.MultiPolygon:
		bb := b.(orb.MultiPolygon)
		if len(a) != len(bb) {
			return false
		}
		for i := range a {
			if !samePolygon(a[i], bb[i]) {
				return false
			}
		}
		return true
	}
	return orb.Equal(a, b)
}

func samePolygon(a, b orb.Polygon) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !samePoints(a[i], b[i]) {
			return false
		}
	}
	return true
}

func samePoints[S ~[]orb.Point, T ~[]orb.Point](a S, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !samePoint(a[i], b[i]) {
			return false
		}
	}
	return true
}

func samePoint(a, b orb.Point) bool {
	return math.Abs(a[0]-b[0]) <= geomTolerance && math.Abs(a[1]-b[1]) <= geomTolerance
}

// fingerprint hashes an object's props and exact coordinates (FNV-64a), to
// recognise a feature repeated verbatim in the same file.
func fingerprint(f *twin.Feature) uint64 {
	h := fnv.New64a()
	b, _ := json.Marshal(f.Props)
	h.Write(b)
	var buf [8]byte
	var walk func(g orb.Geometry)
	pt := func(p orb.Point) {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(p[0]))
		h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(p[1]))
		h.Write(buf[:])
	}
	pts := func(ps []orb.Point) {
		h.Write([]byte{'('})
		for _, p := range ps {
			pt(p)
		}
		h.Write([]byte{')'})
	}
	walk = func(g orb.Geometry) {
		if g == nil {
			return
		}
		h.Write([]byte(g.GeoJSONType()))
		switch g := g.(type) {
		case orb.Point:
			pt(g)
		case orb.MultiPoint:
			pts(g)
		case orb.LineString:
			pts(g)
		case orb.MultiLineString:
			for _, ls := range g {
				pts(ls)
			}
		case orb.Polygon:
			for _, r := range g {
				pts(r)
			}
		case orb.MultiPolygon:
			for _, p := range g {
				for _, r := range p {
					pts(r)
				}
			}
		}
	}
	walk(f.Geometry)
	return h.Sum64()
}
