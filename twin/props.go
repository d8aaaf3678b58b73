package twin

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"sync"
	"unique"
	"unsafe"
)

// Props are an object's properties (GeoJSON "properties"): names to the
// values JSON gives (string, float64, bool, nil, []any, map[string]any) or
// the typed ones the server writes itself (int, int64, []string, ...).
//
// Props have three forms. An editable one, a map, is what NewProps wraps and
// Set and Delete change; it aliases like a map (copies of the struct share
// it; Clone does not). The twin packs every state it holds (Pack): the key
// set interned process-wide with unique.Make (objects of a layer mostly
// share one), the values in one immutable string, read back on demand.
// A building's props went from ~450 B as a map with boxed values to ~80 B
// (issue 16 goal 4); string values read from a packed form are substrings
// of it (no copy). Set, Delete and AppendList on a packed form keep it as
// the base of the third form, an overlay: a new map holds only the edits,
// and Pack copies the untouched values' bytes as they are. An update that
// sets a few keys of an object with a long list (an alert's 50-entry
// history) so costs those keys, not a decode and encode of every value
// (issue 16 goal 1). A packed Props is a value: copying it and setting on
// the copy never changes the original; an overlay aliases like a map.
//
// Values of other types (map[string]string, map[string]float64, structs)
// are kept as they are: Props holding one stay in the map form.
//
// The zero Props is empty. Props are safe for concurrent reads; Set and
// Delete need the caller's exclusion, as a map's writes do.
type Props struct {
	// The packed form: ref is the interned key set (the *string behind a
	// unique.Handle[string]: sorted keys, each a uvarint length then
	// bytes) and vals the first byte of a header, a uvarint of the
	// values' length << 1 | 1 when they are JSON-typed (jsonTyped), then
	// the values in key order (see the tags below). The header makes
	// values O(1) and the change log's and the store's check of the types
	// a bit read at each write, where both walked every value (an
	// alert's 50-entry history: 6 % of the server at 10k fences; issue 16
	// goal 1). The map
	// and overlay forms: vals is nil and ref a *propsMap. The zero Props
	// is the packed form of no properties. Two words, not the four of a
	// map, a handle and a string: a Feature went from the 128-B size class
	// to the 112-B one (issue 16 goal 4). Only the constructors below set
	// the fields; everything else reads them through edits, keySet and
	// values.
	ref  unsafe.Pointer
	vals *byte
}

// propsMap is the map form (base zero) or an overlay: edits in m over a
// packed base. Copies of a Props share it, as copies of a map share it.
type propsMap struct {
	m    map[string]any // never nil
	base Props          // packed
}

// packedProps returns the packed form of a key set and its values (data
// is copied, after the header; typed tells that jsonTyped(data) holds).
// Empty values are the empty form.
func packedProps(keys unique.Handle[string], data []byte, typed bool) Props {
	if len(data) == 0 {
		return Props{}
	}
	return Props{ref: handlePointer(keys), vals: withHeader(data, typed)}
}

// packedLike is packedProps with the key set of the packed form p.
func packedLike(p Props, data []byte, typed bool) Props {
	if len(data) == 0 {
		return Props{}
	}
	return Props{ref: p.ref, vals: withHeader(data, typed)}
}

// withHeader returns a new copy of data after its header.
func withHeader(data []byte, typed bool) *byte {
	h := uint64(len(data)) << 1
	if typed {
		h |= 1
	}
	// Sized exactly: the values of a million objects are a million
	// allocations, and a size class up is bytes per object (goal 4).
	var hb [binary.MaxVarintLen64]byte
	hw := binary.PutUvarint(hb[:], h)
	b := make([]byte, hw+len(data))
	copy(b, hb[:hw])
	copy(b[hw:], data)
	return unsafe.SliceData(b)
}

// header reads the packed base's header: where its values start, their
// length, and whether they are JSON-typed. vals must not be nil.
func header(vals *byte) (start *byte, n int, typed bool) {
	var h uint64
	i := 0
	for sh := 0; ; sh += 7 {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(vals), i))
		i++
		h |= uint64(c&0x7f) << sh
		if c < 0x80 || i >= binary.MaxVarintLen64 {
			break
		}
	}
	return (*byte)(unsafe.Add(unsafe.Pointer(vals), i)), int(h >> 1), h&1 == 1
}

