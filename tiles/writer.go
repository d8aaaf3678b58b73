package tiles

import (
	"encoding/binary"
	"math"
	"slices"
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
	gpack []byte // geom as packed varints
	tags  []uint32
	refs  []tagRef // a zshape's attribute numbers
	keys  []string
	keyIx index
	// kmap caches keyIndex by key number (kv.kid): index+1, 0 unknown;
	// kused are the numbers set in the current layer.
	kmap  []uint32
	kused []uint16
	// vids finds a value number's index in the layer's value table.
	vids  vidMap
	vals  []value
	valIx index
	// valIxAll: valIx indexes every value of vals (after the layer's
	// first unnumbered value; before, numbered values skip it).
	valIxAll bool
	// The layer's features are kept until endLayer numbers the values by
	// use: feats (id, type, ends in ftags and fgeom), their tags with
	// values in first-seen numbering, their packed geometry; vcount
	// counts each value's uses, vorder and vnum are endLayer's scratch.
	feats  []featRec
	ftags  []uint32
	fgeom  []byte
	vcount []int32
	vorder []int32
	vstart []int32 // orderValues' scratch
	vnum   []uint32
	vscr   []value
	sh     shape   // the current feature in tile units
	clip   clipper // clipPolygons' scratch
	mask   []byte
	stack  []int
	found  []*twin.Feature
	memos  []*memo // found's, in writeLayer
	cands  []candidate
	// sortCands' scratch.
	rkeys, rtmp []rankKey
	cscr        []candidate
	segs        []seg
	polys       []polyRef
	// lo, hi bound the points of the last project, in tile units.
	lo, hi orb.Point
	// touch is findShapes' sum of the bytes it reads ahead (unused).
	touch byte
}

var writerPool = sync.Pool{New: func() any { return new(writer) }}

