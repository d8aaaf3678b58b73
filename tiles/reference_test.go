package tiles

// The orb-based tile encoder this package used before its direct writer,
// kept as the reference the writer is tested against.

import (
	"context"
	"encoding/json"
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

// attributes (the reference) flattens a feature's props into MVT attributes: id
// ("layer/name"), version, every string, number and bool prop, and for
// devices the readings of "values" by their own names (values.ch4 -> ch4)
// unless a prop of that name exists. Below DetailZoom, layers with a lean
// set write only those attributes. Nested maps and lists are skipped,
// except advertised string fields, which are written as JSON; non-finite
// numbers are dropped.
func attributes(f *twin.Feature, z uint8) map[string]any {
	out := make(map[string]any, f.Props.Len()+2)
	sp := specs[f.ID.Layer]
	fields := sp.fields
	lean := sp.lean
	if z >= DetailZoom {
		lean = nil
	}
	for k, v := range f.Props.All() {
		if lean != nil && !lean[k] {
			continue
		}
		if s, ok := scalar(v); ok {
			out[k] = s
		} else if fields[k] == "String" && v != nil {
			// An advertised key prop that is structured (a bridge's
			// restrictions, a building's owners) travels as compact JSON.
			if b, err := json.Marshal(v); err == nil && len(b) <= maxJSONAttr {
				out[k] = string(b)
			}
		}
	}
	if sp.readings {
		if vals, ok := f.Props.Get("values").(map[string]any); ok {
			for k, v := range vals {
				if _, taken := out[k]; taken {
					continue
				}
				if s, ok := scalar(v); ok {
					out[k] = s
				}
			}
		}
	}
	out["id"] = f.ID.String()
	out["version"] = f.Version
	return out
}

type refCandidate struct {
	f    *twin.Feature
	rank float64
}

type refProjector projector

// build renders one tile of the requested layers from the twin. It returns
// the uncompressed MVT and the lowest feed sequence number the content is
// consistent with (the twin's Search result). Features are read from
// immutable snapshots; nothing of the twin is modified.
func refBuild(s *Server, ctx context.Context, req Request) (_ []byte, _ uint64, err error) {
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
		layer := refBuildLayer(s, ctx, l, req, found)
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
func refBuildLayer(s *Server, ctx context.Context, l twin.Layer, req Request, found []*twin.Feature) *mvt.Layer {
	scale := math.Ldexp(Extent, int(req.Z)) // tile units per world width
	cands := make([]refCandidate, 0, len(found))
	for _, f := range found {
		if s.opts.Filter != nil && !s.opts.Filter(ctx, f) {
			continue
		}
		size, keep := sizeOf(f.Geometry.Bound(), f.Geometry.Dimensions(), scale)
		if !keep {
			continue // smaller than a pixel at this zoom
		}
		cands = append(cands, refCandidate{f: f, rank: importance(f, size)})
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
	p := refProjector(newProjector(req.Z, req.X, req.Y))
	box := orb.Bound{Min: orb.Point{-Buffer, -Buffer}, Max: orb.Point{Extent + Buffer, Extent + Buffer}}
	dp := simplify.DouglasPeucker(tolerance(req.Z))
	out := &mvt.Layer{Name: string(l), Version: 2, Extent: Extent, Features: make([]*geojson.Feature, 0, len(cands))}
	for _, c := range cands {
		g := p.geometry(c.f.Geometry)
		if g == nil {
			continue
		}
		if g.Dimensions() == 2 {
			// Polygons go through the writer's own clip, simplify and
			// validity pipeline (checked independently by
			// TestTilesAreValidMVT): the reference compares encoding.
			if g = refPolygon(g, box, tolerance(req.Z)); g == nil {
				continue
			}
			out.Features = append(out.Features, &geojson.Feature{ID: FeatureID(c.f.ID), Geometry: g, Properties: attributes(c.f, req.Z)})
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
		g = refTidy(g)
		if g == nil {
			continue
		}
		out.Features = append(out.Features, &geojson.Feature{ID: FeatureID(c.f.ID), Geometry: g, Properties: attributes(c.f, req.Z)})
	}
	return out
}

func (p refProjector) point(q orb.Point) orb.Point {
	return orb.Point{
		math.Floor((q[0]+180)/360*p.scale - p.ox),
		math.Floor(mercY(q[1])*p.scale - p.oy),
	}
}

func (p refProjector) points(in []orb.Point) []orb.Point {
	out := make([]orb.Point, len(in))
	for i, q := range in {
		out[i] = p.point(q)
	}
	return out
}

func (p refProjector) geometry(g orb.Geometry) orb.Geometry {
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

func (p refProjector) polygon(poly orb.Polygon) orb.Polygon {
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
func refTidy(g orb.Geometry) orb.Geometry {
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
		if p := refTidyPolygon(g); p != nil {
			return p
		}
		return nil
	case orb.MultiPolygon:
		out := g[:0]
		for _, p := range g {
			if p = refTidyPolygon(p); p != nil {
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

func refTidyPolygon(p orb.Polygon) orb.Polygon {
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

// refPolygon runs a polygon in tile units through writer.shape.
func refPolygon(g orb.Geometry, box orb.Bound, tol float64) orb.Geometry {
	var w writer
	load := func() bool {
		w.sh.flatten(g)
		gb := g.Bound()
		return box.Contains(gb.Min) && box.Contains(gb.Max)
	}
	if !w.shape(load, tol) {
		return nil
	}
	mp := w.sh.geometry().(orb.MultiPolygon)
	for _, p := range mp {
		for i, r := range p {
			p[i] = append(r, r[0])
		}
	}
	if len(mp) == 1 {
		return mp[0]
	}
	return mp
}
