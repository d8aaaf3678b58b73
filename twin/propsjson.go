package twin

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
	"unique"
)

// PackJSON returns the packed props of the JSON object b: what
// NewProps(m).Pack() gives for the map encoding/json decodes b into, byte
// for byte, without making the map.
//
// Why: a store's load decodes a million objects' props. Through a map each
// left a map, boxed numbers and strings behind, dropped once packed but
// allocated between the objects kept, so the heap's 16- and 32-B spans
// stayed part empty after the load (~12 MB of 1M points, issue 16 goal 4),
// and the decode was a fifth of the load's CPU. Here the values are encoded
// into reused buffers as they are read; the packed form's string (and its
// key set, the first time it is seen) is all that is allocated.
//
// The common case (no string escapes other than the simple ones and \u
// outside the surrogates, valid UTF-8, nesting below jsonMaxDepth) is read
// here; anything else goes through encoding/json and Pack, so the result,
// errors included, never differs from theirs. b is not kept: it may be a
// store's mapped memory. Safe for concurrent use.
func PackJSON(b []byte) (Props, error) {
	pk, _ := jsonPackers.Get().(*jsonPacker)
	if pk == nil {
		pk = &jsonPacker{}
	}
	defer jsonPackers.Put(pk)
	if p, ok := pk.pack(b); ok {
		return p, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return Props{}, err
	}
	return NewProps(m).Pack(), nil
}

// jsonMaxDepth bounds the nesting read by hand (encoding/json's own limit,
// 10000, is left to it).
const jsonMaxDepth = 100

// jsonPacker is PackJSON's reader and its working memory, reused across
// calls: encoded values, keys and members of the objects and lists being
// read (an object's members are sorted by key when it closes), and the last
// key set's handle (objects of a layer mostly share one).
type jsonPacker struct {
	in      []byte
	i       int
	vals    []byte       // encoded values of the open objects and lists
	keys    []byte       // unescaped keys of the open objects' members
	mems    []jsonMember // members of the open objects
	tmp     []byte       // where a closing container or the key set is assembled
	data    []byte       // where the values are assembled in key order
	last    unique.Handle[string]
	hasLast bool
}

// jsonMember is one member of an object being read: its key in keys and
// its encoded value in vals.
type jsonMember struct{ k0, k1, v0, v1 int }

var jsonPackers sync.Pool // *jsonPacker

// pack reads b; false means "let encoding/json decide".
func (pk *jsonPacker) pack(b []byte) (Props, bool) {
	pk.in, pk.i = b, 0
	pk.vals, pk.keys, pk.mems = pk.vals[:0], pk.keys[:0], pk.mems[:0]
	defer func() { pk.in = nil }() // b may be a store's mapped memory
	pk.ws()
	if !pk.next('{') {
		return Props{}, false
	}
	if !pk.members(1) {
		return Props{}, false
	}
	pk.ws()
	if pk.i != len(pk.in) {
		return Props{}, false
	}
	mems := pk.sorted(0)
	ks := pk.tmp[:0]
	data := pk.data[:0]
	for _, m := range mems {
		ks = appendField(ks, pk.keys[m.k0:m.k1])
		data = append(data, pk.vals[m.v0:m.v1]...)
	}
	pk.tmp, pk.data = ks, data
	if !pk.hasLast || string(ks) != pk.last.Value() {
		pk.last, pk.hasLast = unique.Make(string(ks)), true
	}
	return packedProps(pk.last, data, jsonTypedBytes(data)), true
}

// members reads an object's members after its '{' up to its '}' into
// mems, their values into vals.
func (pk *jsonPacker) members(depth int) bool {
	pk.ws()
	if pk.next('}') {
		return true
	}
	for {
		pk.ws()
		k0 := len(pk.keys)
		var ok bool
		if pk.keys, ok = pk.str(pk.keys); !ok {
			return false
		}
		k1 := len(pk.keys)
		pk.ws()
		if !pk.next(':') {
			return false
		}
		v0 := len(pk.vals)
		if !pk.value(depth) {
			return false
		}
		pk.mems = append(pk.mems, jsonMember{k0, k1, v0, len(pk.vals)})
		pk.ws()
		if pk.next('}') {
			return true
		}
		if !pk.next(',') {
			return false
		}
	}
}

