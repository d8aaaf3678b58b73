package ogc

import (
	"fmt"
	"strings"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// geometry parses a CQL2 spatial literal: WKT (POINT, LINESTRING, POLYGON,
// MULTIPOINT, MULTILINESTRING, MULTIPOLYGON, GEOMETRYCOLLECTION, each
// optionally "Z" with a third coordinate that is ignored) or BBOX with 4 or
// 6 numbers. Coordinates are CRS84 lon/lat; polygons must be valid (closed,
// simple rings), as exact answers need them.
func (p *cqlParser) geometry() (orb.Geometry, error) {
	t := p.next()
	if t.kind != tIdent {
		return nil, fmt.Errorf("filter: at %d: expected a geometry literal (POINT, LINESTRING, POLYGON, MULTI..., GEOMETRYCOLLECTION or BBOX), found %q", t.pos, t.text)
	}
	kind := strings.ToUpper(t.text)
	if kind == "BBOX" {
		return p.bbox()
	}
	if p.peek().kind == tIdent && strings.EqualFold(p.peek().text, "Z") {
		p.next()
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	var g orb.Geometry
	var err error
	switch kind {
	case "POINT":
		var pts []orb.Point
		if pts, err = p.pointList(1); err == nil {
			g = pts[0]
		}
	case "LINESTRING":
		var pts []orb.Point
		if pts, err = p.pointList(0); err == nil {
			g = orb.LineString(pts)
		}
	case "POLYGON":
		g, err = p.polygon()
	case "MULTIPOINT":
		g, err = p.multiPoint()
	case "MULTILINESTRING":
		var ml orb.MultiLineString
		err = p.list(func() error {
			pts, err := p.pointList(0)
			ml = append(ml, pts)
			return err
		})
		g = ml
	case "MULTIPOLYGON":
		var mp orb.MultiPolygon
		err = p.list(func() error {
			poly, err := p.polygon()
			mp = append(mp, poly)
			return err
		})
		g = mp
	case "GEOMETRYCOLLECTION":
		var c orb.Collection
		err = p.list(func() error {
			sub, err := p.geometry()
			c = append(c, sub)
			return err
		})
		g = c
	default:
		return nil, fmt.Errorf("filter: at %d: unknown geometry type %s", t.pos, t.text)
	}
	if err != nil {
		return nil, err
	}
	if _, isColl := g.(orb.Collection); !isColl {
		if err := twin.ValidGeometry(g); err != nil {
			return nil, fmt.Errorf("filter: at %d: %s literal: %w", t.pos, kind, err)
		}
		if err := holesInside(g); err != nil {
			return nil, fmt.Errorf("filter: at %d: %s literal: %w", t.pos, kind, err)
		}
	}
	return g, nil
}

// holesInside checks what exact answers assume of a polygon beyond simple
// rings: every hole lies inside its shell without touching its edges.
// O(shell·hole) segment pairs, fine for a literal within MaxFilterLength.
func holesInside(g orb.Geometry) error {
	var polys []orb.Polygon
	switch g := g.(type) {
	case orb.Polygon:
		polys = []orb.Polygon{g}
	case orb.MultiPolygon:
		polys = g
	}
	for _, poly := range polys {
		shell := poly[0]
		for i, h := range poly[1:] {
			for a := 1; a < len(h); a++ {
				for b := 1; b < len(shell); b++ {
					if planar.SegmentsIntersect(h[a-1], h[a], shell[b-1], shell[b]) {
						return fmt.Errorf("hole %d meets the outer ring", i+1)
					}
				}
			}
			if !planar.PolygonCovers(orb.Polygon{shell}, h[0]) {
				return fmt.Errorf("hole %d is outside the outer ring", i+1)
			}
		}
	}
	return nil
}

// list parses "(" item {"," item} ")".
func (p *cqlParser) list(item func() error) error {
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return err
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.peek().kind != tComma {
			break
		}
		p.next()
	}
	_, err := p.expect(tRParen, "')'")
	return err
}

// pointList parses "(" x y [z] {"," x y [z]} ")"; want > 0 demands exactly
// that many positions.
func (p *cqlParser) pointList(want int) ([]orb.Point, error) {
	var pts []orb.Point
	err := p.list(func() error {
		pt, err := p.position()
		pts = append(pts, pt)
		return err
	})
	if err != nil {
		return nil, err
	}
	if want > 0 && len(pts) != want {
		return nil, p.errorf("expected %d position(s), found %d", want, len(pts))
	}
	return pts, nil
}

// position parses "x y [z]".
func (p *cqlParser) position() (orb.Point, error) {
	p.vertices++
	var v [2]float64
	for i := range v {
		t, err := p.expect(tNumber, "a coordinate (x y)")
		if err != nil {
			return orb.Point{}, err
		}
		if v[i], err = parseNumber(t.text); err != nil {
			return orb.Point{}, fmt.Errorf("filter: at %d: %w", t.pos, err)
		}
	}
	if p.peek().kind == tNumber {
		t := p.next()
		if _, err := parseNumber(t.text); err != nil {
			return orb.Point{}, fmt.Errorf("filter: at %d: %w", t.pos, err)
		}
	}
	return orb.Point{v[0], v[1]}, nil
}

func (p *cqlParser) polygon() (orb.Polygon, error) {
	var poly orb.Polygon
	err := p.list(func() error {
		at := p.peek().pos
		pts, err := p.pointList(0)
		if err != nil {
			return err
		}
		if len(pts) < 4 || pts[0] != pts[len(pts)-1] {
			return fmt.Errorf("filter: at %d: a polygon ring must be closed and have at least 4 positions", at)
		}
		poly = append(poly, pts)
		return nil
	})
	return poly, err
}

// multiPoint accepts both MULTIPOINT((1 2),(3 4)) (the CQL2 BNF) and the
// older MULTIPOINT(1 2, 3 4).
func (p *cqlParser) multiPoint() (orb.MultiPoint, error) {
	var mp orb.MultiPoint
	err := p.list(func() error {
		if p.peek().kind == tLParen {
			pts, err := p.pointList(1)
			if err == nil {
				mp = append(mp, pts[0])
			}
			return err
		}
		pt, err := p.position()
		mp = append(mp, pt)
		return err
	})
	return mp, err
}

// bbox parses BBOX(w, s, e, n) or BBOX(w, s, zmin, e, n, zmax). A west edge
// greater than the east one crosses the antimeridian: two boxes.
func (p *cqlParser) bbox() (orb.Geometry, error) {
	open, err := p.expect(tLParen, "'('")
	if err != nil {
		return nil, err
	}
	var v []float64
	for {
		t, err := p.expect(tNumber, "a number")
		if err != nil {
			return nil, err
		}
		n, err := parseNumber(t.text)
		if err != nil {
			return nil, fmt.Errorf("filter: at %d: %w", t.pos, err)
		}
		v = append(v, n)
		if p.peek().kind != tComma || len(v) == 6 {
			break
		}
		p.next()
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return nil, err
	}
	switch len(v) {
	case 4:
	case 6:
		v = []float64{v[0], v[1], v[3], v[4]}
	default:
		return nil, fmt.Errorf("filter: at %d: BBOX takes 4 or 6 numbers, found %d", open.pos, len(v))
	}
	g, err := BoxGeometry(v[0], v[1], v[2], v[3])
	if err != nil {
		return nil, fmt.Errorf("filter: at %d: BBOX: %w", open.pos, err)
	}
	return g, nil
}

// BoxGeometry is the closed lon/lat box w,s,e,n as a geometry for
// planar.Intersects: one orb.Bound, or two when w > e (the box crosses the
// antimeridian, as OGC API Features and CQL2 define). It checks ranges.
func BoxGeometry(w, s, e, n float64) (orb.Geometry, error) {
	if w < -180 || w > 180 || e < -180 || e > 180 || s < -90 || n > 90 || s > n {
		return nil, fmt.Errorf("%v,%v,%v,%v: want lon in -180..180, lat in -90..90, south <= north", w, s, e, n)
	}
	if w <= e {
		return orb.Bound{Min: orb.Point{w, s}, Max: orb.Point{e, n}}, nil
	}
	return orb.Collection{
		orb.Bound{Min: orb.Point{w, s}, Max: orb.Point{180, n}},
		orb.Bound{Min: orb.Point{-180, s}, Max: orb.Point{e, n}},
	}, nil
}

func intersectsLiterals(a, b orb.Geometry) bool { return planar.Intersects(a, b) }