// Protobuf tags (field number << 3 | wire type) of vector_tile.proto.
const (
	tagTileLayer     = 3<<3 | 2
	tagLayerName     = 1<<3 | 2
	tagLayerFeature  = 2<<3 | 2
	tagLayerKey      = 3<<3 | 2
	tagLayerValue    = 4<<3 | 2
	tagLayerExtent   = 5<<3 | wireVarint
	tagLayerVersion  = 15<<3 | wireVarint
	tagFeatureID     = 1<<3 | wireVarint
	tagFeatureTags   = 2<<3 | 2
	tagFeatureType   = 3<<3 | wireVarint
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

// featRec is one feature of the layer being written.
type featRec struct {
	id             uint64
	kind           uint8
	tagEnd, geoEnd int32 // ends of its tags in ftags, geometry in fgeom
}

// beginLayer clears the per-layer state.
func (w *writer) beginLayer() {
	w.body = w.body[:0]
	w.keys = w.keys[:0]
	w.vals = w.vals[:0]
	w.keyIx.reset()
	w.valIx.reset()
	w.valIxAll = false
	for _, id := range w.kused {
		w.kmap[id] = 0
	}
	w.kused = w.kused[:0]
	w.vids.reset()
	w.feats = w.feats[:0]
	w.ftags = w.ftags[:0]
	w.fgeom = w.fgeom[:0]
	w.vcount = w.vcount[:0]
}

// numberValues orders the layer's values by how many features use them,
// most used first (ties in first-seen order), and writes the features to
// w.body with their tags renumbered so. A tag index is a varint, one byte
// below 128: features are ranked by size, so in first-seen order a dense
// tile's first hundred buildings filled the one-byte indices with their
// own heights and a common value (a levels or risk colour of the small
// buildings) cost two bytes in every feature that had it; a demo z13
// tile's tags were 7% larger than ST_AsMVT's.
func (w *writer) numberValues() {
	n := len(w.vals)
	order := w.orderValues()
	num := slices.Grow(w.vnum[:0], n)[:n]
	for i, v := range order {
		num[v] = uint32(i)
	}
	vals := slices.Grow(w.vscr[:0], n)[:n]
	for i, v := range order {
		vals[i] = w.vals[v]
	}
	copy(w.vals, vals)
	clear(vals) // keep no strings alive in the pool
	w.vorder, w.vnum, w.vscr = order, num, vals[:0]
	tags, geo := int32(0), int32(0)
	for _, fr := range w.feats {
		t := w.tags[:0]
		for i, x := range w.ftags[tags:fr.tagEnd] {
			if i%2 == 1 {
				x = num[x]
			}
			t = append(t, x)
		}
		w.tags = t
		f := w.feat[:0]
		f = append(f, tagFeatureID)
		f = appendVarint(f, fr.id)
		f = appendPacked(f, tagFeatureTags, t)
		f = append(f, tagFeatureType, fr.kind)
		if g := w.fgeom[geo:fr.geoEnd]; len(g) > 0 {
			f = appendBytesField(f, tagFeatureGeom, g)
		}
		w.body = appendBytesField(w.body, tagLayerFeature, f)
		w.feat = f[:0]
		tags, geo = fr.tagEnd, fr.geoEnd
	}
}

// orderValues is the layer's value indices by use count, most used
// first, ties in first-seen order: a counting sort (counts are at most the
// layer's features; a comparison sort of a z15 tile's 700 values was 5%
// of its CPU).
func (w *writer) orderValues() []int32 {
	n := len(w.vals)
	order := slices.Grow(w.vorder[:0], n)[:n]
	top := int32(0)
	for _, c := range w.vcount {
		top = max(top, c)
	}
	// starts[c] is where the values used c times begin in order: after
	// every value used more often.
	starts := slices.Grow(w.vstart[:0], int(top)+2)[:top+2]
	clear(starts)
	for _, c := range w.vcount {
		starts[c]++
	}
	at := int32(0)
	for c := top; c >= 0; c-- {
		at, starts[c] = at+starts[c], at
	}
	for i, c := range w.vcount {
		order[starts[c]] = int32(i)
		starts[c]++
	}
	w.vstart = starts[:0]
	return order
}

// endLayer appends the layer (if it has features) to the tile: name,
// features, keys, values, extent and version, sized first so the features
// are copied once.
func (w *writer) endLayer(name string, n int) {
	if n == 0 {
		return
	}
	w.numberValues()
	var vb [16]byte
	size := fieldLen(len(name)) + len(w.body) + 1 + varintLen(Extent) + 1 + varintLen(mvtLayerVersion)
	for _, k := range w.keys {
		size += fieldLen(len(k))
	}
	for _, v := range w.vals {
		if v.kind == valString {
			size += fieldLen(fieldLen(len(v.s)))
		} else {
			size += fieldLen(len(encodeValue(vb[:0], v)))
		}
	}
	out := slices.Grow(w.out, 1+varintLen(uint64(size))+size)
	out = append(out, tagTileLayer)
	out = appendVarint(out, uint64(size))
	out = appendStringField(out, tagLayerName, name)
	out = append(out, w.body...)
	for _, k := range w.keys {
		out = appendStringField(out, tagLayerKey, k)
	}
	for _, v := range w.vals {
		if v.kind == valString {
			out = append(out, tagLayerValue)
			out = appendVarint(out, uint64(fieldLen(len(v.s))))
			out = appendStringField(out, valString<<3|2, v.s)
		} else {
			out = appendBytesField(out, tagLayerValue, encodeValue(vb[:0], v))
		}
	}
	out = append(out, tagLayerExtent)
	out = appendVarint(out, Extent)
	out = append(out, tagLayerVersion)
	out = appendVarint(out, mvtLayerVersion)
	w.out = out
}

// fieldLen is the encoded size of a length-delimited field of n bytes
// with a one-byte tag.
func fieldLen(n int) int { return 1 + varintLen(uint64(n)) + n }

// encodeValue appends a Tile.Value message body.
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

// keyIndex is k's index in the layer's key table, adding it if new; h is
// k's hash.
func (w *writer) keyIndex(k string, h uint64) uint32 {
	x := &w.keyIx
	x.reserve(len(w.keys) + 1)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		e := x.slots[i]
		if e == 0 {
			w.keys = append(w.keys, k)
			return x.add(i, h)
		}
		if x.hashes[e-1] == h && w.keys[e-1] == k {
			return uint32(e - 1)
		}
	}
}

