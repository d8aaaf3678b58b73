package twin

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"iter"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Readings are a sample's numeric readings (name -> value), packed in one
// string of entries sorted by name in byte order (the order json.Marshal
// gives a map's keys). An entry is the bytes a packed props map holds for
// a float64 under a key: the name's length (uvarint), the name, and the
// value as appendF64 writes it (a tag, then a varint or 8 bytes). So the
// twin merges a sample's readings into an object's packed props by
// copying entries (appendMergedReadings), and the bytes hold no pointers:
// the feed keeps each change's sample for its window, and a
// map[string]float64 per sample (its table and a string per name) was
// about a sixth of the live heap at 20k samples/s, all of it scanned by
// the GC.
//
// Readings is a struct over a string, not a named []byte: len and
// indexing cannot be mistaken for the count and the readings; the
// 16-B header keeps a Sample in its size class (TestSampleSize), where a
// slice's 24 B did not; and the bytes are immutable, so Readings are a
// value (a copy is not changed by a Set on the original), safe to read
// from any number of goroutines, and the names All yields are substrings
// of it, valid for ever, with no copy. The price is that Set makes a new
// string (one allocation of the new size): samples carry one or two
// readings, and code that packs many at once (ReadingsOf, the change
// record's reader) builds them in one buffer instead. The zero value
// holds no readings and no allocation; readings that hold none are always
// the zero value.
type Readings struct{ s string }

// ReadingsOf packs m (nil or empty: the zero Readings).
func ReadingsOf(m map[string]float64) Readings {
	if len(m) == 0 {
		return Readings{}
	}
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = appendF64(appendStrBytes(b, k), m[k])
	}
	return readingsOwning(b)
}

// readingsOwning wraps b, sorted entries, without a copy: the caller
// hands b over and never writes it again.
func readingsOwning(b []byte) Readings {
	return Readings{s: unsafe.String(unsafe.SliceData(b), len(b))}
}

// Len is how many readings r holds.
func (r Readings) Len() int {
	n := 0
	for e := r.s; e != ""; n++ {
		_, l := nextReading(e)
		e = e[l:]
	}
	return n
}

// IsZero reports whether r holds no readings (for omitzero in JSON
// records).
func (r Readings) IsZero() bool { return r.s == "" }

// Get is the reading named key.
func (r Readings) Get(key string) (float64, bool) {
	for e := r.s; e != ""; {
		k, w := propStr(e)
		if k >= key {
			if k != key {
				return 0, false
			}
			v, _ := readingValue(e[w:])
			return v, true
		}
		e = e[w+valueLen(e[w:]):]
	}
	return 0, false
}

// All yields the readings in name order (byte order). The names are
// substrings of r: no copy.
func (r Readings) All() iter.Seq2[string, float64] {
	return func(yield func(string, float64) bool) {
		for e := r.s; e != ""; {
			k, w := propStr(e)
			v, l := readingValue(e[w:])
			if !yield(k, v) {
				return
			}
			e = e[w+l:]
		}
	}
}

// Set sets the reading named key to v, inserting it in name order or
// replacing its value (so of a JSON object's duplicate names the last
// wins, as in a map). It makes r a new string: one search over the
// entries and one allocation of the new length (none when the value's
// bytes are the same).
func (r *Readings) Set(key string, v float64) {
	var vb [binary.MaxVarintLen64 + 1]byte
	val := appendF64(vb[:0], v)
	e := r.s
	i := 0 // offset of the first entry whose name is >= key
	for i < len(e) {
		k, w := propStr(e[i:])
		l := valueLen(e[i+w:])
		if k == key {
			old := e[i+w : i+w+l]
			if old == string(val) {
				return
			}
			b := make([]byte, 0, len(e)-len(old)+len(val))
			b = append(append(append(b, e[:i+w]...), val...), e[i+w+l:]...)
			*r = readingsOwning(b)
			return
		}
		if k > key {
			break
		}
		i += w + l
	}
	var hb [binary.MaxVarintLen64]byte
	kl := binary.PutUvarint(hb[:], uint64(len(key)))
	b := make([]byte, 0, len(e)+kl+len(key)+len(val))
	b = append(append(append(append(append(b, e[:i]...), hb[:kl]...), key...), val...), e[i:]...)
	*r = readingsOwning(b)
}

