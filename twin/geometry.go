package twin

import (
	"errors"
	"fmt"
	"math"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/paulmach/orb"
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
		if planar.RingSelfIntersects(r) {
			return fmt.Errorf("self-intersecting polygon (ring %d)", i)
		}
	}
	return nil
}