// attrAt is a memo's attribute i at zoom z, found only when read: the
// writer's common path knows an attribute by its numbers (tagRef) and
// reads its kv (the memo's attribute list, a cache miss) only when the
// tile has not seen the key or the value yet.
type attrAt struct {
	m *memo
	i int
	z uint8
}

func (at attrAt) kv() *kv { return &at.m.attrs(at.z)[at.i] }

// keyIndexOf is keyIndex(a.key, a.keyHash) of the attribute a at at,
// looked up by its key number kid in an array when it has one.
func (w *writer) keyIndexOf(kid uint16, at attrAt) uint32 {
	if kid == 0 {
		a := at.kv()
		return w.keyIndex(a.key, uint64(a.keyHash))
	}
	if int(kid) >= len(w.kmap) {
		w.kmap = slices.Grow(w.kmap, int(kid)+1-len(w.kmap))[:int(kid)+1]
	}
	if e := w.kmap[kid]; e != 0 {
		return e - 1
	}
	a := at.kv()
	k := w.keyIndex(a.key, uint64(a.keyHash))
	w.kmap[kid] = k + 1
	w.kused = append(w.kused, kid)
	return k
}

// valueIndexOf is valueIndex(a.val, a.valHash) for a value numbered vid,
// found by its number (vids). A number new to the layer is added to the
// table with its value read from zv (the value's bytes in a zshape,
// appendZValue) or else from the memo. Numbered values are equal exactly
// when their numbers are, so they skip the table's index by value (valIx)
// until an unnumbered value comes (numberedValue), and each value is in
// the table once.
func (w *writer) valueIndexOf(vid uint32, at attrAt, zv []byte) uint32 {
	m := &w.vids
	if 2*(len(m.used)+1) > len(m.slots) {
		m.grow()
	}
	for i := uint64(vid) * 0x9E3779B97F4A7C15 & m.mask; ; i = (i + 1) & m.mask {
		e := m.slots[i]
		if e == 0 {
			var val value
			if zv != nil {
				val, _ = nextZValue(zv)
			} else {
				val = at.kv().val
			}
			v := w.numberedValue(val)
			m.slots[i] = uint64(vid)<<32 | uint64(v)
			m.used = append(m.used, uint32(i))
			return v
		}
		if uint32(e>>32) == vid {
			v := uint32(e)
			w.vcount[v]++
			return v
		}
	}
}

// vidMap maps the value numbers (valueTable ids, from 1) of a layer to
// their indices in its value table: open addressing with linear probing,
// a slot holding the number and the index in one word, so that a probe
// reads one word (with the index type, a slot, an entry's hash and its
// value index were three reads, each a cache miss in a dense tile's
// tables). Resetting clears only the slots used.
type vidMap struct {
	slots []uint64 // number<<32 | index; 0 empty
	used  []uint32 // the slots set
	mask  uint64
}

func (m *vidMap) reset() {
	for _, i := range m.used {
		m.slots[i] = 0
	}
	m.used = m.used[:0]
}

// grow doubles the slots (at least 64), keeping the load factor at most
// 1/2.
func (m *vidMap) grow() {
	old := m.slots
	size := max(64, 2*len(old))
	m.slots = make([]uint64, size)
	m.mask = uint64(size - 1)
	m.used = m.used[:0]
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := uint64(uint32(e>>32)) * 0x9E3779B97F4A7C15 & m.mask
		for m.slots[i] != 0 {
			i = (i + 1) & m.mask
		}
		m.slots[i] = e
		m.used = append(m.used, uint32(i))
	}
}

// numberedValue is the index of a numbered value new to the layer: a
// new entry, unless an unnumbered feature added it already.
func (w *writer) numberedValue(v value) uint32 {
	if w.valIxAll {
		return w.valueIndex(v, v.hash())
	}
	w.vals = append(w.vals, v)
	w.vcount = append(w.vcount, 1)
	return uint32(len(w.vals) - 1)
}

