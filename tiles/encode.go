package tiles

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/maptile"

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
	m *memo
	// zs is m's zshape at the tile's zoom, if any, and kind m.kind: read
	// while the memo is in cache (after the ranking sort, reading them
	// from thousands of memos was a cache miss each).
	zs   *zshape
	rank float64 // importance: higher is drawn first and kept under the budget
	name uint64  // m.name8: ties in rank compare it before the names
	kind uint8
}

// build renders one tile of the requested layers from the twin. It returns
// the uncompressed MVT and the lowest feed sequence number the content is
// consistent with (the twin's Search result). Features are read from
// immutable snapshots; nothing of the twin is modified.
func (s *Server) build(ctx context.Context, req Request) ([]byte, uint64, error) {
	w := writerPool.Get().(*writer)
	defer writerPool.Put(w)
	seq, err := s.buildTo(ctx, w, req)
	if err != nil {
		return nil, 0, err
	}
	return append([]byte(nil), w.out...), seq, nil
}

// buildTo is build leaving the tile in w.out (valid until w is reused):
// a cached tile is gzipped and hashed from there, and its raw bytes (a
// dense tile's 140 KB) are never copied.
func (s *Server) buildTo(ctx context.Context, w *writer, req Request) (_ uint64, err error) {
	defer func() {
		// A bad object must cost one tile an error, never the process.
		if v := recover(); v != nil {
			err = fmt.Errorf("build tile %d/%d/%d: %v", req.Z, req.X, req.Y, v)
		}
	}()
	tile := maptile.New(req.X, req.Y, maptile.Zoom(req.Z))
	search := tile.Bound(float64(Buffer) / Extent)
	var visible func(*twin.Feature) bool
	if s.opts.Filter != nil {
		visible = s.opts.Filter(ctx)
	}
	w.out = w.out[:0]
	var seq uint64 = math.MaxUint64
	for _, l := range req.Layers {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("build tile: %w", err)
		}
		if req.Z < specs[l].minZoom {
			// No feature of the layer shows this low (minZoomFor is never
			// below the layer's): searching would visit all of them in a
			// large tile (every building of the city at z10) to drop each.
			continue
		}
		found := w.found[:0]
		var got uint64
		if l == twin.Roads && req.Z < roadMinZoom {
			got = s.tw.Search(l, search, func(f *twin.Feature) bool {
				if f.Geometry != nil && req.Z >= minZoomFor(f) {
					found = append(found, f)
				}
				return true
			})
		} else {
			// Every feature of the layer is shown at this zoom: no
			// per-feature minimum zoom lookup (a map access each, a
			// tenth of a dense tile's search). Nor is the feature read
			// for its geometry (a cache miss each: nothing else of it
			// is read when its memo is cached): the index holds only
			// features with one, and writeLayer drops a memo without.
			got = s.tw.Search(l, search, func(f *twin.Feature) bool {
				found = append(found, f)
				return true
			})
		}
		seq = min(seq, got)
		s.writeLayer(w, l, req, found, visible)
		clear(found) // do not keep features alive in the pool
		w.found = found[:0]
	}
	if seq == math.MaxUint64 {
		seq = s.tw.Feed().Last()
	}
	return seq, nil
}

