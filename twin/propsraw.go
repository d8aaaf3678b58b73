package twin

import (
	"errors"
	"math"
	"unicode/utf8"
)

// ErrBadPackedProps is returned for packed props bytes that Pack could
// not have written (damaged, cut short, keys out of order).
var ErrBadPackedProps = errors.New("bad packed props")

// AppendPackedProps appends p's packed form, its key set then its values,
// each after its length as a uvarint, and reports true; when p holds what
// JSON cannot (a NaN, a string that is not UTF-8: Props taken unchecked
// from elsewhere) it appends nothing and reports false, and the caller
// writes JSON. The bytes are the twin's own: a store or the change log
// copies them instead of encoding the props to JSON and parsing them
// back (an alert's 5 KB history on every write).
func AppendPackedProps(b []byte, p Props) ([]byte, bool) {
	p = p.Pack()
	if !p.packed() || !p.jsonTypedPacked() || !utf8.ValidString(p.keySet()) {
		return b, false
	}
	b = appendStr(b, p.keySet())
	return appendStr(b, p.values()), true
}

// ReadPackedProps reads props that AppendPackedProps wrote at the start of
// b, checked so that no later read goes out of bounds, and returns them
// (copied: b may be a store's mapped memory) and the bytes after them.
func ReadPackedProps(b []byte) (Props, []byte, error) {
	keys, b, err := readStr(b, math.MaxUint64)
	if err != nil {
		return Props{}, nil, ErrBadPackedProps
	}
	data, b, err := readStr(b, math.MaxUint64)
	if err != nil {
		return Props{}, nil, ErrBadPackedProps
	}
	// The JSON types and UTF-8 too: a store holds no string that is not
	// text (a damaged record's bytes are refused, not loaded).
	p, ok := unpackChecked(keys, data)
	if !ok || !p.jsonTypedPacked() || !utf8.Valid(keys) {
		return Props{}, nil, ErrBadPackedProps
	}
	return p, b, nil
}
