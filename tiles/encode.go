package tiles

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/clip"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/maptile"
	"github.com/paulmach/orb/simplify"

	"github.com/citytwin/citytwin/twin"
)

// Tile geometry constants, in tile units (1/Extent of a tile side).
const (
	// Extent is the MVT extent of every layer.
	Extent = 4096
	// Buffer is how far geometry extends past the tile edge so that
	// strokes and clipped polygon edges join seamlessly between tiles.
	Buffer = 64
	// pixel is one screen pixel of a tile drawn 512 px wide (MapLibre).
	pixel = Extent / 512
)

// tolerance is the Douglas-Peucker tolerance in tile units at zoom z:
// half a pixel up to z12, a quarter pixel up to z15, then one tile unit,
// so high zooms keep building footprints exact.
func tolerance(z uint8) float64 {
	switch {
	case z <= 12:
		return pixel / 2
	case z <= 15:
		return pixel / 4
	}
	return 1
}

// candidate is a feature chosen for a tile.
type candidate struct {
	f    *twin.Feature
	rank float64 // importance: higher is drawn first and kept under the budget
}

// build renders one tile of the requested layers from the twin. It returns
// the uncompressed MVT and the lowest feed sequence number the content is
// consistent with (the twin's Search result). Features are read from
// immutable snapshots; nothing of the twin is modified.
func (s *Server) build(ctx context.Context, req Request) (_ []byte, _ uint64, err error) {
	defer func() {
		// orb's encoder panics on geometry it cannot encode; a bad object
		// must cost one tile an error, never the process.
		if v := recover(); v != nil {
			err = fmt.Errorf("build tile %d/%d/%d: %v", req.Z, req.X, req.Y, v)
		}
	}()
	tile := maptile.New(req.X, req.Y, maptile.Zoom(req.Z))
	search := tile.Bound(float64(Buffer) / Extent)
	var layers mvt.Layers
	var seq uint64 = math.MaxUint64
	for _, l := range req.Layers {
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("build tile: %w", err)
		}
		var found []*twin.Feature
		got := s.tw.Search(l, search, func(f *twin.Feature) bool {
			if f.Geometry != nil && req.Z >= minZoomFor(f) {
				found = append(found, f)
			}
			return true
		})
		seq = min(seq, got)
		layer := s.buildLayer(ctx, l, req, found)
		if len(layer.Features) > 0 {
			layers = append(layers, layer)
		}
	}
	if seq == math.MaxUint64 {
		seq = s.tw.Feed().Last()
	}
	b, err := mvt.Marshal(layers)
	if err != nil {
		return nil, 0, fmt.Errorf("marshal tile %d/%d/%d: %w", req.Z, req.X, req.Y, err)
	}
	return b, seq, nil
}

// buildLayer filters, ranks, budgets, projects, clips and simplifies one
// layer's features.
func (s *Server) buildLayer(ctx context.Context, l twin.Layer, req Request, found []*twin.Feature) *mvt.Layer {
	scale := math.Ldexp(Extent, int(req.Z)) // tile units per world width
	cands := make([]candidate, 0, len(found))
	for _, f := range found {
		if s.opts.Filter != nil && !s.opts.Filter(ctx, f) {
			continue
		}
		size, keep := sizeOf(f.Geometry, scale)
		if !keep {
			continue // smaller than a pixel at this zoom
		}
		cands = append(cands, candidate{f: f, rank: importance(f, size)})
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].rank != cands[j].rank {
			return cands[i].rank > cands[j].rank
		}
		return cands[i].f.ID.Name < cands[j].f.ID.Name
	})
	if len(cands) > s.opts.MaxFeatures {
		cands = cands[:s.opts.MaxFeatures]
	}
	p := newProjector(req.Z, req.X, req.Y)
	box := orb.Bound{Min: orb.Point{-Buffer, -Buffer}, Max: orb.Point{Extent + Buffer, Extent + Buffer}}
	dp := simplify.DouglasPeucker(tolerance(req.Z))
	out := &mvt.Layer{Name: string(l), Version: 2, Extent: Extent, Features: make([]*geojson.Feature, 0, len(cands))}
	for _, c := range cands {
		g := p.geometry(c.f.Geometry)
		if g == nil {
			continue
		}
		if gb := g.Bound(); !box.Contains(gb.Min) || !box.Contains(gb.Max) {
			// Only features crossing the buffered edge need clipping
			// (most at high zoom lie inside and skip the copy).
			if g = clip.Geometry(box, g); g == nil {
				continue
			}
		}
		if g.Dimensions() > 0 {
			g = dp.Simplify(g)
		}
		g = tidy(g)
		if g == nil {
			continue
		}
		out.Features = append(out.Features, &geojson.Feature{ID: FeatureID(c.f.ID), Geometry: g, Properties: attributes(c.f, req.Z)})
	}
	return out
}

// sizeOf measures a geometry's bounding box in tile units at the zoom whose
// world width is scale units: area for polygons, diagonal for lines, 0 for
// points. keep is false when the feature is under one pixel (its true area
// or length is at most the bbox's).
func sizeOf(g orb.Geometry, scale float64) (size float64, keep bool) {
	dim := g.Dimensions()
	if dim == 0 {
		return 0, true
	}
	b := g.Bound()
	w := (b.Max[0] - b.Min[0]) / 360 * scale
	h := (mercY(b.Min[1]) - mercY(b.Max[1])) * scale
	if dim == 1 {
		d := math.Hypot(w, h)
		return d, d >= pixel
	}
	a := w * h
	return a, a >= pixel*pixel
}

