package tiles

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// Geometry kinds of a shape: the MVT GeomType values.
const (
	kindNone    = 0
	kindPoint   = 1
	kindLine    = 2
	kindPolygon = 3
)

// shape is a geometry flattened for the tile writer: every point in one
// slice, split into parts (the points of a MultiPoint form one part; each
// line string or ring is one part). Flat slices can be reused from tile to
// tile, where orb geometries would be allocated per feature.
type shape struct {
	kind  uint8
	pts   []orb.Point
	parts []part
}

// part ends at pts[end] (exclusive) and starts where the previous ended.
type part struct {
	end   int32
	outer bool // an exterior ring: the first ring of its polygon
}

func (s *shape) reset(kind uint8) {
	s.kind = kind
	s.pts = s.pts[:0]
	s.parts = s.parts[:0]
}

func (s *shape) addPart(pts []orb.Point, outer bool) {
	s.pts = append(s.pts, pts...)
	s.parts = append(s.parts, part{end: int32(len(s.pts)), outer: outer})
}

// flatten sets s to g. Collections and unknown types leave kindNone (they
// are not drawn).
func (s *shape) flatten(g orb.Geometry) {
	s.reset(kindNone)
	switch g := g.(type) {
	case orb.Point:
		s.kind = kindPoint
		s.addPart([]orb.Point{g}, false)
	case orb.MultiPoint:
		s.kind = kindPoint
		s.addPart(g, false)
	case orb.LineString:
		s.kind = kindLine
		s.addPart(g, false)
	case orb.MultiLineString:
		s.kind = kindLine
		for _, ls := range g {
			s.addPart(ls, false)
		}
	case orb.Ring:
		s.kind = kindPolygon
		s.addPart(g, true)
	case orb.Polygon:
		s.kind = kindPolygon
		s.addPolygon(g)
	case orb.MultiPolygon:
		s.kind = kindPolygon
		for _, p := range g {
			s.addPolygon(p)
		}
	case orb.Bound:
		s.kind = kindPolygon
		s.addPolygon(g.ToPolygon())
	}
}

func (s *shape) addPolygon(p orb.Polygon) {
	for i, r := range p {
		s.addPart(r, i == 0)
	}
}

// geometry rebuilds an orb geometry (allocating) for the rare features that
// need clipping.
func (s *shape) geometry() orb.Geometry {
	start := int32(0)
	switch s.kind {
	case kindLine:
		mls := make(orb.MultiLineString, 0, len(s.parts))
		for _, p := range s.parts {
			mls = append(mls, slices.Clone(s.pts[start:p.end]))
			start = p.end
		}
		return mls
	case kindPolygon:
		var mp orb.MultiPolygon
		for _, p := range s.parts {
			r := orb.Ring(slices.Clone(s.pts[start:p.end]))
			start = p.end
			if p.outer || len(mp) == 0 {
				mp = append(mp, orb.Polygon{r})
			} else {
				mp[len(mp)-1] = append(mp[len(mp)-1], r)
			}
		}
		return mp
	}
	return nil
}

// kv is one MVT attribute, with hashes of its key and value computed once
// so that tiles dedupe their key and value tables without hashing strings.
type kv struct {
	key     string
	val     value
	valHash uint64
	keyHash uint32 // low half of fnv64 (the rest fits kv in 64 bytes with kid)
	// kid is the key's number in the server's keyTable, 0 when it has
	// none: filters and the writer's key table look it up in an array
	// instead of comparing strings (reading each feature's key bytes
	// was a cache miss per attribute).
	kid uint16
}

// keyTable numbers the attribute keys seen in memos, 1 to max (default
// maxKeyIDs; attribute keys are few: layers' fields and props; more than
// that are left unnumbered, and take the string path). Safe for
// concurrent use.
type keyTable struct {
	mu  sync.Mutex
	ids map[string]uint16
	max int
}

const maxKeyIDs = 4095

// valueTable numbers the attribute values of the static layers' memos, 1
// to max (default maxValueIDs, about 100 bytes each), so that a tile finds
// a value's index by number instead of comparing it (reading each
// feature's string was a cache miss, a fifth of a dense tile). Live
// layers' values (speeds, times) change with every update and are not
// numbered; neither are values once the table is full. Safe for
// concurrent use.
type valueTable struct {
	mu  sync.Mutex
	ids map[value]uint32
	max int
}

const maxValueIDs = 1 << 18