// sorted sorts the members from index base on by key and drops all but
// the last of a repeated key, as encoding/json's map keeps the last.
func (pk *jsonPacker) sorted(base int) []jsonMember {
	mems := pk.mems[base:]
	key := func(m jsonMember) []byte { return pk.keys[m.k0:m.k1] }
	slices.SortStableFunc(mems, func(a, b jsonMember) int { return bytes.Compare(key(a), key(b)) })
	out := mems[:0]
	for i, m := range mems {
		if i+1 < len(mems) && bytes.Equal(key(m), key(mems[i+1])) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// value reads one value and appends its encoding to vals.
func (pk *jsonPacker) value(depth int) bool {
	pk.ws()
	if pk.i >= len(pk.in) {
		return false
	}
	switch c := pk.in[pk.i]; {
	case c == '"':
		s0 := len(pk.keys) // the string is read into keys' spare room, then dropped there
		var ok bool
		if pk.keys, ok = pk.str(pk.keys); !ok {
			return false
		}
		pk.vals = appendField(append(pk.vals, tagStr), pk.keys[s0:])
		pk.keys = pk.keys[:s0]
		return true
	case c == '{' || c == '[':
		if depth >= jsonMaxDepth {
			return false
		}
		pk.i++
		if c == '{' {
			return pk.object(depth + 1)
		}
		return pk.list(depth + 1)
	case c == 't':
		pk.vals = append(pk.vals, tagTrue)
		return pk.lit("true")
	case c == 'f':
		pk.vals = append(pk.vals, tagFalse)
		return pk.lit("false")
	case c == 'n':
		pk.vals = append(pk.vals, tagNull)
		return pk.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return pk.number()
	}
	return false
}

// object reads a nested object after its '{' and appends its tagMap
// encoding (members sorted by key, as Pack writes a map).
func (pk *jsonPacker) object(depth int) bool {
	base, v0, k0 := len(pk.mems), len(pk.vals), len(pk.keys)
	if !pk.members(depth) {
		return false
	}
	mems := pk.sorted(base)
	body := binary.AppendUvarint(pk.tmp[:0], uint64(len(mems)))
	for _, m := range mems {
		body = appendField(body, pk.keys[m.k0:m.k1])
		body = append(body, pk.vals[m.v0:m.v1]...)
	}
	pk.tmp = body
	pk.vals = appendField(append(pk.vals[:v0], tagMap), body)
	pk.keys, pk.mems = pk.keys[:k0], pk.mems[:base]
	return true
}

// list reads an array after its '[' and appends its tagList encoding.
func (pk *jsonPacker) list(depth int) bool {
	v0 := len(pk.vals)
	n := 0
	pk.ws()
	if !pk.next(']') {
		for {
			if !pk.value(depth) {
				return false
			}
			n++
			pk.ws()
			if pk.next(']') {
				break
			}
			if !pk.next(',') {
				return false
			}
		}
	}
	body := binary.AppendUvarint(pk.tmp[:0], uint64(n))
	body = append(body, pk.vals[v0:]...)
	pk.tmp = body
	pk.vals = appendField(append(pk.vals[:v0], tagList), body)
	return true
}

func (pk *jsonPacker) ws() {
	for pk.i < len(pk.in) {
		switch pk.in[pk.i] {
		case ' ', '\t', '\n', '\r':
			pk.i++
		default:
			return
		}
	}
}

// next consumes c when it is the next byte.
func (pk *jsonPacker) next(c byte) bool {
	if pk.i < len(pk.in) && pk.in[pk.i] == c {
		pk.i++
		return true
	}
	return false
}

func (pk *jsonPacker) lit(s string) bool {
	if len(pk.in)-pk.i < len(s) || string(pk.in[pk.i:pk.i+len(s)]) != s {
		return false
	}
	pk.i += len(s)
	return true
}

// str reads a string and appends it, unescaped, to dst. Escapes of a
// surrogate (\ud83d) and invalid UTF-8, which encoding/json pairs or
// replaces, are left to it.
func (pk *jsonPacker) str(dst []byte) ([]byte, bool) {
	if !pk.next('"') {
		return dst, false
	}
	in := pk.in
	start := pk.i
	for j := start; j < len(in); {
		switch c := in[j]; {
		case c == '"':
			s := in[start:j]
			if !utf8.Valid(s) {
				return dst, false
			}
			pk.i = j + 1
			return append(dst, s...), true
		case c < 0x20:
			return dst, false
		case c == '\\':
			s := in[start:j]
			if !utf8.Valid(s) || j+1 >= len(in) {
				return dst, false
			}
			dst = append(dst, s...)
			n := 2
			switch e := in[j+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				if j+6 > len(in) {
					return dst, false
				}
				r, err := strconv.ParseUint(string(in[j+2:j+6]), 16, 32)
				if err != nil || r >= 0xD800 && r < 0xE000 {
					return dst, false
				}
				dst = utf8.AppendRune(dst, rune(r))
				n = 6
			default:
				return dst, false
			}
			j += n
			start = j
		default:
			j++
		}
	}
	return dst, false
}

// number reads a JSON number (strict grammar) and appends it as Pack
// writes a float64.
func (pk *jsonPacker) number() bool {
	n := jsonNumberLen(pk.in[pk.i:])
	if n == 0 {
		return false
	}
	f, err := strconv.ParseFloat(string(pk.in[pk.i:pk.i+n]), 64)
	if err != nil {
		return false // out of range: encoding/json reports it
	}
	pk.i += n
	pk.vals = appendF64(pk.vals, f)
	return true
}

// appendField is appendStrBytes of bytes: a uvarint length, then x.
func appendField(b, x []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(x))), x...)
}
