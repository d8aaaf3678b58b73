package tiles

// The orb-based tile encoder this package used before its direct writer,
// kept as the reference the writer is tested against.

import (
	"context"
	"encoding/binary"
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
	return refNumberValues(b), seq, nil
}

// pbField is one protobuf field: its number and its whole encoding (tag,
// length, body) and body.
type pbField struct {
	num         uint64
	whole, body []byte
}

// pbFields splits a message into its fields (varint, fixed64,
// length-delimited and fixed32 wire types).
func pbFields(b []byte) []pbField {
	var out []pbField
	for len(b) > 0 {
		k, n := binary.Uvarint(b)
		start := b
		b = b[n:]
		var body []byte
		switch k & 7 {
		case 0:
			_, m := binary.Uvarint(b)
			body, b = b[:m], b[m:]
		case 1:
			body, b = b[:8], b[8:]
		case 2:
			l, m := binary.Uvarint(b)
			body, b = b[m:m+int(l)], b[m+int(l):]
		case 5:
			body, b = b[:4], b[4:]
		default:
			panic("bad wire type")
		}
		out = append(out, pbField{num: k >> 3, whole: start[:len(start)-len(b)], body: body})
	}
	return out
}

func pbAppendBytes(b []byte, num uint64, body []byte) []byte {
	b = binary.AppendUvarint(b, num<<3|2)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

// refNumberValues renumbers every layer's values of an encoded tile by
// use, most used first and ties in their first-seen order, rewriting the
// features' tags: the writer's numbering (writer.numberValues), done here
// on the encoded protobuf, apart from the writer's code.
func refNumberValues(tile []byte) []byte {
	var out []byte
	for _, tf := range pbFields(tile) {
		if tf.num != 3 {
			out = append(out, tf.whole...)
			continue
		}
		fields := pbFields(tf.body)
		var vals [][]byte
		var uses []int
		for _, f := range fields {
			if f.num == 4 {
				vals = append(vals, f.whole)
				uses = append(uses, 0)
			}
		}
		tagsOf := func(feat []byte) []uint64 {
			var tags []uint64
			for _, ff := range pbFields(feat) {
				for b := ff.body; ff.num == 2 && len(b) > 0; {
					v, n := binary.Uvarint(b)
					tags, b = append(tags, v), b[n:]
				}
			}
			return tags
		}
		for _, f := range fields {
			if f.num == 2 {
				for i, v := range tagsOf(f.body) {
					if i%2 == 1 {
						uses[v]++
					}
				}
			}
		}
		order := make([]int, len(vals))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return uses[order[a]] > uses[order[b]] })
		num := make([]uint64, len(vals))
		for i, v := range order {
			num[v] = uint64(i)
		}
		var layer []byte
		k := 0
		for _, f := range fields {
			switch f.num {
			case 2:
				var feat []byte
				for _, ff := range pbFields(f.body) {
					if ff.num != 2 {
						feat = append(feat, ff.whole...)
						continue
					}
					var packed []byte
					for i, v := range tagsOf(f.body) {
						if i%2 == 1 {
							v = num[v]
						}
						packed = binary.AppendUvarint(packed, v)
					}
					feat = pbAppendBytes(feat, 2, packed)
				}
				layer = pbAppendBytes(layer, 2, feat)
			case 4:
				layer = append(layer, vals[order[k]]...)
				k++
			default:
				layer = append(layer, f.whole...)
			}
		}
		out = pbAppendBytes(out, 3, layer)
	}
	return out
}

// buildLayer filters, ranks, budgets, projects, clips and simplifies one
// layer's features.
func refBuildLayer(s *Server, ctx context.Context, l twin.Layer, req Request, found []*twin.Feature) *mvt.Layer {
	scale := math.Ldexp(Extent, int(req.Z)) // tile units per world width
	cands := make([]refCandidate, 0, len(found))
	for _, f := range found {
		if s.opts.Filter != nil && s.opts.Filter(ctx) != nil && !s.opts.Filter(ctx)(f) {
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