// jsonTypedPacked reports what jsonTyped of the packed base's values
// would, from its header; true for no values.
func (p Props) jsonTypedPacked() bool {
	b := p.basePacked()
	if b.vals == nil {
		return true
	}
	_, _, typed := header(b.vals)
	return typed
}

// handlePointer is the pointer a unique.Handle[string] is (its one field,
// which keeps the canonical string alive like any pointer). The layout is
// checked by TestHandleIsOnePointer.
func handlePointer(h unique.Handle[string]) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&h))
}

// mapForm returns the map or overlay form's propsMap, nil for the packed.
func (p Props) mapForm() *propsMap {
	if p.vals != nil || p.ref == nil {
		return nil
	}
	return (*propsMap)(p.ref)
}

// edits returns the map form's map, or an overlay's edits (nil when packed).
func (p Props) edits() map[string]any {
	if pm := p.mapForm(); pm != nil {
		return pm.m
	}
	return nil
}

// basePacked returns the packed form p is or is an overlay on (zero when
// p is in the map form).
func (p Props) basePacked() Props {
	if pm := p.mapForm(); pm != nil {
		return pm.base
	}
	return p
}

// keySet returns the packed base's encoded key set ("" when none).
func (p Props) keySet() string {
	b := p.basePacked()
	if b.vals == nil {
		return ""
	}
	return *(*string)(b.ref)
}

// values returns the packed base's values ("" when none): as many values
// as the key set has keys (a packed form was written by Pack or checked
// by unpackChecked), their length read off the header.
func (p Props) values() string {
	b := p.basePacked()
	if b.vals == nil {
		return ""
	}
	start, n, _ := header(b.vals)
	return unsafe.String(start, n)
}

// valuesUpTo walks the packed base's values with their keys, as values
// does, and with find stops at key's: it returns the values before key's
// and key's own (never "": a value is at least its tag), or "", "" once
// past where key would be (absent); with find false every value and "".
// One walk for a lookup (raw), not a walk to find the end and a second to
// find the key.
func (p Props) valuesUpTo(key string, find bool) (before, val string) {
	b := p.basePacked()
	if b.vals == nil {
		return "", ""
	}
	if !find {
		return p.values(), ""
	}
	vals, _, _ := header(b.vals)
	n := 0
	for ks := *(*string)(b.ref); ks != ""; {
		var k string
		k, ks = nextKey(ks)
		if find && k >= key {
			if k != key {
				// Past where key would be (the keys are sorted): absent,
				// and the values after it go unwalked (a lookup of a key
				// most objects lack, such as the rules' attached_to).
				return "", ""
			}
			l := valueLenAt(unsafe.Add(unsafe.Pointer(vals), n))
			return unsafe.String(vals, n), unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(vals), n)), l)
		}
		n += valueLenAt(unsafe.Add(unsafe.Pointer(vals), n))
	}
	return unsafe.String(vals, n), ""
}

// valueLenAt is valueLen of the value at v, read a byte at a time: the
// length of the values it belongs to is not known yet. No closures and
// one loop, so that it stays cheap: values walks every value of an object
// to find where they end (issue 16 goal 1).
func valueLenAt(v unsafe.Pointer) int {
	if n := fixedLen(*(*byte)(v)); n > 0 {
		return n
	}
	// A uvarint follows the tag: the value itself, or the length of what
	// follows it.
	var x uint64
	i := 1
	for sh := 0; ; sh += 7 {
		c := *(*byte)(unsafe.Add(v, i))
		i++
		x |= uint64(c&0x7f) << sh
		if c < 0x80 || i > binary.MaxVarintLen64 {
			break
		}
	}
	switch *(*byte)(v) {
	case tagF64Int, tagInt, tagI64, tagI32, tagU64, tagF64Tenths:
		return i
	}
	return i + int(x)
}

// An overlay's map holds a key's new value, or one of these: the key was
// deleted from the base, or entries were appended to the base's list.
type (
	propDeleted struct{}
	listAppend  struct {
		skip  int   // entries dropped from the head of the base's list
		items []any // new entries after the base's, oldest first; never changed once made
	}
)

