package twin

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// appendWire appends f's GeoJSON wire form, byte for byte what
// json.Marshal(wireFeature) gives, without reflection over the struct
// (field order, omitempty and HTML-safe string escaping as encoding/json
// does them; points written directly; props still through encoding/json,
// which sorts keys). Encoding every websocket delta and HTTP feature went
// through this: reflection over wireFeature was half of its cost.
func (f *Feature) appendWire(b []byte, keep []string) ([]byte, error) {
	b = append(b, `{"type":"Feature","id":`...)
	b = appendJSONString(b, f.ID.String())
	b = append(b, `,"layer":`...)
	b = appendJSONString(b, string(f.ID.Layer))
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, f.Version, 10)
	if !f.Updated.IsZero() {
		b = append(b, `,"updated":"`...)
		b = f.Updated.Time().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if !f.Observed.IsZero() {
		b = append(b, `,"observed":"`...)
		b = f.Observed.Time().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"region":[`...)
	for i, r := range f.Region() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, r)
	}
	b = append(b, ']')
	if f.Grid() != "" {
		b = append(b, `,"grid":`...)
		b = appendJSONString(b, f.Grid())
	}
	b = append(b, `,"geometry":`...)
	switch g := f.Geometry.(type) {
	case nil:
		b = append(b, "null"...)
	case orb.Point:
		if !finite(g[0]) || !finite(g[1]) {
			return nil, fmt.Errorf("json: unsupported value: %v", g)
		}
		b = append(b, `{"type":"Point","coordinates":[`...)
		b = appendJSONFloat(b, roundCoord(g[0]))
		b = append(b, ',')
		b = appendJSONFloat(b, roundCoord(g[1]))
		b = append(b, "]}"...)
	default:
		gb, err := geojson.NewGeometry(orb.Round(orb.Clone(g), CoordFactor)).MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("json: geometry: %w", err)
		}
		b = append(b, gb...)
	}
	b = append(b, `,"properties":`...)
	b, err := appendProps(b, f.Props, keep)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// AppendGeoJSON appends f's GeoJSON wire form to b: what MarshalJSON
// writes when keep is nil; otherwise only the properties named in keep
// (sorted, no duplicates; empty: none), for answers that ask for fewer
// bytes (GET /api/nearby?properties=). Writing into a caller's buffer lets
// a handler encode a whole answer in one reused slice.
func (f *Feature) AppendGeoJSON(b []byte, keep []string) ([]byte, error) {
	return f.appendWire(b, keep)
}

// appendProps writes props as a JSON object, keys sorted as
// encoding/json sorts them (only those in keep when keep is not nil).
// Values of the common scalar types are written directly, byte for byte
// as encoding/json writes them; a packed form is written from its bytes
// without decoding (nested maps are stored with their keys sorted).
func appendProps(b []byte, props Props, keep []string) ([]byte, error) {
	props = props.flat()
	if props.packed() {
		return appendPackedProps(b, props, keep)
	}
	keys := keep
	if keep == nil {
		var arr [16]string
		keys = arr[:0]
		for k := range props.edits() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	b = append(b, '{')
	n := 0
	for _, k := range keys {
		v, ok := props.edits()[k]
		if !ok {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, v); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendPackedProps(b []byte, props Props, keep []string) ([]byte, error) {
	b = append(b, '{')
	n := 0
	ks, data := props.keySet(), props.values()
	for ks != "" {
		var k string
		k, ks = nextKey(ks)
		l := valueLen(data)
		raw := data[:l]
		data = data[l:]
		if keep != nil {
			if _, found := slices.BinarySearch(keep, k); !found {
				continue
			}
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendRaw(b, raw); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendRaw writes one packed value as encoding/json writes its decoded
// form.
func appendRaw(b []byte, raw string) ([]byte, error) {
	switch raw[0] {
	case tagNull:
		return append(b, "null"...), nil
	case tagFalse:
		return append(b, "false"...), nil
	case tagTrue:
		return append(b, "true"...), nil
	case tagStr:
		s, _ := propStr(raw[1:])
		return appendJSONString(b, s), nil
	case tagF64Int, tagInt, tagI64, tagI32:
		x, _ := propVarint(raw[1:])
		return strconv.AppendInt(b, x, 10), nil
	case tagList, tagStrings, tagMap:
		body, w := propUvarint(raw[1:])
		c := raw[1+w : 1+w+int(body)]
		cnt, k := propUvarint(c)
		c = c[k:]
		open, close := byte('['), byte(']')
		if raw[0] == tagMap {
			open, close = '{', '}'
		}
		b = append(b, open)
		for i := range cnt {
			if i > 0 {
				b = append(b, ',')
			}
			switch raw[0] {
			case tagStrings:
				s, n := propStr(c)
				b, c = appendJSONString(b, s), c[n:]
				continue
			case tagMap:
				key, n := propStr(c)
				b, c = append(appendJSONString(b, key), ':'), c[n:]
			}
			l := valueLen(c)
			var err error
			if b, err = appendRaw(b, c[:l]); err != nil {
				return nil, err
			}
			c = c[l:]
		}
		return append(b, close), nil
	}
	v, _ := decodeValue(raw)
	return appendValue(b, v)
}

// appendValue writes one property value as encoding/json does.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case float64:
		if !finite(x) {
			return nil, fmt.Errorf("json: unsupported value: %v", x)
		}
		return appendJSONFloat(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	}
	vb, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, vb...), nil
}

// CoordFactor sets the precision of every coordinate on the wire: degrees
// are rounded to 1/CoordFactor, 7 decimals (about 1 cm), when a feature is
// encoded. The twin keeps full precision; more digits on the wire only
// cost bytes (CONTRACT §2: WGS84 lon/lat).
const CoordFactor = 1e7

// roundCoord rounds degrees as orb.Round(g, CoordFactor) does.
func roundCoord(x float64) float64 { return math.Round(x*CoordFactor) / CoordFactor }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// appendJSONFloat formats x as encoding/json does.
func appendJSONFloat(b []byte, x float64) []byte {
	abs := math.Abs(x)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, x, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (for handlers that write their answers by hand).
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }

// appendJSONString quotes s as encoding/json does with HTML escaping:
// <, > and & as \u00XX, control characters escaped, invalid UTF-8 as
// U+FFFD, and U+2028/U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