// valueIndex is v's index in the layer's value table, adding it if new;
// h is v's hash. The first call in a layer indexes the numbered values
// added before it.
func (w *writer) valueIndex(v value, h uint64) uint32 {
	x := &w.valIx
	if !w.valIxAll {
		w.valIxAll = true
		for _, u := range w.vals {
			w.indexValue(u.hash())
		}
	}
	x.reserve(len(w.vals) + 1)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		e := x.slots[i]
		if e == 0 {
			w.vals = append(w.vals, v)
			w.vcount = append(w.vcount, 1)
			return x.add(i, h)
		}
		if x.hashes[e-1] == h && w.vals[e-1] == v {
			w.vcount[e-1]++
			return uint32(e - 1)
		}
	}
}

// indexValue adds the next entry of valIx, with hash h (the values in
// the table are distinct).
func (w *writer) indexValue(h uint64) {
	x := &w.valIx
	x.reserve(len(x.hashes) + 1)
	i := h & x.mask
	for x.slots[i] != 0 {
		i = (i + 1) & x.mask
	}
	x.add(i, h)
}

// index is an open-addressing (linear probing) hash index over a table of
// entries whose hashes were computed in advance. Resetting clears only the
// slots used, so a huge layer does not slow the next small one.
type index struct {
	slots  []uint32 // entry+1 per slot; 0 is empty
	hashes []uint64 // per entry
	pos    []uint32 // slot of each entry
	mask   uint64
}

func (x *index) reset() {
	for _, p := range x.pos {
		x.slots[p] = 0
	}
	x.hashes = x.hashes[:0]
	x.pos = x.pos[:0]
}

// reserve keeps the load factor at most 1/2 for n entries.
func (x *index) reserve(n int) {
	if 2*n <= len(x.slots) {
		return
	}
	size := max(64, 2*len(x.slots))
	for size < 2*n {
		size *= 2
	}
	x.slots = make([]uint32, size)
	x.mask = uint64(size - 1)
	for e, h := range x.hashes {
		i := h & x.mask
		for x.slots[i] != 0 {
			i = (i + 1) & x.mask
		}
		x.slots[i] = uint32(e + 1)
		x.pos[e] = uint32(i)
	}
}

// add records a new entry with hash h in empty slot i and returns its
// index.
func (x *index) add(i, h uint64) uint32 {
	e := uint32(len(x.hashes))
	x.hashes = append(x.hashes, h)
	x.pos = append(x.pos, uint32(i))
	x.slots[i] = e + 1
	return e
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
	lo := orb.Point{math.Inf(1), math.Inf(1)}
	hi := orb.Point{math.Inf(-1), math.Inf(-1)}
	for _, q := range m.world.pts {
		x := math.Floor(q[0]*p.scale - p.ox)
		y := math.Floor(q[1]*p.scale - p.oy)
		// Written so that NaN counts as outside.
		if !(x >= -Buffer && x <= extentWithBuffer && y >= -Buffer && y <= extentWithBuffer) {
			inside = false
		}
		lo = orb.Point{min(lo[0], x), min(lo[1], y)}
		hi = orb.Point{max(hi[0], x), max(hi[1], y)}
		sh.pts = append(sh.pts, orb.Point{x, y})
	}
	w.lo, w.hi = lo, hi
	return inside
}

// clipShape clips w.sh to the buffered tile (only features crossing the
// edge need it): points by the box, polygons by clipPolygon, lines with
// orb's clip. It reports false when nothing is left.
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
	if sh.kind == kindPolygon {
		return w.clipPolygons()
	}
	g := clip.Geometry(box, sh.geometry())
	if g == nil {
		return false
	}
	sh.flatten(g)
	return sh.kind == kindLine && len(sh.parts) > 0
}

// simplify runs Douglas-Peucker with tolerance tol (tile units) on every
// line and ring of w.sh in place; the algorithm is orb's
// simplify.DouglasPeucker, and so are the results for lines. Rings measure
// a point's distance from a segment in coordinates relative to the
// segment's start (exact for integer points, so the same in every tile:
// zshape); orb's absolute form rounds differently by where the tile is,
// which can move a point lying exactly at the tolerance.
func (w *writer) simplify(tol float64) {
	sh := &w.sh
	if sh.kind == kindPoint {
		return
	}
	rel := sh.kind == kindPolygon
	start, n := int32(0), int32(0)
	for i, p := range sh.parts {
		seg := sh.pts[start:p.end]
		start = p.end
		if len(seg) > 2 {
			seg = w.dp(seg, tol, rel)
		}
		n += int32(copy(sh.pts[n:], seg))
		sh.parts[i].end = n
	}
	sh.pts = sh.pts[:n]
}

