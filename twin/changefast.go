package twin

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendChange writes the change log record of lc as encoding/json would
// (same fields, same names; UnmarshalChange reads either), without
// reflection: json.Marshal of the envelope was most of MarshalChange,
// which the leader runs once per change. Only the props go through
// encoding/json. ok is false for what it does not write itself (a
// non-finite number): the caller then uses json.Marshal, which reports it.
// The state f and sample s are given apart from the envelope (whose New
// and Sample it ignores), so a caller's parts on the stack stay there.
func appendChange(b []byte, lc *logChange, f *logFeature, s *logSample) (_ []byte, ok bool) {
	var tm timeMemo
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, lc.Seq, 10)
	b = append(b, `,"k":`...)
	b = strconv.AppendUint(b, uint64(lc.Kind), 10)
	b = append(b, `,"t":`...)
	if b, ok = tm.append(b, lc.Time); !ok {
		return b, false
	}
	b = append(b, `,"l":`...)
	b = appendString(b, string(lc.Layer))
	b = append(b, `,"n":`...)
	b = appendString(b, lc.Name)
	if f != nil {
		b = append(b, `,"new":{`...)
		if f.isPoint {
			b = append(b, `"g":`...)
			b = appendPointJSON(b, f.point)
			b = append(b, ',')
		} else if len(f.Geometry) > 0 {
			b = append(b, `"g":`...)
			b = append(b, f.Geometry...)
			b = append(b, ',')
		}
		b = append(b, `"p":`...)
		var err error
		if b, err = f.Props.AppendJSON(b); err != nil { // packed props written from their bytes
			return b, false
		}
		b = append(b, `,"v":`...)
		b = strconv.AppendUint(b, f.Version, 10)
		b = append(b, `,"u":`...)
		if b, ok = tm.append(b, f.Updated); !ok {
			return b, false
		}
		b = append(b, `,"o":`...)
		if b, ok = tm.append(b, f.Observed); !ok {
			return b, false
		}
		if len(f.Region) > 0 {
			b = append(b, `,"r":[`...)
			for i, r := range f.Region {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, r)
			}
			b = append(b, ']')
		}
		if f.Grid != "" {
			b = append(b, `,"grid":`...)
			b = appendString(b, f.Grid)
		}
		if len(f.Cells) > 0 {
			b = append(b, `,"c":[`...)
			for i, c := range f.Cells {
				if i > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendUint(b, c, 10)
			}
			b = append(b, ']')
		}
		if f.Source != "" {
			b = append(b, `,"src":`...)
			b = appendString(b, f.Source)
		}
		b = append(b, '}')
	}
	if s != nil {
		b = append(b, `,"s":{"t":`...)
		if b, ok = tm.append(b, s.Time); !ok {
			return b, false
		}
		if s.HasPos {
			b = append(b, `,"hp":true`...)
		}
		b = append(b, `,"p":[`...)
		if b, ok = appendFloat(b, s.Pos[0]); !ok {
			return b, false
		}
		b = append(b, ',')
		if b, ok = appendFloat(b, s.Pos[1]); !ok {
			return b, false
		}
		b = append(b, ']')
		if s.HasSpeed {
			b = append(b, `,"hs":true`...)
		}
		if s.SpeedKmh != 0 {
			b = append(b, `,"sp":`...)
			if b, ok = appendFloat(b, s.SpeedKmh); !ok {
				return b, false
			}
		}
		if s.HasHeading {
			b = append(b, `,"hh":true`...)
		}
		if s.Heading != 0 {
			b = append(b, `,"hd":`...)
			if b, ok = appendFloat(b, s.Heading); !ok {
				return b, false
			}
		}
		if !s.Values.IsZero() {
			b = append(b, `,"vals":{`...)
			i := 0
			for k, v := range s.Values.All() { // sorted, as json sorts a map's keys
				if i > 0 {
					b = append(b, ',')
				}
				i++
				b = appendString(b, k)
				b = append(b, ':')
				if b, ok = appendFloat(b, v); !ok {
					return b, false
				}
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendTime writes t as time.Time.MarshalJSON does (RFC 3339, ns).
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// timeMemo writes a change's times, which are mostly one instant (the
// change's, the state's updated and observed, the sample's): an instant
// equal to the last one written is copied, not formatted again.
type timeMemo struct {
	t      time.Time
	lo, hi int // where its text is in the record
}

func (m *timeMemo) append(b []byte, t time.Time) ([]byte, bool) {
	// Same instant and same zone: the text would be the same.
	if m.hi > 0 && t.Equal(m.t) && t.Location() == m.t.Location() {
		return append(b, b[m.lo:m.hi]...), true
	}
	lo := len(b)
	b, ok := appendTime(b, t)
	if ok {
		m.t, m.lo, m.hi = t, lo, len(b)
	}
	return b, ok
}

// appendFloat writes a finite f as a JSON number (any valid number reads
// back to the same float64).
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64), true
}

// appendPointJSON writes p as a GeoJSON Point, byte for byte what orb's
// geojson marshaller (through encoding/json) writes, without its
// allocations: most changes are moving points, and this was a quarter of
// MarshalChange. p's coordinates must be finite.
func appendPointJSON(b []byte, p [2]float64) []byte {
	b = append(b, `{"type":"Point","coordinates":[`...)
	b = appendJSONFloat(b, p[0])
	b = append(b, ',')
	b = appendJSONFloat(b, p[1])
	return append(b, "]}"...)
}

// appendString writes s as a JSON string: plain printable ASCII as it is,
// anything else through encoding/json (escapes, invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