// NewProps wraps m (not copied) as editable props.
func NewProps(m map[string]any) Props {
	if m == nil {
		return Props{}
	}
	return Props{ref: unsafe.Pointer(&propsMap{m: m})}
}

// Value tags of the packed form. Containers carry their byte length so a
// lookup skips them without decoding. The timeline stores packed forms
// (timelinefeature.go): a tag keeps its value; add new ones at the end.
const (
	tagNull    byte = iota
	tagFalse        // bool
	tagTrue         // bool
	tagF64          // float64, 8 bytes little endian
	tagF64Int       // float64 holding an integer below 2^53: zigzag varint
	tagInt          // int: zigzag varint
	tagI64          // int64: zigzag varint
	tagI32          // int32: zigzag varint
	tagU64          // uint64: uvarint
	tagF32          // float32: 4 bytes
	tagStr          // string: uvarint length, bytes
	tagNumber       // json.Number: as a string
	tagList         // []any: uvarint byte length, uvarint count, values
	tagStrings      // []string: uvarint byte length, uvarint count, (uvarint length, bytes)...
	tagMap          // map[string]any: uvarint byte length, uvarint count, (key, value)... keys sorted
	// float64 holding tenths (a speed of 42.3 km/h): zigzag varint of ten
	// times it, when that reads back to the same bits; 2-3 bytes instead
	// of 9, which put half of a million fleet points' props in the 32-B
	// size class instead of the 48-B one (issue 16 goal 4).
	tagF64Tenths
)

// base reports a packed base: the packed form, or an overlay on it.
func (p Props) base() bool { return p.packed() || p.overlay() }

// packed reports the packed form (no edits over it; the zero Props too).
func (p Props) packed() bool { return p.vals != nil || p.ref == nil }

// overlay reports the overlay form: edits over a packed base.
func (p Props) overlay() bool {
	pm := p.mapForm()
	return pm != nil && pm.base.vals != nil
}

// Len is the number of properties.
func (p Props) Len() int {
	if p.overlay() {
		return p.flat().Len()
	}
	if !p.packed() {
		return len(p.edits())
	}
	n := 0
	for ks := p.keySet(); ks != ""; n++ {
		_, ks = nextKey(ks)
	}
	return n
}

// Get returns the value of key (nil when absent). Containers read from a
// packed form are new each call: the caller may keep or change them.
func (p Props) Get(key string) any {
	v, _ := p.Lookup(key)
	return v
}

// Lookup returns the value of key and whether it is present.
func (p Props) Lookup(key string) (any, bool) {
	if !p.base() {
		v, ok := p.edits()[key]
		return v, ok
	}
	if v, ok := p.edits()[key]; ok {
		return p.overlaid(key, v)
	}
	raw, ok := p.raw(key)
	if !ok {
		return nil, false
	}
	v, _ := decodeValue(raw)
	return v, true
}

// Has reports whether key is present.
func (p Props) Has(key string) bool {
	if !p.base() {
		_, ok := p.edits()[key]
		return ok
	}
	if v, ok := p.edits()[key]; ok {
		_, del := v.(propDeleted)
		return !del
	}
	_, ok := p.raw(key)
	return ok
}

// overlaid is the value an overlay's edit v gives key.
func (p Props) overlaid(key string, v any) (any, bool) {
	switch x := v.(type) {
	case propDeleted:
		return nil, false
	case *listAppend:
		var list []any
		if raw, ok := p.raw(key); ok && raw[0] == tagList {
			v, _ := decodeValue(raw)
			list, _ = v.([]any)
		}
		return append(list[x.skip:], x.items...), true
	}
	return v, true
}

// String returns a string property ("" when absent or not a string)
// without boxing.
func (p Props) String(key string) string {
	if !p.packed() && p.edited(key) {
		v, _ := p.Lookup(key)
		s, _ := v.(string)
		return s
	}
	raw, ok := p.raw(key)
	if !ok || raw[0] != tagStr {
		return ""
	}
	s, _ := propStr(raw[1:])
	return s
}