// dp is orb's dpWorker and compaction with reused mask and stack
// buffers; rel measures distances with distanceFromSegmentSquaredRel.
func (w *writer) dp(ls []orb.Point, tol float64, rel bool) []orb.Point {
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
			var d float64
			if rel {
				d = distanceFromSegmentSquaredRel(ls[start], ls[end], ls[i])
			} else {
				d = distanceFromSegmentSquared(ls[start], ls[end], ls[i])
			}
			if d > maxDist {
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

// distanceFromSegmentSquaredRel is distanceFromSegmentSquared computed
// from p and b relative to a: for integer points every operation before
// the projection's division is exact, so the result does not depend on
// where the points are, only on their differences.
func distanceFromSegmentSquaredRel(a, b, p orb.Point) float64 {
	dx, dy := b[0]-a[0], b[1]-a[1]
	px, py := p[0]-a[0], p[1]-a[1]
	if dx != 0 || dy != 0 {
		t := (px*dx + py*dy) / (dx*dx + dy*dy)
		if t > 1 {
			px, py = px-dx, py-dy
		} else if t > 0 {
			px -= dx * t
			py -= dy * t
		}
	}
	return px*px + py*py
}

// tidy rounds w.sh to integers, drops repeated points, the spikes of rings
// and degenerate parts (lines under 2 points, rings under 3 distinct points or of zero area, and
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
			seg = despike(seg)
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
func (w *writer) appendFeature(m *memo, z uint8, filt *attrFilter) {
	w.encodeGeometry()
	w.gpack = packVarints(w.gpack[:0], w.geom)
	w.appendFeatureGeom(m, z, filt, w.sh.kind, w.gpack)
}

// appendCached writes m's feature (of kind kind) from its zshape zs in
// the tile of p; m is read only for attributes new to the tile.
func (w *writer) appendCached(m *memo, kind uint8, zs *zshape, p projector, z uint8, filt *attrFilter) {
	var refs []tagRef
	geom, rb, vals := zs.split()
	if zs.hasRefs {
		refs = appendRefs(w.refs[:0], rb)
		w.refs = refs
		if refs == nil {
			refs = []tagRef{}
		}
	} else {
		refs = m.refs(z)
	}
	w.appendTags(m, z, filt, refs, vals)
	dx := int32(int64(zs.first[0]) - int64(p.ox))
	dy := int32(int64(zs.first[1]) - int64(p.oy))
	g := appendVarint(w.fgeom, uint64(zs.cmd0))
	g = appendVarint(g, uint64(uint32((dx<<1)^(dx>>31))))
	g = appendVarint(g, uint64(uint32((dy<<1)^(dy>>31))))
	w.fgeom = append(g, geom...)
	w.feats = append(w.feats, featRec{id: zs.id, kind: kind, tagEnd: int32(len(w.ftags)), geoEnd: int32(len(w.fgeom))})
}

// newZshape makes m's zshape of the feature just shaped in w.sh (inside
// the tile of p, bound w.lo..w.hi from project; drawn: shape's verdict),
// after appendFeature when drawn (it reads w.geom and w.gpack).
func (w *writer) newZshape(m *memo, z uint8, p projector, lo, hi orb.Point, drawn bool) zshape {
	zs := zshape{z: z, drawn: drawn, id: m.id,
		lo: [2]int32{int32(lo[0] + p.ox), int32(lo[1] + p.oy)},
		hi: [2]int32{int32(hi[0] + p.ox), int32(hi[1] + p.oy)}}
	if !drawn {
		return zs
	}
	g := w.geom
	zs.cmd0 = g[0]
	zs.first = [2]int32{int32(w.sh.pts[0][0] + p.ox), int32(w.sh.pts[0][1] + p.oy)}
	skip := varintLen(uint64(g[0])) + varintLen(uint64(g[1])) + varintLen(uint64(g[2]))
	refs := m.refs(z)
	attrs := m.attrs(z)
	nvals := 0
	for i := range attrs {
		nvals += zValueLen(attrs[i].val)
	}
	if refs == nil || len(refs) > math.MaxUint8 || nvals > maxZValues {
		refs, nvals = nil, 0
	} else {
		zs.hasRefs, zs.nrefs = true, uint8(len(refs))
	}
	data := make([]byte, 0, len(w.gpack)-skip+refSize*len(refs)+nvals+2)
	data = append(data, w.gpack[skip:]...)
	if zs.hasRefs {
		for _, r := range refs {
			data = binary.LittleEndian.AppendUint16(data, r.kid)
			data = binary.LittleEndian.AppendUint32(data, r.vid)
		}
		for i := range attrs {
			data = appendZValue(data, attrs[i].val)
		}
		data = binary.LittleEndian.AppendUint16(data, uint16(nvals))
	}
	zs.data = data
	return zs
}

// appendFeatureGeom writes a feature with m's id and attributes and the
// packed geometry command stream g.
func (w *writer) appendFeatureGeom(m *memo, z uint8, filt *attrFilter, kind uint8, g []byte) {
	w.appendTags(m, z, filt, m.refs(z), nil)
	w.fgeom = append(w.fgeom, g...)
	w.feats = append(w.feats, featRec{id: m.id, kind: kind, tagEnd: int32(len(w.ftags)), geoEnd: int32(len(w.fgeom))})
}

// appendTags appends m's attributes at z that filt keeps to w.ftags, by
// their numbers refs (m.refs(z)) when not nil, with their values vals
// (a zshape's, in refs' order) when not nil.
func (w *writer) appendTags(m *memo, z uint8, filt *attrFilter, refs []tagRef, vals []byte) {
	if refs != nil {
		// Numbered attributes: the kv is read only for what the
		// tile has not seen yet, and not at all with vals.
		for i, r := range refs {
			at := attrAt{m: m, i: i, z: z}
			v := vals
			if vals != nil {
				vals = skipZValue(vals)
			}
			if !filt.keepRef(r.kid, at) {
				continue
			}
			k := w.keyIndexOf(r.kid, at)
			w.ftags = append(w.ftags, k, w.valueIndexOf(r.vid, at, v))
		}
	} else {
		attrs := m.attrs(z)
		for i := range attrs {
			a := &attrs[i]
			if !filt.keep(a) {
				continue
			}
			k := w.keyIndexOf(a.kid, attrAt{m: m, i: i, z: z})
			w.ftags = append(w.ftags, k, w.valueIndex(a.val, a.valHash))
		}
	}
}

// packVarints appends vs as varints.
func packVarints(b []byte, vs []uint32) []byte {
	for _, v := range vs {
		b = appendVarint(b, uint64(v))
	}
	return b
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

// despike opens a ring (drops its closing point) and removes, in place,
// every vertex where the ring folds back on itself (a spike a-b-a, or
// a-b-c with c on the line a-b back towards a), also across the ring's
// start. A spike is a zero-width part of a polygon, which MVT forbids.
func despike(r []orb.Point) []orb.Point {
	out := r[:0]
	for _, q := range r {
		for len(out) >= 2 && folds(out[len(out)-2], out[len(out)-1], q) {
			out = out[:len(out)-1]
		}
		if len(out) > 0 && out[len(out)-1] == q {
			continue
		}
		out = append(out, q)
	}
	for len(out) >= 3 {
		n := len(out)
		switch {
		case out[0] == out[n-1], folds(out[n-2], out[n-1], out[0]):
			out = out[:n-1]
		case folds(out[n-1], out[0], out[1]):
			out = out[1:]
		default:
			return out
		}
	}
	return out
}

// folds: the path a-b-c turns back at b (a != b, c != b).
func folds(a, b, c orb.Point) bool {
	return cross(b, a, c) == 0 && (a[0]-b[0])*(c[0]-b[0])+(a[1]-b[1])*(c[1]-b[1]) > 0
}
