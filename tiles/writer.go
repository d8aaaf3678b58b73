package tiles

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/clip"

	"github.com/citytwin/citytwin/twin"
)

// writer encodes one tile as MVT 2.1 protobuf directly: features are
// projected from their memoised world coordinates into reused flat
// buffers, clipped only when they cross the buffered tile edge, simplified
// and tidied in place, and written with per-layer key and value tables.
// Nothing is allocated per feature on the common path (compared with
// orb's encoder: an orb geometry, a property map and protobuf structs per
// feature). Not safe for concurrent use; writers are pooled.
type writer struct {
	out   []byte // the tile
	body  []byte // the current layer's features
	feat  []byte // the current feature's packed fields
	geom  []uint32
	tags  []uint32
	keys  []string
	keyIx map[string]uint32
	vals  []value
	valIx map[value]uint32
	sh    shape // the current feature in tile units
	mask  []byte
	stack []int
	found []*twin.Feature
	cands []candidate
}

var writerPool = sync.Pool{New: func() any {
	return &writer{keyIx: map[string]uint32{}, valIx: map[value]uint32{}}
}}

// Protobuf tags (field number << 3 | wire type) of vector_tile.proto.
const (
	tagTileLayer     = 3<<3 | 2
	tagLayerName     = 1<<3 | 2
	tagLayerFeature  = 2<<3 | 2
	tagLayerKey      = 3<<3 | 2
	tagLayerValue    = 4<<3 | 2
	tagLayerExtent   = 5<<3 | 0
	tagLayerVersion  = 15<<3 | 0
	tagFeatureID     = 1<<3 | 0
	tagFeatureTags   = 2<<3 | 2
	tagFeatureType   = 3<<3 | 0
	tagFeatureGeom   = 4<<3 | 2
	cmdMoveTo        = 1
	cmdLineTo        = 2
	cmdClosePath     = 7
	wireVarint       = 0
	wireFixed64      = 1
	mvtLayerVersion  = 2
	extentWithBuffer = Extent + Buffer
)