// Number returns a numeric property as ToFloat reads it, without boxing.
func (p Props) Number(key string) (float64, bool) {
	if !p.packed() && p.edited(key) {
		v, _ := p.Lookup(key)
		return ToFloat(v)
	}
	raw, ok := p.raw(key)
	if !ok {
		return 0, false
	}
	switch raw[0] {
	case tagF64:
		return math.Float64frombits(binary.LittleEndian.Uint64([]byte(raw[1:9]))), true
	case tagStr, tagList, tagStrings, tagMap, tagNull, tagTrue, tagFalse:
		return 0, false
	}
	v, _ := decodeValue(raw)
	return ToFloat(v)
}

// edited reports whether key's value is not read from a packed base: p
// is in the map form, or key is among an overlay's edits. String and
// Number read the others off the base's bytes, without boxing them (an
// alert's update reads its severity and tier after setting its count).
func (p Props) edited(key string) bool {
	if !p.overlay() {
		return true
	}
	_, ok := p.edits()[key]
	return ok
}

// raw returns the encoded value of key in a packed form (an overlay's
// base: the caller knows key is not edited).
func (p Props) raw(key string) (string, bool) {
	_, v := p.valuesUpTo(key, true)
	return v, v != ""
}

// All yields every property, keys in no particular order for the map form
// and sorted for the packed one.
func (p Props) All() iter.Seq2[string, any] {
	p = p.flat()
	return func(yield func(string, any) bool) {
		if !p.packed() {
			for k, v := range p.edits() {
				if !yield(k, v) {
					return
				}
			}
			return
		}
		ks, data := p.keySet(), p.values()
		for ks != "" {
			var k string
			k, ks = nextKey(ks)
			v, n := decodeValue(data)
			data = data[n:]
			if !yield(k, v) {
				return
			}
		}
	}
}

// Keys returns the property names, sorted.
func (p Props) Keys() []string {
	p = p.flat()
	if !p.packed() {
		return slices.Sorted(maps.Keys(p.edits()))
	}
	out := make([]string, 0, p.Len())
	for ks := p.keySet(); ks != ""; {
		var k string
		k, ks = nextKey(ks)
		out = append(out, k)
	}
	return out
}

// Map returns the properties as a new map the caller owns.
func (p Props) Map() map[string]any {
	if p.overlay() {
		return p.materialize()
	}
	m := make(map[string]any, p.Len())
	for k, v := range p.All() {
		m[k] = v
	}
	return m
}

// Set sets key to v; on a packed form it starts an overlay (see Props).
func (p *Props) Set(key string, v any) {
	p.editable()[key] = v
}

// editable returns the map of p's map or overlay form, making p an
// overlay on itself (or an empty map form) first when it is packed.
func (p *Props) editable() map[string]any {
	if pm := p.mapForm(); pm != nil {
		return pm.m
	}
	pm := &propsMap{m: make(map[string]any, 4), base: *p}
	*p = Props{ref: unsafe.Pointer(pm)}
	return pm.m
}

// Delete removes key.
func (p *Props) Delete(key string) {
	if !p.base() {
		delete(p.edits(), key)
		return
	}
	if _, inBase := p.raw(key); !inBase {
		delete(p.edits(), key) // a no-op on a nil map
		return
	}
	p.editable()[key] = propDeleted{}
}

// AppendList appends v to the list at key and keeps its last keep entries
// (every entry when keep <= 0); a key that is absent or holds no []any
// becomes [v]. On a packed base the list is not decoded: the entry is
// encoded after the kept ones' bytes when the props are packed again.
func (p *Props) AppendList(key string, v any, keep int) {
	if p.base() && p.appendBase(key, v, keep) {
		return
	}
	cur, _ := p.Lookup(key)
	var out []any
	switch l := cur.(type) {
	case []any:
		out = append(out, l...) // a copy: the old list may be another state's
	case []map[string]any:
		for _, x := range l {
			out = append(out, x)
		}
	}
	p.Set(key, trimList(append(out, v), keep))
}

// appendBase is AppendList on a packed base whose key holds a list, and
// is not edited or edited only by appends: it records the entry (a
// listAppend) without decoding the list. It reports false, changing
// nothing, for any other key. One look at the edit and one at the base's
// bytes.
func (p *Props) appendBase(key string, v any, keep int) bool {
	e, edited := p.edits()[key]
	var la listAppend
	if x, ok := e.(*listAppend); ok {
		la = *x
	} else if edited {
		return false // set or deleted: the edit is the value
	}
	raw, inBase := p.raw(key)
	if !inBase || raw[0] != tagList {
		return false
	}
	n := listLen(raw) - la.skip
	next := &listAppend{skip: la.skip, items: append(slices.Clip(la.items), v)}
	if drop := n + len(next.items) - keep; keep > 0 && drop > 0 {
		fromBase := min(drop, n)
		next.skip += fromBase
		next.items = next.items[drop-fromBase:]
	}
	p.Set(key, next)
	return true
}