// id is v's number, numbering it when there is room; 0 when it has none.
func (t *valueTable) id(v value) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[v]; ok || len(t.ids) >= t.max {
		return id
	}
	if t.ids == nil {
		t.ids = map[value]uint32{}
	}
	id := uint32(len(t.ids) + 1)
	if v.kind == valString {
		v.s = strings.Clone(v.s) // do not keep the feature's props alive
	}
	t.ids[v] = id
	return id
}

// tagRef is an attribute's key and value numbers, 8 bytes where its kv
// is 64: the writer's common path reads only these.
type tagRef struct {
	kid uint16
	vid uint32
}

// id is k's number, numbering it first when add and there is room; 0
// when it has none.
func (t *keyTable) id(k string, add bool) uint16 {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[k]; ok || !add || len(t.ids) >= t.max {
		return id
	}
	if t.ids == nil {
		t.ids = map[string]uint16{}
	}
	id := uint16(len(t.ids) + 1)
	t.ids[strings.Clone(k)] = id
	return id
}

// ids looks up keys under one lock, with the count of numbered keys then
// (every key numbered later has a larger number).
func (t *keyTable) lookup(keys []string) (ids []uint16, n uint16) {
	ids = make([]uint16, len(keys))
	if t == nil {
		return ids, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, k := range keys {
		ids[i] = t.ids[k]
	}
	return ids, uint16(len(t.ids))
}

// fnv64 is FNV-1a 64 of s continuing from h.
func fnv64(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

const fnvOffset = 14695981039346656037

func (v value) hash() uint64 {
	h := fnvOffset ^ uint64(v.kind)
	h *= 1099511628211
	h = fnv64(h, v.s)
	for i := 0; i < 64; i += 8 {
		h ^= (v.n >> i) & 0xff
		h *= 1099511628211
	}
	return h
}

// value is an MVT value, comparable so a layer can dedupe its value table
// with a map. kind is the Tile.Value field number.
type value struct {
	kind uint8
	s    string
	n    uint64 // bits of a double, uint, sint (as int64) or bool
}

// MVT Tile.Value field numbers used.
const (
	valString = 1
	valDouble = 3
	valUint   = 5
	valSint   = 6
	valBool   = 7
)

// toValue converts a scalar (as returned by scalar) to a value.
func toValue(v any) (value, bool) {
	switch x := v.(type) {
	case string:
		return value{kind: valString, s: x}, true
	case bool:
		if x {
			return value{kind: valBool, n: 1}, true
		}
		return value{kind: valBool}, true
	case int64:
		return value{kind: valSint, n: uint64(x)}, true
	case int32:
		return value{kind: valSint, n: uint64(int64(x))}, true
	case uint64:
		return value{kind: valUint, n: x}, true
	case uint32:
		return value{kind: valUint, n: uint64(x)}, true
	case float64:
		return value{kind: valDouble, n: math.Float64bits(x)}, true
	}
	return value{}, false
}

// memo is what a tile needs of one feature that does not depend on the
// tile: its MVT id, attributes (sorted by key, so tiles are byte-for-byte
// deterministic) and geometry in Web Mercator world fractions (x 0..1 east,
// y 0..1 south), so a tile projects with a multiply and a floor instead of
// a logarithm per point. Immutable once made.
//
// The fields a tile reads of every feature come first, in the memo's
// first two cache lines (a memo is 256 bytes (TestMemoLayout), a size
// class whose objects start 256-byte aligned): a dense tile reads thousands of memos, each a
// cache miss per line touched, and with the zshapes and attribute numbers
// at the end a feature cost four lines.
type memo struct {
	// First line: the memo table's check, the ranking and the zshapes.
	f *twin.Feature
	// shapes are the feature's tile geometry at the last few zooms it was
	// drawn at wholly inside a tile (zshape); replaced, never modified.
	shapes atomic.Pointer[zshapes]
	// worldW, worldH are bound's width and height in world fractions
	// (sizeAt).
	worldW, worldH float64
	// rank is importance(f, size) = size*rankMul + rankAdd.
	rankMul, rankAdd float64
	// name8 is the first 8 bytes of f.ID.Name, big-endian, zero-padded:
	// names compare as these do, unless these are equal. Features of
	// equal rank (same-sized buildings) were sorted by reading both
	// names, a cache miss each.
	name8   uint64
	dim     int8  // f.Geometry.Dimensions()
	kind    uint8 // world.kind
	hasLean bool  // lean != nil
	// Second line: what the writer reads of a feature from its zshape.
	// fullRefs and leanRefs number full and lean; nil unless every
	// attribute of the list has a key and a value number.
	fullRefs, leanRefs []tagRef
	id                 uint64
	// The rest: read when a feature is shaped, or an attribute is new
	// to the tile.
	full  []kv // every attribute (DetailZoom and up)
	lean  []kv // below DetailZoom; nil when the layer has no lean set
	world shape
	bound orb.Bound // of f.Geometry, lon/lat
}

// zshape is a polygon's or points' tile geometry at zoom z as the writer
// made it (projected, simplified, tidied, made valid, encoded) in a tile
// whose buffer held the whole feature. Inside a tile, every step is
// exact arithmetic on integer tile units (flooring world coordinates
// times 2^z is exact, and so is shifting them by a tile's origin; the
// polygon simplification measures distances from differences of points),
// so the geometry of any other tile of that zoom that holds the whole
// feature is the same translated: only the first point of the command
// stream, relative to the tile's corner, changes. A dense z13 tile draws
// thousands of such buildings; reusing their geometry skips most of the
// per-feature work of every tile after the first. Lines are left out:
// their simplification is orb's, on absolute tile coordinates, whose
// rounding depends on the tile.
//
// A zshape also carries what else the writer needs of its feature: the
// MVT id and the attribute numbers at z (the memo's tagRefs), so that a
// tile reads a cached feature from its memo's first line, its zshapes and
// one block of data (with the id and numbers in the memo and its own
// array, a dense tile read two more cache lines per feature). 64 bytes.
type zshape struct {
	z     uint8
	drawn bool // false: nothing drawable is left at z
	// hasRefs: the memo has attribute numbers at z, nrefs of them, at
	// the end of data.
	hasRefs bool
	nrefs   uint8
	cmd0    uint32   // the stream's first command
	lo, hi  [2]int32 // bound of the projected points, world tile units at z
	first   [2]int32 // the command stream's first point, world tile units
	id      uint64   // the memo's MVT feature id
	// data is the packed varints of the stream after cmd0 and the first
	// point; with hasRefs, then the nrefs attribute numbers (refSize
	// bytes each: key, value, little-endian), the values of those
	// attributes (appendZValue, in the same order) and the values'
	// length (2 bytes, little-endian). A value new to the tile is read
	// from here: from the memo's attribute list it was two cache misses
	// (the list's header, the kv) and a third to copy a string out of
	// the feature's props, on every building of a dense tile with a
	// unique name (a value new to the tile per feature).
	data []byte
}

// refSize is the bytes of one tagRef in zshape.data.
const refSize = 6

// maxZValues bounds the bytes of a zshape's values (their length takes
// 2 bytes); a feature with more keeps no numbers in its zshapes.
const maxZValues = math.MaxUint16

// split cuts data into the packed stream after cmd0 and the first
// point, the attribute numbers and the values (nil without hasRefs).
func (zs *zshape) split() (geom, refs, vals []byte) {
	d := zs.data
	if !zs.hasRefs {
		return d, nil, nil
	}
	n := len(d) - 2
	v := n - int(binary.LittleEndian.Uint16(d[n:]))
	r := v - refSize*int(zs.nrefs)
	return d[:r], d[r:v], d[v:n]
}

// appendRefs appends the attribute numbers b (zshape.split's refs) to
// refs.
func appendRefs(refs []tagRef, b []byte) []tagRef {
	for ; len(b) >= refSize; b = b[refSize:] {
		refs = append(refs, tagRef{kid: binary.LittleEndian.Uint16(b), vid: binary.LittleEndian.Uint32(b[2:])})
	}
	return refs
}

// appendZValue appends v to a zshape's values: its kind, then a string's
// length (varint) and bytes, a double's 8 bytes (little-endian), or
// another kind's n as a varint.
func appendZValue(b []byte, v value) []byte {
	b = append(b, v.kind)
	switch v.kind {
	case valString:
		b = appendVarint(b, uint64(len(v.s)))
		return append(b, v.s...)
	case valDouble:
		return binary.LittleEndian.AppendUint64(b, v.n)
	}
	return appendVarint(b, v.n)
}

// zValueLen is the encoded size of v in a zshape's values.
func zValueLen(v value) int {
	switch v.kind {
	case valString:
		return 1 + varintLen(uint64(len(v.s))) + len(v.s)
	case valDouble:
		return 9
	}
	return 1 + varintLen(v.n)
}

// nextZValue splits the first value off b (a zshape's values, well
// formed: written by appendZValue). A string's bytes are not copied: the
// value's s is b's memory, which is never modified.
func nextZValue(b []byte) (value, []byte) {
	v := value{kind: b[0]}
	b = b[1:]
	switch v.kind {
	case valString:
		n, k := binary.Uvarint(b)
		b = b[k:]
		if n > 0 {
			v.s = unsafe.String(&b[0], int(n))
		}
		return v, b[n:]
	case valDouble:
		v.n = binary.LittleEndian.Uint64(b)
		return v, b[8:]
	}
	n, k := binary.Uvarint(b)
	v.n = n
	return v, b[k:]
}

// skipZValue is nextZValue's rest alone, reading no string.
func skipZValue(b []byte) []byte {
	switch b[0] {
	case valString:
		n, k := binary.Uvarint(b[1:])
		return b[1+k+int(n):]
	case valDouble:
		return b[9:]
	}
	_, k := binary.Uvarint(b[1:])
	return b[1+k:]
}

// zshapes are a memo's zshapes, inline: one pointer from the memo to
// the one a tile wants (a pointer to a slice was two).
type zshapes struct {
	n int
	s [maxShapes]zshape
}

// Limits of the zshape cache: zooms up to maxShapeZoom (world tile units
// then fit an int32), at most maxShapes zooms per feature (a map session
// moves between a few neighbouring zooms; about 60 bytes each).
const (
	maxShapeZoom = 18
	maxShapes    = 3
)

// shapeAt is m's zshape at zoom z, or nil.
func (m *memo) shapeAt(z uint8) *zshape {
	p := m.shapes.Load()
	if p == nil {
		return nil
	}
	for i := range p.s[:p.n] {
		if p.s[i].z == z {
			return &p.s[i]
		}
	}
	return nil
}

// addShape records zs, replacing the oldest when maxShapes are kept.
// Concurrent builders of the same tile make equal zshapes, so a lost race
// loses nothing.
func (m *memo) addShape(zs zshape) {
	for range 4 {
		old := m.shapes.Load()
		next := new(zshapes)
		if old != nil {
			for _, o := range old.s[:old.n] {
				if o.z != zs.z {
					next.s[next.n] = o
					next.n++
				}
			}
		}
		if next.n >= maxShapes {
			copy(next.s[:], next.s[next.n-maxShapes+1:next.n])
			next.n = maxShapes - 1
		}
		next.s[next.n] = zs
		next.n++
		if m.shapes.CompareAndSwap(old, next) {
			return
		}
	}
}

// inside reports whether the whole feature lies within the buffered tile
// of projector p (as writer.project would find).
func (zs *zshape) inside(p projector) bool {
	ox, oy := int64(p.ox), int64(p.oy)
	return int64(zs.lo[0])-ox >= -Buffer && int64(zs.hi[0])-ox <= extentWithBuffer &&
		int64(zs.lo[1])-oy >= -Buffer && int64(zs.hi[1])-oy <= extentWithBuffer
}

func newMemo(f *twin.Feature, t *memoTable) *memo {
	m := &memo{f: f, id: FeatureID(f.ID), name8: namePrefix(f.ID.Name)}
	m.rankAdd = importance(f, 0)
	m.rankMul = importance(f, 1) - m.rankAdd
	if f.Geometry != nil {
		m.bound = f.Geometry.Bound()
		m.dim = int8(f.Geometry.Dimensions())
		m.worldW = (m.bound.Max[0] - m.bound.Min[0]) / 360
		m.worldH = mercY(m.bound.Min[1]) - mercY(m.bound.Max[1])
	}
	m.world.flatten(f.Geometry)
	m.kind = m.world.kind
	for i, q := range m.world.pts {
		m.world.pts[i] = orb.Point{(q[0] + 180) / 360, mercY(q[1])}
	}
	m.full = attrList(f)
	var keys *keyTable
	if t != nil {
		keys = &t.keys
	}
	for i := range m.full {
		m.full[i].kid = keys.id(m.full[i].key, true)
	}
	if lean := specs[f.ID.Layer].lean; lean != nil {
		// What is written below DetailZoom: the lean props, id and
		// version (which always win over props of those names).
		m.lean = make([]kv, 0, len(lean)+2)
		for _, a := range m.full {
			if lean[a.key] || a.key == "id" || a.key == "version" {
				m.lean = append(m.lean, a)
			}
		}
		m.hasLean = true
	}
	if t != nil && !f.ID.Layer.Live() {
		m.fullRefs = t.refs(m.full)
		if m.hasLean {
			m.leanRefs = t.refs(m.lean)
		}
	}
	return m
}

// namePrefix is memo.name8 of a name.
func namePrefix(s string) uint64 {
	var b [8]byte
	copy(b[:], s)
	return binary.BigEndian.Uint64(b[:])
}

// refs numbers the values of attrs, nil unless every key and value has
// a number.
func (t *memoTable) refs(attrs []kv) []tagRef {
	refs := make([]tagRef, len(attrs))
	for i := range attrs {
		vid := t.vals.id(attrs[i].val)
		if vid == 0 || attrs[i].kid == 0 {
			return nil
		}
		refs[i] = tagRef{kid: attrs[i].kid, vid: vid}
	}
	return refs
}

// refs is attrs(z)'s numbers, or nil.
func (m *memo) refs(z uint8) []tagRef {
	if z < DetailZoom && m.hasLean {
		return m.leanRefs
	}
	return m.fullRefs
}

func (m *memo) attrs(z uint8) []kv {
	if z < DetailZoom && m.hasLean {
		return m.lean
	}
	return m.full
}

// memoTable caches memos by feature pointer in a fixed 4-way
// set-associative table: twin features are immutable and replaced (never
// edited) on change, so a pointer match is always current; memory stays
// bounded, and when a set is full a new memo replaces a pseudo-randomly
// chosen one. Run forgets replaced features so they are not kept alive.
// Lock-free; safe for concurrent use. A nil table caches nothing.
type memoTable struct {
	keys  keyTable
	vals  valueTable
	slots []atomic.Pointer[memo]
	shift uint // 64 - log2(number of sets)
	// used is set by the first memo stored: until then forget, which Run
	// calls for every change, skips its look at the slots (a cache miss
	// per change, ~2 % of a server under telemetry that no one has asked
	// a tile of).
	used atomic.Bool
}

const memoWays = 4

func newMemoTable(size int) *memoTable {
	if size <= 0 {
		return nil
	}
	bits := uint(1)
	for memoWays<<bits < size {
		bits++
	}
	return &memoTable{slots: make([]atomic.Pointer[memo], memoWays<<bits), shift: 64 - bits,
		keys: keyTable{max: maxKeyIDs}, vals: valueTable{max: maxValueIDs}}
}

// set hashes the feature's address (Go's heap does not move objects; the
// memo holds the pointer, so the address is not reused while cached) to
// its set of slots; h also picks the victim on insertion.
func (t *memoTable) set(f *twin.Feature) ([]atomic.Pointer[memo], uint64) {
	h := uint64(uintptr(unsafe.Pointer(f))) * 0x9E3779B97F4A7C15
	i := (h >> t.shift) * memoWays
	return t.slots[i : i+memoWays : i+memoWays], h
}

func (t *memoTable) get(f *twin.Feature) *memo {
	if t == nil {
		return newMemo(f, nil)
	}
	set, h := t.set(f)
	free := -1
	for i := range set {
		m := set[i].Load()
		if m == nil {
			if free < 0 {
				free = i
			}
		} else if m.f == f {
			return m
		}
	}
	m := newMemo(f, t)
	if free < 0 {
		free = int(h>>7) % memoWays
	}
	if !t.used.Load() {
		t.used.Store(true)
	}
	set[free].Store(m)
	return m
}

// getAll sets ms[i] to get(fs[i]) (ms is as long as fs). The cached
// memos are found first, in a loop of their own: a feature's set of slots
// and then its memo are a cache miss each, which in this small loop
// overlap with the next features' (in a loop doing a tile's work per
// feature they were waited for in turn, 5% of a dense tile's CPU); the
// memos not cached are made after.
func (t *memoTable) getAll(fs []*twin.Feature, ms []*memo) {
	if t == nil {
		for i, f := range fs {
			ms[i] = newMemo(f, nil)
		}
		return
	}
	for i, f := range fs {
		set, _ := t.set(f)
		var hit *memo
		for j := range set {
			if m := set[j].Load(); m != nil && m.f == f {
				hit = m
				break
			}
		}
		ms[i] = hit
	}
	for i, m := range ms {
		if m == nil {
			ms[i] = t.get(fs[i])
		}
	}
}

// forget drops f's memo, if cached.
func (t *memoTable) forget(f *twin.Feature) {
	if t == nil || f == nil || !t.used.Load() {
		return
	}
	set, _ := t.set(f)
	for i := range set {
		if m := set[i].Load(); m != nil && m.f == f {
			set[i].CompareAndSwap(m, nil)
		}
	}
}

// clear drops every memo (after the invalidator lost track of changes, so
// replaced features are not kept alive).
func (t *memoTable) clear() {
	if t == nil {
		return
	}
	for i := range t.slots {
		t.slots[i].Store(nil)
	}
}