func appendBytesField(b []byte, tag byte, p []byte) []byte {
	b = append(b, tag)
	b = appendVarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendStringField(b []byte, tag byte, s string) []byte {
	b = append(b, tag)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// beginLayer clears the per-layer state.
func (w *writer) beginLayer() {
	w.body = w.body[:0]
	w.keys = w.keys[:0]
	w.vals = w.vals[:0]
	clear(w.keyIx)
	clear(w.valIx)
}

// endLayer appends the layer (if it has features) to the tile.
func (w *writer) endLayer(name string, n int) {
	if n == 0 {
		return
	}
	// Layer fields after the features: keys, values, extent, version; the
	// name first. Assemble in feat (free between features) to get the length.
	lb := w.feat[:0]
	lb = appendStringField(lb, tagLayerName, name)
	lb = append(lb, w.body...)
	for _, k := range w.keys {
		lb = appendStringField(lb, tagLayerKey, k)
	}
	var vb [16]byte
	for _, v := range w.vals {
		lb = appendBytesField(lb, tagLayerValue, encodeValue(vb[:0], v))
	}
	lb = append(lb, tagLayerExtent)
	lb = appendVarint(lb, Extent)
	lb = append(lb, tagLayerVersion)
	lb = appendVarint(lb, mvtLayerVersion)
	w.out = appendBytesField(w.out, tagTileLayer, lb)
	w.feat = lb[:0]
}

// encodeValue appends a Tile.Value message body; strings are appended by
// the caller's append (b only needs to hold numbers).
func encodeValue(b []byte, v value) []byte {
	switch v.kind {
	case valString:
		return appendStringField(b, valString<<3|2, v.s)
	case valDouble:
		b = append(b, valDouble<<3|wireFixed64)
		return binary.LittleEndian.AppendUint64(b, v.n)
	case valSint:
		n := int64(v.n)
		b = append(b, valSint<<3|wireVarint)
		return appendVarint(b, uint64(n<<1)^uint64(n>>63))
	default: // valUint, valBool
		b = append(b, v.kind<<3|wireVarint)
		return appendVarint(b, v.n)
	}
}

func (w *writer) keyIndex(k string) uint32 {
	if i, ok := w.keyIx[k]; ok {
		return i
	}
	i := uint32(len(w.keys))
	w.keys = append(w.keys, k)
	w.keyIx[k] = i
	return i
}

func (w *writer) valueIndex(v value) uint32 {
	if i, ok := w.valIx[v]; ok {
		return i
	}
	i := uint32(len(w.vals))
	w.vals = append(w.vals, v)
	w.valIx[v] = i
	return i
}

// project sets w.sh to m's geometry in integer tile units (Web Mercator,
// origin at the tile's top-left, y down) and reports whether every point
// lies within the buffered tile.
func (w *writer) project(m *memo, p projector) (inside bool) {
	sh := &w.sh
	sh.kind = m.world.kind
	sh.parts = append(sh.parts[:0], m.world.parts...)
	sh.pts = sh.pts[:0]
	inside = true
	for _, q := range m.world.pts {
		x := math.Floor(q[0]*p.scale - p.ox)
		y := math.Floor(q[1]*p.scale - p.oy)
		// Written so that NaN counts as outside.
		if !(x >= -Buffer && x <= extentWithBuffer && y >= -Buffer && y <= extentWithBuffer) {
			inside = false
		}
		sh.pts = append(sh.pts, orb.Point{x, y})
	}
	return inside
}

// clipShape clips w.sh to the buffered tile with orb's clip (rare: only
// features crossing the edge), reporting false when nothing is left.
func (w *writer) clipShape() bool {
	box := orb.Bound{Min: orb.Point{-Buffer, -Buffer}, Max: orb.Point{extentWithBuffer, extentWithBuffer}}
	sh := &w.sh
	if sh.kind == kindPoint {
		n := 0
		for _, q := range sh.pts {
			if box.Contains(q) {
				sh.pts[n] = q
				n++
			}
		}
		sh.pts = sh.pts[:n]
		sh.parts = append(sh.parts[:0], part{end: int32(n)})
		return n > 0
	}
	g := clip.Geometry(box, sh.geometry())
	if g == nil {
		return false
	}
	kind := sh.kind
	sh.flatten(g)
	if sh.kind == kindPolygon && kind == kindPolygon || sh.kind == kindLine && kind == kindLine {
		return len(sh.parts) > 0
	}
	return false
}

// simplify runs Douglas-Peucker with tolerance tol (tile units) on every
// line and ring of w.sh in place; the algorithm and results are those of
// orb's simplify.DouglasPeucker.
func (w *writer) simplify(tol float64) {
	sh := &w.sh
	if sh.kind == kindPoint {
		return
	}
	start, n := int32(0), int32(0)
	for i, p := range sh.parts {
		seg := sh.pts[start:p.end]
		start = p.end
		if len(seg) > 2 {
			seg = w.dp(seg, tol)
		}
		n += int32(copy(sh.pts[n:], seg))
		sh.parts[i].end = n
	}
	sh.pts = sh.pts[:n]
}

// dp is orb's dpWorker and compaction with reused mask and stack buffers.
func (w *writer) dp(ls []orb.Point, tol float64) []orb.Point {
	if cap(w.mask) < len(ls) {
		w.mask = make([]byte, len(ls))
	}
	mask := w.mask[:len(ls)]
	clear(mask)
	mask[0], mask[len(mask)-1] = 1, 1
	stack := append(w.stack[:0], 0, len(ls)-1)
	for len(stack) > 0 {
		start, end := stack[len(stack)-2], stack[len(stack)-1]
		maxDist, maxIndex := 0.0, 0
		for i := start + 1; i < end; i++ {
			if d := distanceFromSegmentSquared(ls[start], ls[end], ls[i]); d > maxDist {
				maxDist, maxIndex = d, i
			}
		}
		if maxDist > tol*tol {
			mask[maxIndex] = 1
			stack[len(stack)-1] = maxIndex
			stack = append(stack, maxIndex, end)
		} else {
			stack = stack[:len(stack)-2]
		}
	}
	w.stack = stack
	n := 0
	for i, v := range mask {
		if v == 1 {
			ls[n] = ls[i]
			n++
		}
	}
	return ls[:n]
}

// distanceFromSegmentSquared is orb/planar's, inlined.
func distanceFromSegmentSquared(a, b, p orb.Point) float64 {
	x, y := a[0], a[1]
	dx, dy := b[0]-x, b[1]-y
	if dx != 0 || dy != 0 {
		t := ((p[0]-x)*dx + (p[1]-y)*dy) / (dx*dx + dy*dy)
		if t > 1 {
			x, y = b[0], b[1]
		} else if t > 0 {
			x += dx * t
			y += dy * t
		}
	}
	dx, dy = p[0]-x, p[1]-y
	return dx*dx + dy*dy
}

// tidy rounds w.sh to integers, drops repeated points and degenerate parts
// (lines under 2 points, rings under 3 distinct points or of zero area, and
// the holes of a dropped exterior), leaves rings open (MVT closes them) and
// orients them as MVT 2.1 requires: exterior rings with positive
// surveyor's-formula area in tile coordinates (clockwise on screen), holes
// negative. It reports whether anything drawable is left.
func (w *writer) tidy() bool {
	sh := &w.sh
	if sh.kind == kindPoint {
		for i, q := range sh.pts {
			sh.pts[i] = orb.Point{math.Round(q[0]), math.Round(q[1])}
		}
		return len(sh.pts) > 0
	}
	start, n := int32(0), int32(0)
	np := 0
	skipHoles := false
	for _, p := range sh.parts {
		seg := dedupe(sh.pts[start:p.end])
		start = p.end
		if sh.kind == kindLine {
			if len(seg) < 2 {
				continue
			}
		} else {
			if p.outer {
				skipHoles = false
			} else if skipHoles {
				continue
			}
			if len(seg) > 1 && seg[0] == seg[len(seg)-1] {
				seg = seg[:len(seg)-1]
			}
			a := 0.0
			if len(seg) >= 3 {
				a = surveyor(seg)
			}
			if a == 0 {
				skipHoles = skipHoles || p.outer
				continue
			}
			if p.outer != (a > 0) {
				reverse(seg)
			}
		}
		n += int32(copy(sh.pts[n:], seg))
		sh.parts[np] = part{end: n, outer: p.outer}
		np++
	}
	sh.pts = sh.pts[:n]
	sh.parts = sh.parts[:np]
	return np > 0
}

// encodeGeometry appends w.sh's MVT command stream to w.geom.
func (w *writer) encodeGeometry() {
	g := w.geom[:0]
	sh := &w.sh
	var cx, cy int32
	put := func(q orb.Point) {
		x, y := int32(q[0]), int32(q[1])
		dx, dy := x-cx, y-cy
		cx, cy = x, y
		g = append(g, uint32((dx<<1)^(dx>>31)), uint32((dy<<1)^(dy>>31)))
	}
	if sh.kind == kindPoint {
		g = append(g, uint32(len(sh.pts))<<3|cmdMoveTo)
		for _, q := range sh.pts {
			put(q)
		}
		w.geom = g
		return
	}
	start := int32(0)
	for _, p := range sh.parts {
		seg := sh.pts[start:p.end]
		start = p.end
		g = append(g, 1<<3|cmdMoveTo)
		put(seg[0])
		g = append(g, uint32(len(seg)-1)<<3|cmdLineTo)
		for _, q := range seg[1:] {
			put(q)
		}
		if sh.kind == kindPolygon {
			g = append(g, 1<<3|cmdClosePath)
		}
	}
	w.geom = g
}

// appendFeature writes the feature in w.sh with m's id and attributes.
func (w *writer) appendFeature(m *memo, z uint8) {
	tags := w.tags[:0]
	for _, a := range m.attrs(z) {
		tags = append(tags, w.keyIndex(a.key), w.valueIndex(a.val))
	}
	w.tags = tags
	w.encodeGeometry()
	f := w.feat[:0]
	f = append(f, tagFeatureID)
	f = appendVarint(f, m.id)
	f = appendPacked(f, tagFeatureTags, tags)
	f = append(f, tagFeatureType, w.sh.kind)
	f = appendPacked(f, tagFeatureGeom, w.geom)
	w.body = appendBytesField(w.body, tagLayerFeature, f)
	w.feat = f[:0]
}

func appendPacked(b []byte, tag byte, vs []uint32) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += varintLen(uint64(v))
	}
	b = append(b, tag)
	b = appendVarint(b, uint64(n))
	for _, v := range vs {
		b = appendVarint(b, uint64(v))
	}
	return b
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