// listLen is the number of entries of a packed tagList value.
func listLen(raw string) int {
	_, w := propUvarint(raw[1:])
	n, _ := propUvarint(raw[1+w:])
	return int(n)
}

// trimList keeps l's last keep entries (all when keep <= 0).
func trimList(l []any, keep int) []any {
	if keep > 0 && len(l) > keep {
		return l[len(l)-keep:]
	}
	return l
}

// Clone returns props whose map form the caller may change without
// changing p's (a packed form is shared: it never changes).
func (p Props) Clone() Props {
	pm := p.mapForm()
	if pm == nil {
		return p
	}
	return Props{ref: unsafe.Pointer(&propsMap{m: maps.Clone(pm.m), base: pm.base})}
}

// flat returns p with an overlay's edits applied: packed, or the map form
// when an edit holds a type the packed form does not.
func (p Props) flat() Props {
	if !p.overlay() {
		return p
	}
	if q := p.Pack(); q.packed() {
		return q
	}
	return NewProps(p.materialize())
}

// materialize returns an overlay's properties as a new map.
func (p Props) materialize() map[string]any {
	m := p.basePacked().Map()
	for k, v := range p.edits() {
		if v, ok := p.overlaid(k, v); ok {
			m[k] = v
		} else {
			delete(m, k)
		}
	}
	return m
}

// Pack returns the packed form of p (p itself when already packed, or when
// a value has a type the packed form does not hold).
func (p Props) Pack() Props {
	if p.packed() {
		return p
	}
	if p.overlay() {
		return p.packOverlay()
	}
	sc := sortedKeysScratch(p.edits())
	defer packScratches.Put(sc)
	keys := sc.keys
	ks, data := sc.ks[:0], sc.data[:0]
	ok := true
	for _, k := range keys {
		ks = appendStrBytes(ks, k)
		if data, ok = appendValueBytes(data, p.edits()[k]); !ok {
			break
		}
	}
	clear(keys) // the scratch does not keep the map's keys alive
	sc.keys, sc.ks, sc.data = keys[:0], ks, data
	if !ok {
		return p
	}
	return packedProps(sc.keySet(ks), data, jsonTypedBytes(data))
}

