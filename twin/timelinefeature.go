package twin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unique"
	"unsafe"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/wkb"
)

// The binary form of a feature in a timeline record (TimelineRecord.Binary),
// what the recorder writes for every change of the live layers. It holds
// what the wire JSON holds (a replay serves the wire form: no cells, no
// source) and reads back to the same Feature the wire JSON gives, but is
// written from the twin's own representation without formatting anything:
// times as Unix ns, coordinates as float64 bits (rounded as the wire rounds
// them, so a replayed position is the one live clients saw), props as the
// packed form's bytes (Props.Pack), copied. Writing the wire JSON of each
// change (RFC 3339 times, shortest float digits, props re-encoded) was a
// third of the recorder's cost at 14k msgs/s. Layout, integers varint
// unless noted, strings a uvarint length then bytes:
//
//	version (uvarint), updated ns (0: zero time), observed ns,
//	len(region) (uvarint) then each code, grid,
//	geometry kind: featGeomNone | featGeomPoint lon lat (float64 bits, LE)
//	               | featGeomWKB (string: little-endian WKB),
//	props kind: featPropsPacked keys values (strings, as Props packs them;
//	            checked when read) | featPropsJSON (string: a JSON object).
//
// The packed props are thus stored: their tags (props.go) keep their values.
const (
	featGeomNone byte = iota
	featGeomPoint
	featGeomWKB
)

const (
	featPropsPacked byte = iota
	featPropsJSON
)

// appendFeatureRecord appends f's binary form.
func appendFeatureRecord(b []byte, f *Feature) ([]byte, error) {
	b = binary.AppendUvarint(b, f.Version)
	b = binary.AppendVarint(b, int64(f.Updated))
	b = binary.AppendVarint(b, int64(f.Observed))
	region := f.Region()
	b = binary.AppendUvarint(b, uint64(len(region)))
	for _, r := range region {
		b = appendStr(b, r)
	}
	b = appendStr(b, f.Grid())
	switch g := f.Geometry.(type) {
	case nil:
		b = append(b, featGeomNone)
	case orb.Point:
		if !finite(g[0]) || !finite(g[1]) {
			return nil, fmt.Errorf("timeline: point %v", g)
		}
		b = append(b, featGeomPoint)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(roundCoord(g[0])))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(roundCoord(g[1])))
	default:
		w, err := wkb.Marshal(orb.Round(orb.Clone(g), CoordFactor), binary.LittleEndian)
		if err != nil {
			return nil, fmt.Errorf("timeline: geometry: %w", err)
		}
		b = append(b, featGeomWKB)
		b = binary.AppendUvarint(b, uint64(len(w)))
		b = append(b, w...)
	}
	p := f.Props.Pack() // the twin's features are packed already
	if p.packed() {
		b = append(b, featPropsPacked)
		b = appendStr(b, p.keySet())
		return appendStr(b, p.values()), nil
	}
	b = append(b, featPropsJSON)
	start := len(b)
	b, err := appendProps(b, p, nil)
	if err != nil {
		return nil, fmt.Errorf("timeline: props: %w", err)
	}
	// The length goes first: move the object after it.
	obj := string(b[start:])
	return appendStr(b[:start], obj), nil
}

var errBadFeature = errors.New("bad feature record")

// decodeFeatureRecord reads what appendFeatureRecord wrote; nothing of b
// is kept.
func decodeFeatureRecord(id ID, b []byte) (*Feature, error) {
	f := &Feature{ID: id}
	var ok bool
	var n uint64
	rd := recReader{b: b}
	f.Version = rd.uvarint()
	f.Updated = Stamp(rd.varint())
	f.Observed = Stamp(rd.varint())
	if n = rd.uvarint(); n > uint64(len(rd.b)) {
		return nil, fmt.Errorf("%w: %w: regions", ErrBadTimeline, errBadFeature)
	}
	var region []string
	if n > 0 {
		region = make([]string, n)
		for i := range region {
			region[i] = string(rd.str())
		}
	}
	f.Place = NewPlace(region, string(rd.str()))
	switch rd.byte() {
	case featGeomNone:
	case featGeomPoint:
		p := orb.Point{rd.f64(), rd.f64()}
		if !finite(p[0]) || !finite(p[1]) {
			return nil, fmt.Errorf("%w: %w: point", ErrBadTimeline, errBadFeature)
		}
		f.Geometry = p
	case featGeomWKB:
		w := rd.str()
		if rd.err == nil {
			g, err := wkb.Unmarshal(w)
			if err != nil {
				return nil, fmt.Errorf("%w: %w: %w", ErrBadTimeline, errBadFeature, err)
			}
			f.Geometry = g
		}
	default:
		rd.fail()
	}
	switch rd.byte() {
	case featPropsPacked:
		keys, data := rd.str(), rd.str()
		if rd.err == nil {
			if f.Props, ok = unpackChecked(keys, data); !ok {
				return nil, fmt.Errorf("%w: %w: props", ErrBadTimeline, errBadFeature)
			}
		}
	case featPropsJSON:
		obj := rd.str()
		if rd.err == nil {
			if err := f.Props.UnmarshalJSON(obj); err != nil {
				return nil, fmt.Errorf("%w: %w: %w", ErrBadTimeline, errBadFeature, err)
			}
		}
	default:
		rd.fail()
	}
	if rd.err != nil || len(rd.b) != 0 {
		return nil, fmt.Errorf("%w: %w", ErrBadTimeline, errBadFeature)
	}
	return f, nil
}

