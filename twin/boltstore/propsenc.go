package boltstore

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// appendProps appends props as a JSON object, as twin.PackJSON reads it back.
// Why by hand: the writer re-encodes every moved object's props at each
// flush, and json.Marshal of the map (reflection, sorted keys, a fresh
// buffer) was 6% of server CPU at 50,000 msgs/s. Keys are written in map
// order (the record is not compared byte-wise); strings, float64, bool and
// nil are written directly, any other value through json.Marshal. Like
// json.Marshal it refuses NaN and infinities, and writes invalid UTF-8 as
// U+FFFD.
func appendProps(b []byte, props map[string]any) ([]byte, error) {
	b = append(b, '{')
	first := true
	for k, v := range props {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONStr(b, k)
		b = append(b, ':')
		switch x := v.(type) {
		case nil:
			b = append(b, "null"...)
		case string:
			b = appendJSONStr(b, x)
		case bool:
			b = strconv.AppendBool(b, x)
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("json: unsupported value: %v (prop %q)", x, k)
			}
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		default:
			j, err := json.Marshal(x)
			if err != nil {
				return nil, fmt.Errorf("prop %q: %w", k, err)
			}
			b = append(b, j...)
		}
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONStr quotes s for JSON: '"', '\\' and control characters
// escaped, invalid UTF-8 as U+FFFD.
func appendJSONStr(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
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
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