// Map is r as a map, nil when r holds no readings.
func (r Readings) Map() map[string]float64 {
	if r.IsZero() {
		return nil
	}
	m := make(map[string]float64)
	for k, v := range r.All() {
		m[k] = v
	}
	return m
}

// AppendJSON appends r as json.Marshal writes the equivalent map (names
// sorted and escaped as it escapes them, numbers as it formats them; null
// when r holds none, as for a nil map): the stores keep readings in that
// form, so their bytes are what they were. A reading that is not finite
// (Unchecked only) fails as json fails.
func (r Readings) AppendJSON(b []byte) ([]byte, error) {
	if r.IsZero() {
		return append(b, "null"...), nil
	}
	b = append(b, '{')
	for k, v := range r.All() {
		if !finite(v) {
			return b, &json.UnsupportedValueError{Str: strconv.FormatFloat(v, 'g', -1, 64)}
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(appendJSONString(b, k), ':')
		b = appendJSONFloat(b, v)
	}
	return append(b, '}'), nil
}

// MarshalJSON is AppendJSON to a new slice.
func (r Readings) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil) }

// UnmarshalJSON reads a JSON object of numbers (null: none), as
// json.Unmarshal reads it into a nil map[string]float64, with its errors.
// What AppendJSON writes (the stores' bytes) is read straight into one
// buffer (readStoredJSON); anything else goes through the map.
func (r *Readings) UnmarshalJSON(b []byte) error {
	if got, ok := readStoredJSON(b); ok {
		*r = got
		return nil
	}
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*r = ReadingsOf(m)
	return nil
}

// readStoredJSON reads b when it is in the form AppendJSON writes: an
// object without spaces, names in increasing byte order without escapes
// or invalid UTF-8 (json reads those bytes as they are), numbers in JSON's
// grammar that parse as json parses them. Else it is not ok, and the
// caller takes json's path (FuzzReadingsJSON holds the two to the same
// answers).
func readStoredJSON(b []byte) (Readings, bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return Readings{}, false
	}
	if len(b) == 2 {
		return Readings{}, true
	}
	out := make([]byte, 0, len(b))
	var last []byte
	for i := 1; ; {
		if b[i] != '"' {
			return Readings{}, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if c := b[j]; c < 0x20 || c == '\\' {
				return Readings{}, false
			}
			j++
		}
		key := b[i+1 : j]
		if j+1 >= len(b) || b[j+1] != ':' || (last != nil && bytes.Compare(key, last) <= 0) || !utf8.Valid(key) {
			return Readings{}, false
		}
		i = j + 2
		n := jsonNumberLen(b[i:])
		if n == 0 {
			return Readings{}, false
		}
		v, err := strconv.ParseFloat(unsafe.String(&b[i], n), 64)
		if err != nil {
			return Readings{}, false // out of range: json's error
		}
		out = binary.AppendUvarint(out, uint64(len(key)))
		out = append(out, key...)
		last = out[len(out)-len(key):]
		out = appendF64(out, v)
		i += n
		switch {
		case b[i] == ',' && i+1 < len(b)-1:
			i++
		case b[i] == '}' && i == len(b)-1:
			return readingsOwning(out), true
		default:
			return Readings{}, false
		}
	}
}

// jsonNumberLen is the length of the JSON number (RFC 8259's grammar) at
// the start of b, 0 when there is none. Props' JSON packer reads numbers
// with it too.
func jsonNumberLen(b []byte) int {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		digits()
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}

// String is r as JSON, for messages and tests.
func (r Readings) String() string {
	b, _ := r.AppendJSON(nil)
	return string(b)
}

// nextReading is the name of the entry at the start of e and the entry's
// length.
func nextReading(e string) (string, int) {
	k, w := propStr(e)
	return k, w + valueLen(e[w:])
}

// readingValue decodes the value appendF64 wrote at the start of s and
// its length.
func readingValue(s string) (float64, int) {
	switch s[0] {
	case tagF64Int:
		x, n := propVarint(s[1:])
		return float64(x), 1 + n
	case tagF64Tenths:
		x, n := propVarint(s[1:])
		return float64(x) / 10, 1 + n
	default: // tagF64
		var u uint64
		for i := 8; i >= 1; i-- {
			u = u<<8 | uint64(s[i])
		}
		return math.Float64frombits(u), 9
	}
}