// recReader walks a binary record; the first error sticks.
type recReader struct {
	b   []byte
	err error
}

func (r *recReader) fail() {
	if r.err == nil {
		r.err = errBadFeature
	}
	r.b = nil
}

func (r *recReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return math.MaxUint8
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *recReader) f64() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *recReader) str() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// unpackChecked makes packed props of keys and data (copied) when they
// are a packed form Pack could have written, so that reading them cannot
// go out of bounds: each key and value complete, one value per key, keys
// sorted and distinct, and nothing left over.
func unpackChecked(keys, data []byte) (Props, bool) {
	// Views, not copies: the check keeps nothing, unique.Make clones a
	// key set it has not seen, and packedProps copies the values. Copies
	// here were two short-lived allocations per object between the kept
	// ones of a load (heap in use 249 B/object at 1M points, not 226).
	ks := unsafe.String(unsafe.SliceData(keys), len(keys))
	ds := unsafe.String(unsafe.SliceData(data), len(data))
	prev, first := "", true
	for rest := ks; rest != ""; {
		k, w, ok := checkedStr(rest)
		if !ok || !first && k <= prev {
			return Props{}, false // the packed form's keys are sorted, once each (lookups rely on it)
		}
		prev, first = k, false
		rest = rest[w:]
		n, ok := checkValue(ds, 0)
		if !ok {
			return Props{}, false
		}
		ds = ds[n:]
	}
	if ds != "" {
		return Props{}, false
	}
	return packedProps(unique.Make(ks), data, jsonTypedBytes(data)), true
}

// checkedUvarint reads a uvarint at the start of s; ok false when s does
// not hold a complete one.
func checkedUvarint(s string) (v uint64, w int, ok bool) {
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return v | uint64(c)<<sh, i + 1, true
		}
		v |= uint64(c&0x7f) << sh
		sh += 7
	}
	return 0, 0, false
}

// checkedStr reads a length and that many bytes; w is the whole width.
func checkedStr(s string) (str string, w int, ok bool) {
	n, k, ok := checkedUvarint(s)
	if !ok || n > uint64(len(s)-k) {
		return "", 0, false
	}
	return s[k : k+int(n)], k + int(n), true
}

// maxPropDepth bounds the nesting of checked containers.
const maxPropDepth = 64

// checkValue returns the length of the well-formed packed value at the
// start of s.
func checkValue(s string, depth int) (int, bool) {
	if s == "" || depth > maxPropDepth {
		return 0, false
	}
	switch s[0] {
	case tagNull, tagFalse, tagTrue:
		return 1, true
	case tagF64:
		return 9, len(s) >= 9
	case tagF32:
		return 5, len(s) >= 5
	case tagF64Int, tagInt, tagI64, tagI32, tagU64, tagF64Tenths:
		_, w, ok := checkedUvarint(s[1:])
		return 1 + w, ok
	case tagStr, tagNumber:
		_, w, ok := checkedStr(s[1:])
		return 1 + w, ok
	case tagList, tagStrings, tagMap:
	default:
		return 0, false
	}
	body, w, ok := checkedStr(s[1:])
	if !ok {
		return 0, false
	}
	cnt, k, ok := checkedUvarint(body)
	if !ok || cnt > uint64(len(body)) {
		return 0, false
	}
	c := body[k:]
	for range cnt {
		if s[0] != tagList {
			_, n, ok := checkedStr(c)
			if !ok {
				return 0, false
			}
			c = c[n:]
			if s[0] == tagStrings {
				continue
			}
		}
		n, ok := checkValue(c, depth+1)
		if !ok {
			return 0, false
		}
		c = c[n:]
	}
	return 1 + w, c == ""
}
