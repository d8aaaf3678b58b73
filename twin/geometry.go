package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// ValidGeometry checks what the twin relies on, for every way objects come
// in (imports, PUT /api/entities): a non-empty geometry of a supported type, every coordinate a finite lon in [-180, 180] and lat in
// [-90, 90], lines of at least two points, polygon rings of at least four
// points that do not cross themselves (containment tests are meaningless on
// a self-intersecting ring).
func ValidGeometry(g orb.Geometry) error {
	if g == nil {
		return errors.New("empty geometry (null)")
	}
	switch g := g.(type) {
	case orb.Point:
		return validPoint(g)
	case orb.MultiPoint:
		if len(g) == 0 {
			return errors.New("empty geometry (MultiPoint with no points)")
		}
		return validPoints(g)
	case orb.LineString:
		return validLine(g)
	case orb.MultiLineString:
		if len(g) == 0 {
			return errors.New("empty geometry (MultiLineString with no lines)")
		}
		for _, ls := range g {
			if err := validLine(ls); err != nil {
				return err
			}
		}
		return nil
	case orb.Polygon:
		return validPolygon(g)
	case orb.MultiPolygon:
		if len(g) == 0 {
			return errors.New("empty geometry (MultiPolygon with no polygons)")
		}
		for _, p := range g {
			if err := validPolygon(p); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported geometry type %s", g.GeoJSONType())
}

// ValidCoords checks only that every coordinate of g is a finite lon in
// [-180, 180] and lat in [-90, 90]: what a store checks of a geometry it
// reads back, where a damaged record must not put a NaN into the spatial
// index, while a shape stored under older rules still loads.
func ValidCoords(g orb.Geometry) error {
	switch g := g.(type) {
	case orb.Point:
		return validPoint(g)
	case orb.MultiPoint:
		return validPoints(g)
	case orb.LineString:
		return validPoints(g)
	case orb.Ring:
		return validPoints(g)
	case orb.MultiLineString:
		return validCoordsAll(g)
	case orb.Polygon:
		return validCoordsAll(g)
	case orb.MultiPolygon:
		return validCoordsAll(g)
	case orb.Collection:
		return validCoordsAll(g)
	case orb.Bound:
		return validPoints([]orb.Point{g.Min, g.Max})
	}
	return nil
}

// validCoordsAll is ValidCoords of each part.
func validCoordsAll[G orb.Geometry](parts []G) error {
	for _, p := range parts {
		if err := ValidCoords(p); err != nil {
			return err
		}
	}
	return nil
}

func validPoint(p orb.Point) error {
	lon, lat := p[0], p[1]
	if math.IsNaN(lon) || math.IsNaN(lat) || math.IsInf(lon, 0) || math.IsInf(lat, 0) {
		return fmt.Errorf("coordinates not finite: %v %v", lon, lat)
	}
	if lon < -180 || lon > 180 || lat < -90 || lat > 90 {
		return fmt.Errorf("coordinates out of range: lon %v lat %v (want lon -180..180, lat -90..90)", lon, lat)
	}
	return nil
}

func validPoints(ps []orb.Point) error {
	for _, p := range ps {
		if err := validPoint(p); err != nil {
			return err
		}
	}
	return nil
}

func validLine(ls orb.LineString) error {
	if len(ls) == 0 {
		return errors.New("empty geometry (LineString with no points)")
	}
	if len(ls) < 2 {
		return fmt.Errorf("line with %d point, want at least 2", len(ls))
	}
	return validPoints(ls)
}

func validPolygon(p orb.Polygon) error {
	if len(p) == 0 || len(p[0]) == 0 {
		return errors.New("empty geometry (Polygon with no rings)")
	}
	for i, r := range p {
		if len(r) < 4 {
			return fmt.Errorf("polygon ring %d has %d points, want at least 4", i, len(r))
		}
		if err := validPoints(r); err != nil {
			return err
		}
		// Repeated consecutive points are allowed (as in OGC simple
		// features) and skipped; what is left must be a real ring.
		c := simplified(r)
		if len(c) < 4 {
			return fmt.Errorf("polygon ring %d has %d distinct points, want at least 3", i, len(c)-1)
		}
		if ringSelfIntersects(c) {
			return fmt.Errorf("self-intersecting polygon (ring %d)", i)
		}
		if zeroArea(c) {
			return fmt.Errorf("polygon ring %d has zero area", i)
		}
	}
	return nil
}

// simplified returns r closed and without repeated consecutive points
// (r itself when it already is).
func simplified(r orb.Ring) orb.Ring {
	dup := r[0] != r[len(r)-1]
	for i := 1; i < len(r) && !dup; i++ {
		dup = r[i] == r[i-1]
	}
	if !dup {
		return r
	}
	c := make(orb.Ring, 0, len(r)+1)
	for _, pt := range r {
		if len(c) == 0 || c[len(c)-1] != pt {
			c = append(c, pt)
		}
	}
	if c[0] != c[len(c)-1] {
		c = append(c, c[0])
	}
	return c
}

// zeroArea reports a ring whose shoelace area is exactly zero (all its
// points on one line, or folded onto itself).
func zeroArea(r orb.Ring) bool {
	var a float64
	o := r[0]
	for i := 1; i+1 < len(r); i++ {
		a += planar.Side(o, r[i], r[i+1])
	}
	return a == 0
}

// VertexCount returns the number of positions in g (0 for nil). Surfaces
// that take geometry from clients cap it before any costlier check.
func VertexCount(g orb.Geometry) int {
	switch g := g.(type) {
	case orb.Point:
		return 1
	case orb.MultiPoint:
		return len(g)
	case orb.LineString:
		return len(g)
	case orb.Ring:
		return len(g)
	case orb.MultiLineString:
		n := 0
		for _, ls := range g {
			n += len(ls)
		}
		return n
	case orb.Polygon:
		n := 0
		for _, r := range g {
			n += len(r)
		}
		return n
	case orb.MultiPolygon:
		n := 0
		for _, p := range g {
			n += VertexCount(p)
		}
		return n
	case orb.Collection:
		n := 0
		for _, c := range g {
			n += VertexCount(c)
		}
		return n
	}
	return 0
}

// DecodeGeometry reads a GeoJSON geometry object (RFC 7946 §3.1); JSON null
// is a nil geometry. Unlike a plain decode into orb types, which would read
// the position [] or [x] as (0, 0) or (x, 0), every position must hold at
// least two numbers (lon, lat; an altitude is dropped), at the nesting depth
// its type asks for. It does not check values: that is ValidGeometry.
func DecodeGeometry(raw []byte) (orb.Geometry, error) {
	var head struct {
		Type        string          `json:"type"`
		Coordinates json.RawMessage `json:"coordinates"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("geometry: %w", err)
	}
	if head.Type == "" && head.Coordinates == nil {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return nil, nil
		}
		return nil, errors.New("geometry: no type")
	}
	if depth, ok := positionDepth[head.Type]; ok {
		if err := checkPositions(head.Coordinates, depth); err != nil {
			return nil, fmt.Errorf("geometry: %s: %w", head.Type, err)
		}
	}
	g, err := geojson.UnmarshalGeometry(raw)
	if err != nil {
		return nil, fmt.Errorf("geometry: %w", err)
	}
	return g.Geometry(), nil
}

// positionDepth is the array depth of a position in each type's
// coordinates (a Point's coordinates are one position).
var positionDepth = map[string]int{
	"Point": 1, "MultiPoint": 2, "LineString": 2, "MultiLineString": 3, "Polygon": 3, "MultiPolygon": 4,
}

// checkPositions walks coordinates (already valid JSON) and checks that
// arrays nest exactly depth deep, that only the innermost ones hold numbers
// and that each of those holds at least two.
func checkPositions(b []byte, depth int) error {
	if len(bytes.TrimSpace(b)) == 0 || bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errors.New("no coordinates")
	}
	level, count := 0, 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
		case c == '[':
			level++
			if level > depth {
				return fmt.Errorf("coordinates nested deeper than %d", depth)
			}
			count = 0
		case c == ']':
			if level == depth && count < 2 {
				return fmt.Errorf("a position with %d number(s), want longitude and latitude", count)
			}
			level--
		case c == '-' || (c >= '0' && c <= '9'):
			if level != depth {
				return fmt.Errorf("a number where an array of positions belongs (want %d levels of arrays)", depth)
			}
			count++
			for i+1 < len(b) && strings.IndexByte("0123456789+-.eE", b[i+1]) >= 0 {
				i++
			}
		default:
			return fmt.Errorf("coordinates must be arrays of numbers, found %q", c)
		}
	}
	return nil
}