// sortedKeysScratch takes a scratch from the pool with m's keys, sorted,
// in its keys.
func sortedKeysScratch(m map[string]any) *packScratch {
	sc, _ := packScratches.Get().(*packScratch)
	if sc == nil {
		sc = &packScratch{}
	}
	keys := sc.keys[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sc.keys = keys
	return sc
}

// keySet interns the encoded key set ks (the last one is kept: objects of
// a layer mostly share one).
func (sc *packScratch) keySet(ks []byte) unique.Handle[string] {
	if !sc.hasLast || string(ks) != sc.last.Value() {
		sc.last, sc.hasLast = unique.Make(string(ks)), true
	}
	return sc.last
}

// packOverlay packs an overlay: the base's sorted keys and the edits'
// sorted keys are merged; an untouched value's bytes are copied as they are.
// When an edit holds a type the packed form does not, the map form is
// returned instead.
func (p Props) packOverlay() Props {
	sc := sortedKeysScratch(p.edits())
	defer packScratches.Put(sc)
	all := sc.keys
	edits := all
	ks, data := sc.ks[:0], sc.data[:0]
	bks, bdata := p.keySet(), p.values()
	// JSON-typed: the base's values (those kept and those replaced, so
	// this may say no where a fresh check would say yes: the change log
	// then writes JSON) and each edit's.
	ok, typed := true, p.jsonTypedPacked()
	for ok && (bks != "" || len(edits) > 0) {
		var bk string
		var braw string
		if bks != "" {
			var rest string
			bk, rest = nextKey(bks)
			n := valueLen(bdata)
			braw = bdata[:n]
			if len(edits) == 0 || bk < edits[0] {
				ks = appendStrBytes(ks, bk)
				data = append(data, braw...)
				bks, bdata = rest, bdata[n:]
				continue
			}
			if bk == edits[0] {
				bks, bdata = rest, bdata[n:]
			} else {
				braw = "" // the edit's key is not in the base
			}
		}
		k := edits[0]
		edits = edits[1:]
		switch v := p.edits()[k].(type) {
		case propDeleted:
			continue
		case *listAppend:
			ks = appendStrBytes(ks, k)
			var itemsTyped bool
			data, ok, itemsTyped = appendListRaw(data, braw, v)
			typed = typed && itemsTyped
		default:
			ks = appendStrBytes(ks, k)
			at := len(data)
			data, ok = appendValueBytes(data, v)
			typed = typed && ok && jsonTypedBytes(data[at:])
		}
	}
	clear(all) // the scratch does not keep the map's keys alive
	sc.keys, sc.ks, sc.data = all[:0], ks, data
	if !ok {
		return NewProps(p.materialize())
	}
	if string(ks) == p.keySet() {
		return packedLike(p.basePacked(), data, typed)
	}
	return packedProps(sc.keySet(ks), data, typed)
}

// appendListRaw encodes the list raw (a packed tagList value, or "" for
// none) with la's entries appended, copying the kept entries' bytes.
//
// typed tells that the new entries are JSON-typed (the kept ones are as
// the list was).
func appendListRaw(b []byte, raw string, la *listAppend) (_ []byte, ok, typed bool) {
	var old string
	var cnt uint64
	if raw != "" && raw[0] == tagList {
		body, w := propUvarint(raw[1:])
		old = raw[1+w : 1+w+int(body)]
		var k int
		cnt, k = propUvarint(old)
		old = old[k:]
	}
	for skip := la.skip; skip > 0 && cnt > 0; skip, cnt = skip-1, cnt-1 {
		old = old[valueLen(old):]
	}
	// The new entries first, so that the list is written once at its
	// size: a guess too small for an alert's history entry (a map of
	// ~100 B) grew and copied the whole kept list on every firing.
	var scratch [512]byte
	items := scratch[:0]
	for _, e := range la.items {
		if items, ok = appendValueBytes(items, e); !ok {
			return b, false, false
		}
	}
	var cb [binary.MaxVarintLen64]byte
	cw := binary.PutUvarint(cb[:], cnt+uint64(len(la.items)))
	n := cw + len(old) + len(items)
	b = slices.Grow(b, 1+binary.MaxVarintLen64+n)
	b = binary.AppendUvarint(append(b, tagList), uint64(n))
	b = append(b, cb[:cw]...)
	b = append(b, old...)
	return append(b, items...), true, jsonTypedBytes(items)
}

// packScratch is Pack's working memory, reused: the sorted keys, the
// buffers, and the last key set's handle (objects of a layer mostly share
// one). A load packs a million props: their garbage, in the size classes
// of the packed values kept, left the heap's spans part empty.
type packScratch struct {
	keys     []string
	ks, data []byte
	last     unique.Handle[string]
	hasLast  bool
}

var packScratches sync.Pool // *packScratch

// propKV is one property for with.
type propKV struct {
	k string
	v any
}

// with returns the packed props of p with the given keys set, and
// "values" set to the packed value readings when that is not nil
// (ApplySample's merged readings; apart from set, whose values' contents
// escape, so that they stay on its stack): the apply path's one
// allocation for a sample's speed, heading and readings, keeping the
// interned key set when no key is new.
func (p Props) with(set []propKV, readings []byte) Props {
	slow := func() Props {
		m := p.Map()
		for _, kv := range set {
			m[kv.k] = kv.v
		}
		if readings != nil {
			m["values"], _ = decodeValue(string(readings))
		}
		return NewProps(m).Pack()
	}
	if !p.packed() {
		return slow()
	}
	ks, old := p.keySet(), p.values()
	for _, kv := range set {
		if !p.Has(kv.k) {
			return slow()
		}
	}
	if readings != nil && !p.Has("values") {
		return slow()
	}
	var buf [512]byte // the values are copied once more, after their header
	data := buf[:0]
	typed := p.jsonTypedPacked() // see packOverlay
	for ks != "" {
		var k string
		k, ks = nextKey(ks)
		n := valueLen(old)
		i := slices.IndexFunc(set, func(kv propKV) bool { return kv.k == k })
		if readings != nil && k == "values" {
			data = append(data, readings...)
			typed = typed && jsonTypedBytes(readings)
		} else if i < 0 {
			data = append(data, old[:n]...)
		} else {
			at := len(data)
			var good bool
			if data, good = appendValueBytes(data, set[i].v); !good {
				return slow()
			}
			typed = typed && jsonTypedBytes(data[at:])
		}
		old = old[n:]
	}
	return packedLike(p, data, typed)
}

// MarshalJSON writes the properties as a JSON object, keys sorted, as
// encoding/json writes a map.
func (p Props) MarshalJSON() ([]byte, error) {
	return appendProps(make([]byte, 0, 64+len(p.values())), p, nil)
}

// AppendJSON appends what MarshalJSON writes to b (the stores' encoders
// write a packed form from its bytes, without boxing a value).
func (p Props) AppendJSON(b []byte) ([]byte, error) { return appendProps(b, p, nil) }

// UnmarshalJSON reads a JSON object into the editable form.
func (p *Props) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*p = NewProps(m)
	return nil
}