// writeLayer filters (by visible, when not nil), ranks, budgets,
// projects, clips, simplifies and writes one layer's features to w.
func (s *Server) writeLayer(w *writer, l twin.Layer, req Request, found []*twin.Feature, visible func(*twin.Feature) bool) {
	scale := math.Ldexp(Extent, int(req.Z)) // tile units per world width
	cacheShapes := req.Z <= maxShapeZoom
	cands := w.cands[:0]
	if visible != nil {
		n := 0
		for _, f := range found {
			if visible(f) {
				found[n] = f
				n++
			}
		}
		clear(found[n:])
		found = found[:n]
	}
	ms := slices.Grow(w.memos[:0], len(found))[:len(found)]
	s.memo.getAll(found, ms)
	for _, m := range ms {
		if m.kind == kindNone {
			continue // no geometry: nothing to draw
		}
		size, keep := m.sizeAt(scale)
		if !keep {
			continue // smaller than a pixel at this zoom
		}
		cands = append(cands, candidate{m: m, rank: size*m.rankMul + m.rankAdd, name: m.name8, kind: m.kind})
	}
	clear(ms) // do not keep memos alive in the pool
	w.memos = ms[:0]
	if cacheShapes {
		w.findShapes(cands, req.Z)
	}
	w.sortCands(cands)
	if len(cands) > s.opts.MaxFeatures {
		cands = cands[:s.opts.MaxFeatures]
	}
	p := newProjector(req.Z, req.X, req.Y)
	tol := tolerance(req.Z)
	filt := s.filterFor(req.Attrs, l)
	w.beginLayer()
	n := 0
	for _, c := range cands {
		m := c.m
		if c.kind == kindNone {
			continue
		}
		keep := cacheShapes && c.kind != kindLine
		if keep {
			if zs := c.zs; zs != nil && zs.inside(p) {
				if zs.drawn {
					w.appendCached(m, c.kind, zs, p, req.Z, &filt)
					n++
				}
				continue
			}
		}
		// shape's first load is this projection; a redo projects again.
		inside := w.project(m, p)
		lo, hi := w.lo, w.hi
		loaded := false
		drawn := w.shape(func() bool {
			if !loaded {
				loaded = true
				return inside
			}
			return w.project(m, p)
		}, tol)
		if drawn {
			w.appendFeature(m, req.Z, &filt)
			n++
		}
		if keep && inside {
			m.addShape(w.newZshape(m, req.Z, p, lo, hi, drawn))
		}
	}
	w.endLayer(string(l), n)
	clear(cands)
	w.cands = cands[:0]
}

// findShapes sets each candidate's zshape at zoom z (lines have none),
// and reads the start, middle and end of its data, which appendCached
// reads after the ranking sort. A pass of its own, after the memos are
// found: each zshape is a cache miss, and so is its data, but in a loop
// this small the misses of successive candidates overlap (the loads of
// one do not wait for another's), where within the pass that finds the
// memos each waited in turn (two thirds of that pass's own time was
// the load of the zshapes' count).
func (w *writer) findShapes(cands []candidate, z uint8) {
	var touch byte
	for i := range cands {
		c := &cands[i]
		if c.kind == kindLine {
			continue
		}
		zs := c.m.shapeAt(z)
		c.zs = zs
		if zs != nil {
			if d := zs.data; len(d) > 0 {
				touch += d[0] + d[len(d)/2] + d[len(d)-1]
			}
		}
	}
	w.touch = touch // kept, so that the reads are not dropped
}

// shape sets w.sh to a feature's tile geometry: load puts it in tile units
// (reporting whether it lies within the buffered tile); shape clips,
// simplifies and tidies it, and makes polygons valid: a polygon that
// simplification made invalid is redone unsimplified, and one rounding
// made invalid loses its smallest offending rings. It reports whether
// anything drawable is left.
func (w *writer) shape(load func() bool, tol float64) bool {
	if !load() && !w.clipShape() {
		return false
	}
	w.simplify(tol)
	if !w.tidy() {
		return false
	}
	if w.sh.kind != kindPolygon {
		return true
	}
	if a, _ := w.invalidPair(); a < 0 {
		return true
	}
	if !load() && !w.clipShape() {
		return false
	}
	if !w.tidy() {
		return false
	}
	return w.repair()
}

// sizeOf measures a geometry's bounding box b (lon/lat) in tile units at
// the zoom whose world width is scale units: area for polygons (dimension
// 2), diagonal for lines (1), 0 for points. keep is false when the feature
// is under one pixel (its true area or length is at most the bbox's).
func sizeOf(b orb.Bound, dim int, scale float64) (size float64, keep bool) {
	if dim == 0 {
		return 0, true
	}
	w := (b.Max[0] - b.Min[0]) / 360 * scale
	h := (mercY(b.Min[1]) - mercY(b.Max[1])) * scale
	if dim == 1 {
		d := math.Hypot(w, h)
		return d, d >= pixel
	}
	a := w * h
	return a, a >= pixel*pixel
}

