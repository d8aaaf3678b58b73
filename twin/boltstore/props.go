package boltstore

import (
	"encoding/json"
	"hash/maphash"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/citytwin/citytwin/twin"
)

// interner shares the strings and boxed numbers that repeat across stored
// objects (prop keys, street codes, colours, small numbers), so a million
// loaded buildings hold one copy of each instead of a million. It is a
// direct-mapped cache (a slot per hash, the newest value wins), not a map:
// a lookup is one hash and one compare in 200 KB that stay in cache, unique
// values (names) only evict, and its size never grows. Places (region path
// and grid), few and all repeated, are in a bounded map. Not safe for
// concurrent use: each decoding goroutine has its own.
type interner struct {
	seed   maphash.Seed
	strs   [internSlots]string
	nums   [internSlots]any
	places twin.Places
}

// internSlots is the cache size (a power of two).
const internSlots = 1 << 12

func newInterner() *interner {
	return &interner{seed: maphash.MakeSeed()}
}

// str returns b as a string, shared when it was seen before.
func (in *interner) str(b []byte) string {
	if in == nil || len(b) > 40 {
		return string(b)
	}
	slot := &in.strs[maphash.Bytes(in.seed, b)&(internSlots-1)]
	if *slot == string(b) { // no allocation for the compare
		return *slot
	}
	s := string(b)
	*slot = s
	return s
}

// num returns f boxed in an interface, sharing the box for repeated values.
func (in *interner) num(f float64) any {
	if in == nil || f == 0 { // 0 and -0 are equal but distinct values
		return f
	}
	bits := math.Float64bits(f)
	slot := &in.nums[(bits^bits>>29^bits>>47)*0x9e3779b97f4a7c15>>52&(internSlots-1)]
	if v, ok := (*slot).(float64); ok && math.Float64bits(v) == bits {
		return *slot
	}
	var v any = f
	*slot = v
	return v
}

// place returns the place of region and grid, shared by every object of
// the load with the same codes (twin.Places).
func (in *interner) place(region []string, grid string) *twin.Place {
	if in == nil {
		return twin.NewPlace(region, grid)
	}
	return in.places.Get(region, grid)
}

// decodeProps decodes a props JSON object exactly as encoding/json decodes
// into map[string]any (numbers as float64, arrays as []any), interning keys,
// short strings and numbers. The common case (no escapes, valid UTF-8) is
// parsed here; anything else falls back to encoding/json, so the result never
// differs from it.
func decodeProps(b []byte, in *interner) (map[string]any, error) {
	p := propParser{b: b, in: in}
	if m, ok := p.object(); ok {
		p.ws()
		if p.i == len(p.b) {
			return m, nil
		}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

type propParser struct {
	b  []byte
	i  int
	in *interner
}

func (p *propParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses {...}; false means "let encoding/json decide".
func (p *propParser) object() (map[string]any, bool) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, false
	}
	p.i++
	// Count the keys roughly is not worth a pass: maps up to 8 entries
	// live in one group anyway.
	m := make(map[string]any, 8)
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, true
	}
	for {
		p.ws()
		k, ok := p.rawString()
		if !ok {
			return nil, false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, false
		}
		p.i++
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		m[p.in.str(k)] = v
		p.ws()
		if p.i >= len(p.b) {
			return nil, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (p *propParser) array() ([]any, bool) {
	p.i++ // '['
	out := []any{}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return out, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		p.ws()
		if p.i >= len(p.b) {
			return nil, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return out, true
		default:
			return nil, false
		}
	}
}

func (p *propParser) value() (any, bool) {
	p.ws()
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, ok := p.rawString()
		if !ok {
			return nil, false
		}
		return p.in.str(s), true
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, false
}

func (p *propParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// rawString returns the bytes of a string without escapes or control
// characters and with valid UTF-8; anything else is left to encoding/json.
func (p *propParser) rawString() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !utf8.Valid(s) {
				return nil, false
			}
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// number parses a JSON number (strict grammar), as float64.
func (p *propParser) number() (any, bool) {
	start := p.i
	j := p.i
	if j < len(p.b) && p.b[j] == '-' {
		j++
	}
	digits := func() int {
		n := 0
		for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(p.b) && p.b[j] == '0' {
		j++
	} else if digits() == 0 {
		return nil, false
	}
	if j < len(p.b) && p.b[j] == '.' {
		j++
		if digits() == 0 {
			return nil, false
		}
	}
	if j < len(p.b) && (p.b[j] == 'e' || p.b[j] == 'E') {
		j++
		if j < len(p.b) && (p.b[j] == '+' || p.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(string(p.b[start:j]), 64)
	if err != nil {
		return nil, false // out of range: encoding/json reports it
	}
	p.i = j
	return p.in.num(f), true
}