// Equal reports whether p and q hold the same properties (as JSON).
func (p Props) Equal(q Props) bool {
	if p.packed() && q.packed() && p.ref == q.ref && p.values() == q.values() {
		return true
	}
	a, err1 := p.MarshalJSON()
	b, err2 := q.MarshalJSON()
	return err1 == nil && err2 == nil && string(a) == string(b)
}

// Format prints the properties as their JSON object (for %v in logs and
// test failures).
func (p Props) Format(f fmt.State, verb rune) {
	b, err := p.MarshalJSON()
	if err != nil {
		fmt.Fprintf(f, "%%!%c(props: %v)", verb, err)
		return
	}
	_, _ = f.Write(b)
}

func nextKey(ks string) (string, string) {
	n, w := propUvarint(ks)
	return ks[w : w+int(n)], ks[w+int(n):]
}

func appendStrBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// uvarint reads a uvarint at the start of s and its width.
func propUvarint(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<sh, i + 1
		}
		x |= uint64(c&0x7f) << sh
		sh += 7
	}
	return 0, len(s)
}

func propVarint(s string) (int64, int) {
	u, n := propUvarint(s)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, n
}

func propStr(s string) (string, int) {
	n, w := propUvarint(s)
	return s[w : w+int(n)], w + int(n)
}

// fixedLen is the encoded length of a value of a fixed-size tag, 0 for
// the others (a uvarint follows their tag).
func fixedLen(tag byte) int {
	switch tag {
	case tagNull, tagFalse, tagTrue:
		return 1
	case tagF64:
		return 9
	case tagF32:
		return 5
	}
	return 0
}

// valueLen is the encoded length of the value at the start of s.
func valueLen(s string) int {
	if n := fixedLen(s[0]); n > 0 {
		return n
	}
	switch s[0] {
	case tagF64Int, tagInt, tagI64, tagI32, tagU64, tagF64Tenths:
		_, n := propUvarint(s[1:])
		return 1 + n
	default: // strings and containers: a length then that many bytes
		n, w := propUvarint(s[1:])
		return 1 + w + int(n)
	}
}