// sizeAt is sizeOf(m.bound, m.dim, scale) from the bound's extent in
// world fractions, computed once per memo: two logarithms per feature
// per tile were a tenth of a z13 tile's layer work.
func (m *memo) sizeAt(scale float64) (size float64, keep bool) {
	if m.dim == 0 {
		return 0, true
	}
	w := m.worldW * scale
	h := m.worldH * scale
	if m.dim == 1 {
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

// projector maps Web Mercator world fractions to tile units of one tile
// (origin at the tile's top-left, y down).
type projector struct {
	scale  float64 // tile units per world width
	ox, oy float64 // tile origin in tile units
}

func newProjector(z uint8, x, y uint32) projector {
	scale := math.Ldexp(Extent, int(z))
	return projector{scale: scale, ox: float64(x) * Extent, oy: float64(y) * Extent}
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

// candCmp orders candidates by rank, highest first, then by name (name8,
// then the whole name): a total order (names are unique in a layer), so
// tiles are deterministic.
func candCmp(a, b candidate) int {
	if a.rank != b.rank {
		if a.rank > b.rank {
			return -1
		}
		return 1
	}
	return candNameCmp(a, b)
}

func candNameCmp(a, b candidate) int {
	if a.name != b.name {
		if a.name < b.name {
			return -1
		}
		return 1
	}
	return strings.Compare(a.m.f.ID.Name, b.m.f.ID.Name)
}

// rankKey is a candidate's rank as an unsigned key that sorts ascending
// as the ranks do descending, and its index.
type rankKey struct {
	k uint64
	i uint32
}

// descKey maps a rank to rankKey.k: equal ranks (-0 and 0 too) to equal
// keys, a higher rank to a lower key.
func descKey(r float64) uint64 {
	if r == 0 {
		r = 0 // -0
	}
	b := math.Float64bits(r)
	if b>>63 == 1 {
		b = ^b
	} else {
		b |= 1 << 63
	}
	return ^b
}

// minRadixSort is the candidate count from which sortCands radix sorts.
const minRadixSort = 64

// sortCands sorts cands in candCmp's order: by rank with a radix sort on
// descKey (8 bits a pass, skipping the bytes every key shares), then the
// runs of equal rank by name. A comparison sort of a dense tile's 3,200
// buildings was an eighth of its CPU, mostly mispredicted branches on
// ranks in random order.
func (w *writer) sortCands(cands []candidate) {
	n := len(cands)
	if n < minRadixSort {
		slices.SortFunc(cands, candCmp)
		return
	}
	keys := slices.Grow(w.rkeys[:0], n)[:n]
	tmp := slices.Grow(w.rtmp[:0], n)[:n]
	var counts [8][256]uint32
	for i := range cands {
		k := descKey(cands[i].rank)
		keys[i] = rankKey{k: k, i: uint32(i)}
		for b := range 8 {
			counts[b][byte(k>>(8*b))]++
		}
	}
	src, dst := keys, tmp
	for b := range 8 {
		c := &counts[b]
		if c[byte(src[0].k>>(8*b))] == uint32(n) {
			continue // every key has this byte
		}
		sum := uint32(0)
		for d := range c {
			c[d], sum = sum, sum+c[d]
		}
		for _, k := range src {
			d := byte(k.k >> (8 * b))
			dst[c[d]] = k
			c[d]++
		}
		src, dst = dst, src
	}
	out := slices.Grow(w.cscr[:0], n)[:n]
	for j, k := range src {
		out[j] = cands[k.i]
	}
	for i := 0; i < n; {
		j := i + 1
		for j < n && src[j].k == src[i].k {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(out[i:j], candNameCmp)
		}
		i = j
	}
	copy(cands, out)
	clear(out) // keep no memos alive in the pool
	w.rkeys, w.rtmp, w.cscr = keys[:0], tmp[:0], out[:0]
}