// mercY is the Web Mercator y of a latitude as a fraction of the world
// (0 at the north edge, 1 at the south), clamped to the Mercator limits.
func mercY(lat float64) float64 {
	const maxLat = 85.05112877980659
	lat = math.Max(-maxLat, math.Min(maxLat, lat))
	s := math.Sin(lat * math.Pi / 180)
	return 0.5 - math.Log((1+s)/(1-s))/(4*math.Pi)
}

// projector maps lon/lat to integer tile units of one tile (Web Mercator,
// origin at the tile's top-left, y down), building new geometry so the
// twin's immutable features are never touched.
type projector struct {
	scale  float64 // tile units per world width
	ox, oy float64 // tile origin in tile units
}

func newProjector(z uint8, x, y uint32) projector {
	scale := math.Ldexp(Extent, int(z))
	return projector{scale: scale, ox: float64(x) * Extent, oy: float64(y) * Extent}
}

func (p projector) point(q orb.Point) orb.Point {
	return orb.Point{
		math.Floor((q[0]+180)/360*p.scale - p.ox),
		math.Floor(mercY(q[1])*p.scale - p.oy),
	}
}

func (p projector) points(in []orb.Point) []orb.Point {
	out := make([]orb.Point, len(in))
	for i, q := range in {
		out[i] = p.point(q)
	}
	return out
}

func (p projector) geometry(g orb.Geometry) orb.Geometry {
	switch g := g.(type) {
	case orb.Point:
		return p.point(g)
	case orb.MultiPoint:
		return orb.MultiPoint(p.points(g))
	case orb.LineString:
		return orb.LineString(p.points(g))
	case orb.MultiLineString:
		out := make(orb.MultiLineString, len(g))
		for i, ls := range g {
			out[i] = p.points(ls)
		}
		return out
	case orb.Ring:
		return orb.Polygon{p.points(g)}
	case orb.Polygon:
		return p.polygon(g)
	case orb.MultiPolygon:
		out := make(orb.MultiPolygon, len(g))
		for i, poly := range g {
			out[i] = p.polygon(poly)
		}
		return out
	case orb.Bound:
		return p.polygon(g.ToPolygon())
	}
	return nil // collections are not drawn
}

func (p projector) polygon(poly orb.Polygon) orb.Polygon {
	out := make(orb.Polygon, len(poly))
	for i, r := range poly {
		out[i] = p.points(r)
	}
	return out
}

// tidy rounds clipped coordinates to integers, drops repeated points and
// degenerate parts (lines under 2 points, rings under 3 distinct points or
// with zero area), and orients rings as MVT 2.1 requires: exterior rings
// with positive surveyor's-formula area in tile coordinates (clockwise on
// screen), holes negative. It returns nil when nothing drawable is left.
func tidy(g orb.Geometry) orb.Geometry {
	switch g := g.(type) {
	case orb.Point:
		return orb.Point{math.Round(g[0]), math.Round(g[1])}
	case orb.MultiPoint:
		if len(g) == 0 {
			return nil
		}
		for i := range g {
			g[i] = orb.Point{math.Round(g[i][0]), math.Round(g[i][1])}
		}
		return g
	case orb.LineString:
		ls := dedupe(g)
		if len(ls) < 2 {
			return nil
		}
		return orb.LineString(ls)
	case orb.MultiLineString:
		out := g[:0]
		for _, ls := range g {
			if ls = dedupe(ls); len(ls) >= 2 {
				out = append(out, ls)
			}
		}
		switch len(out) {
		case 0:
			return nil
		case 1:
			return out[0]
		}
		return out
	case orb.Polygon:
		if p := tidyPolygon(g); p != nil {
			return p
		}
		return nil
	case orb.MultiPolygon:
		out := g[:0]
		for _, p := range g {
			if p = tidyPolygon(p); p != nil {
				out = append(out, p)
			}
		}
		switch len(out) {
		case 0:
			return nil
		case 1:
			return out[0]
		}
		return out
	}
	return nil
}

func tidyPolygon(p orb.Polygon) orb.Polygon {
	out := p[:0]
	for i, r := range p {
		pts := dedupe(r)
		if len(pts) > 1 && pts[0] == pts[len(pts)-1] {
			pts = pts[:len(pts)-1]
		}
		if len(pts) < 3 {
			if i == 0 {
				return nil
			}
			continue
		}
		a := surveyor(pts)
		if a == 0 {
			if i == 0 {
				return nil
			}
			continue
		}
		if (i == 0) != (a > 0) {
			reverse(pts)
		}
		out = append(out, orb.Ring(append(pts, pts[0])))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// dedupe rounds points to integers and drops consecutive repeats, in place.
func dedupe(in []orb.Point) []orb.Point {
	out := in[:0]
	for _, q := range in {
		q = orb.Point{math.Round(q[0]), math.Round(q[1])}
		if len(out) > 0 && out[len(out)-1] == q {
			continue
		}
		out = append(out, q)
	}
	return out
}

// surveyor is twice the signed area of an open ring by the surveyor's
// (shoelace) formula, as the MVT spec defines winding.
func surveyor(pts []orb.Point) float64 {
	var a float64
	for i := range pts {
		j := (i + 1) % len(pts)
		a += pts[i][0]*pts[j][1] - pts[j][0]*pts[i][1]
	}
	return a
}

func reverse(pts []orb.Point) {
	for i, j := 0, len(pts)-1; i < j; i, j = i+1, j-1 {
		pts[i], pts[j] = pts[j], pts[i]
	}
}