// decodeValue decodes the value at the start of s and returns its length.
func decodeValue(s string) (any, int) {
	switch s[0] {
	case tagNull:
		return nil, 1
	case tagFalse:
		return false, 1
	case tagTrue:
		return true, 1
	case tagF64, tagF64Int, tagF64Tenths: // a float64, as readings hold them
		return readingValue(s)
	case tagF32:
		return math.Float32frombits(binary.LittleEndian.Uint32([]byte(s[1:5]))), 5
	case tagInt:
		x, n := propVarint(s[1:])
		return int(x), 1 + n
	case tagI64:
		x, n := propVarint(s[1:])
		return x, 1 + n
	case tagI32:
		x, n := propVarint(s[1:])
		return int32(x), 1 + n
	case tagU64:
		x, n := propUvarint(s[1:])
		return x, 1 + n
	case tagStr:
		v, n := propStr(s[1:])
		return v, 1 + n
	case tagNumber:
		v, n := propStr(s[1:])
		return json.Number(v), 1 + n
	}
	body, w := propUvarint(s[1:])
	end := 1 + w + int(body)
	c := s[1+w : end]
	cnt, k := propUvarint(c)
	c = c[k:]
	switch s[0] {
	case tagList:
		out := make([]any, cnt)
		for i := range out {
			v, n := decodeValue(c)
			out[i], c = v, c[n:]
		}
		return out, end
	case tagStrings:
		out := make([]string, cnt)
		for i := range out {
			v, n := propStr(c)
			out[i], c = v, c[n:]
		}
		return out, end
	default: // tagMap
		out := make(map[string]any, cnt)
		for range cnt {
			key, n := propStr(c)
			v, m := decodeValue(c[n:])
			out[key], c = v, c[n+m:]
		}
		return out, end
	}
}

// appendValueBytes encodes v; false when v's type is not one the packed
// form holds.
func appendValueBytes(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), true
	case bool:
		if x {
			return append(b, tagTrue), true
		}
		return append(b, tagFalse), true
	case float64:
		return appendF64(b, x), true
	case float32:
		return binary.LittleEndian.AppendUint32(append(b, tagF32), math.Float32bits(x)), true
	case int:
		return binary.AppendVarint(append(b, tagInt), int64(x)), true
	case int64:
		return binary.AppendVarint(append(b, tagI64), x), true
	case int32:
		return binary.AppendVarint(append(b, tagI32), int64(x)), true
	case uint64:
		return binary.AppendUvarint(append(b, tagU64), x), true
	case string:
		return appendStrBytes(append(b, tagStr), x), true
	case json.Number:
		return appendStrBytes(append(b, tagNumber), string(x)), true
	case []any:
		var body []byte
		body = binary.AppendUvarint(body, uint64(len(x)))
		for _, e := range x {
			var ok bool
			if body, ok = appendValueBytes(body, e); !ok {
				return b, false
			}
		}
		return appendStrBytes(append(b, tagList), string(body)), true
	case []string:
		var body []byte
		body = binary.AppendUvarint(body, uint64(len(x)))
		for _, e := range x {
			body = appendStrBytes(body, e)
		}
		return appendStrBytes(append(b, tagStrings), string(body)), true
	case map[string]any:
		var ka [16]string // no allocation for the keys of a small map
		keys := ka[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		// The body straight into b after room for its length, moved up
		// once known: no body of its own, no copy of it.
		b = append(b, tagMap)
		at := len(b)
		const room = 2 // a body under 16 KB
		b = append(b, make([]byte, room)...)
		b = binary.AppendUvarint(b, uint64(len(x)))
		for _, k := range keys {
			b = appendStrBytes(b, k)
			var ok bool
			if b, ok = appendValueBytes(b, x[k]); !ok {
				return b[:at-1], false
			}
		}
		return putLenBefore(b, at, room), true
	}
	return b, false
}

// putLenBefore writes, at b[at:], the length of what follows the room
// bytes left there (a uvarint), moving it up or down to fit.
func putLenBefore(b []byte, at, room int) []byte {
	n := len(b) - at - room
	var lb [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(lb[:], uint64(n))
	if w > room {
		b = slices.Insert(b, at+room, make([]byte, w-room)...)
		room = w
	}
	copy(b[at:], lb[:w])
	return append(b[:at+w], b[at+room:]...)
}

// appendF64 encodes a float64 in the shortest of its tags: an integer as a
// varint, tenths as a varint of ten times it, anything else in 8 bytes.
func appendF64(b []byte, x float64) []byte {
	if x == math.Trunc(x) && math.Abs(x) < 1<<53 && !(x == 0 && math.Signbit(x)) {
		return binary.AppendVarint(append(b, tagF64Int), int64(x))
	}
	if t := math.Round(x * 10); t != 0 && math.Abs(t) < 1<<53 && math.Float64bits(t/10) == math.Float64bits(x) {
		return binary.AppendVarint(append(b, tagF64Tenths), int64(t))
	}
	return binary.LittleEndian.AppendUint64(append(b, tagF64), math.Float64bits(x))
}
