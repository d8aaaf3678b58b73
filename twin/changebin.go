package twin

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// The change log's binary record: what AppendChange writes (issue 16 goal
// 1). It carries exactly what the JSON record carries (changecodec.go) and
// decodes to the same Change, but is written from the twin's own
// representation: times as Unix ns, coordinates as float64 bits (full
// precision), props as the packed form's bytes (Props.Pack), copied. A
// moving vehicle's JSON record was ~300 bytes, a third of them RFC 3339
// times and shortest-digit floats; the leader formatted every change, and
// JetStream copied, stored (a pwrite per record) and parsed every byte:
// about a tenth of the server's CPU under HTTP telemetry.
//
// Its first byte is changeBinary; a JSON record starts with '{', so
// UnmarshalChange reads both, and a log written before it is read still.
// A server older than this one cannot read it: in a replicated twin,
// upgrade the followers before the leader. Layout, integers varint unless
// noted, strings a uvarint length then bytes:
//
//	changeBinary, seq (uvarint), kind (byte), flags (byte: chgNew,
//	chgSample, chgTime), [time ns], layer, name,
//	when chgNew: version (uvarint), updated ns, observed ns (Stamps),
//	  len(region) (uvarint) then each code, grid, len(cells) (uvarint)
//	  then each (uvarint), source,
//	  geometry kind: featGeomNone | featGeomPoint lon lat (float64 bits,
//	    LE) | chgGeomJSON (string: GeoJSON, as the JSON record has it),
//	  props kind: featPropsPacked keys values (as Props packs them;
//	    checked when read) | featPropsJSON (string: a JSON object),
//	when chgSample: flags (byte: smpTime, smpPos, smpSpeed, smpHeading),
//	  [time ns], lon lat speed heading (float64 bits, LE),
//	  len(values) (uvarint) then each name and value (float64 bits, LE).
//
// Props are packed only when the packed values are ones a JSON round trip
// keeps (float64, string, bool, null, lists and maps of them; finite,
// valid UTF-8): a follower then holds the types the JSON record gave it,
// and a restart from the store gives (numbers as float64, lists as []any).
// Other props go as their JSON object. A change the binary form does not
// write (a time outside Unix ns, a non-finite number) is written as JSON.
const changeBinary byte = 0x01

// Record flags.
const (
	chgNew    byte = 1 << iota // the new state follows
	chgSample                  // the telemetry sample follows
	chgTime                    // the change's time is set (else the zero time)
)

// Sample flags.
const (
	smpTime byte = 1 << iota
	smpPos
	smpSpeed
	smpHeading
)

// chgGeomJSON is a geometry other than a point, as GeoJSON.
const chgGeomJSON byte = 0x10

// appendChangeBinary appends c's binary record; ok is false for a change
// it does not write (the caller writes JSON then).
func appendChangeBinary(b []byte, c *Change) (_ []byte, ok bool) {
	start := len(b)
	id := c.ID()
	var flags byte
	if c.Kind == Upsert && c.New != nil {
		flags |= chgNew
	}
	if c.Sample != nil {
		flags |= chgSample
	}
	if !c.Time.IsZero() {
		flags |= chgTime
	}
	b = append(b, changeBinary)
	b = binary.AppendUvarint(b, c.Seq)
	b = append(b, byte(c.Kind), flags)
	if flags&chgTime != 0 {
		if b, ok = appendTimeNs(b, c.Time); !ok {
			return b[:start], false
		}
	}
	b = appendStr(b, string(id.Layer))
	b = appendStr(b, id.Name)
	if flags&chgNew != 0 {
		if b, ok = appendLogFeature(b, c.New); !ok {
			return b[:start], false
		}
	}
	if flags&chgSample != 0 {
		if b, ok = appendLogSample(b, c.Sample); !ok {
			return b[:start], false
		}
	}
	return b, true
}

// appendTimeNs writes t as varint Unix ns; false outside their range.
func appendTimeNs(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 1678 || y > 2261 {
		return b, false
	}
	return binary.AppendVarint(b, t.UnixNano()), true
}

func appendLogFeature(b []byte, f *Feature) ([]byte, bool) {
	b = binary.AppendUvarint(b, f.Version)
	b = binary.AppendVarint(b, int64(f.Updated))
	b = binary.AppendVarint(b, int64(f.Observed))
	region := f.Region()
	b = binary.AppendUvarint(b, uint64(len(region)))
	for _, r := range region {
		b = appendStr(b, r)
	}
	b = appendStr(b, f.Grid())
	cells := f.Cells()
	b = binary.AppendUvarint(b, uint64(len(cells)))
	for _, c := range cells {
		b = binary.AppendUvarint(b, c)
	}
	b = appendStr(b, f.Source())
	switch g := f.Geometry.(type) {
	case nil:
		b = append(b, featGeomNone)
	case orb.Point:
		if !finite(g[0]) || !finite(g[1]) {
			return b, false
		}
		b = append(b, featGeomPoint)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(g[0]))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(g[1]))
	default:
		j, err := geojson.NewGeometry(g).MarshalJSON()
		if err != nil {
			return b, false
		}
		if string(j) == "null" { // an empty collection: none, as the JSON record reads it
			b = append(b, featGeomNone)
			break
		}
		b = append(b, chgGeomJSON)
		b = appendStr(b, string(j))
	}
	if pb, ok := AppendPackedProps(append(b, featPropsPacked), f.Props); ok {
		return pb, true
	}
	b = append(b, featPropsJSON)
	at := len(b)
	b, err := appendProps(b, f.Props, nil)
	if err != nil {
		return b, false
	}
	obj := string(b[at:])
	return appendStr(b[:at], obj), true
}

func appendLogSample(b []byte, s *Sample) ([]byte, bool) {
	var flags byte
	if !s.Time.IsZero() {
		flags |= smpTime
	}
	if s.HasPos {
		flags |= smpPos
	}
	if s.HasSpeed {
		flags |= smpSpeed
	}
	if s.HasHeading {
		flags |= smpHeading
	}
	b = append(b, flags)
	if flags&smpTime != 0 {
		var ok bool
		if b, ok = appendTimeNs(b, s.Time); !ok {
			return b, false
		}
	}
	for _, v := range [4]float64{s.Pos[0], s.Pos[1], s.SpeedKmh, s.Heading} {
		if !finite(v) {
			return b, false
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	// Sorted by name since readings are packed; before, in map order: the
	// reader takes either.
	b = binary.AppendUvarint(b, uint64(s.Values.Len()))
	for k, v := range s.Values.All() {
		if !finite(v) {
			return b, false
		}
		b = appendStr(b, k)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b, true
}

// jsonTypedBytes is jsonTyped of b, not copied.
func jsonTypedBytes(b []byte) bool { return jsonTyped(unsafe.String(unsafe.SliceData(b), len(b))) }

// jsonTyped reports whether the packed values in data are all ones a JSON
// round trip gives back as they are: finite float64, valid UTF-8 strings,
// bools, null, and lists and maps of these.
func jsonTyped(data string) bool {
	for data != "" {
		n := valueLen(data)
		if n > len(data) || !jsonTypedValue(data[:n], false) {
			return false
		}
		data = data[n:]
	}
	return true
}

// jsonTypedValue is jsonTyped of one value; ascii tells that every byte
// of it is below 0x80, so its strings are valid UTF-8 without a look. A
// list or a map is scanned for that once, whole: an alert's 50-entry
// history checked string by string was most of the change log's cost of
// an alert's change (issue 16 goal 1).
func jsonTypedValue(v string, ascii bool) bool {
	switch v[0] {
	case tagNull, tagFalse, tagTrue, tagF64Int, tagF64Tenths:
		return true
	case tagF64:
		return finite(math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[1:9]))))
	case tagStr:
		s, _ := propStr(v[1:])
		return ascii || utf8.ValidString(s)
	case tagList, tagMap:
		body, w := propUvarint(v[1:])
		c := v[1+w : 1+w+int(body)]
		ascii = ascii || isASCII(c)
		cnt, k := propUvarint(c)
		c = c[k:]
		for range cnt {
			if v[0] == tagMap {
				key, n := propStr(c)
				if !ascii && !utf8.ValidString(key) {
					return false
				}
				c = c[n:]
			}
			if c == "" {
				return false
			}
			n := valueLen(c)
			if n > len(c) || !jsonTypedValue(c[:n], ascii) {
				return false
			}
			c = c[n:]
		}
		return true
	}
	return false
}

// isASCII reports whether every byte of s is below 0x80, eight at a time.
func isASCII(s string) bool {
	for len(s) >= 8 {
		if binary.LittleEndian.Uint64([]byte(s[:8]))&0x8080808080808080 != 0 {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// unmarshalChangeBinary reads what appendChangeBinary wrote; nothing of b
// is kept.
func unmarshalChangeBinary(b []byte) (Change, error) {
	rd := recReader{b: b[1:]}
	c := Change{Seq: rd.uvarint(), Kind: ChangeKind(rd.byte())}
	flags := rd.byte()
	if flags&chgTime != 0 {
		c.Time = time.Unix(0, rd.varint()).UTC()
	}
	layer, name := string(rd.str()), string(rd.str())
	if rd.err != nil {
		return Change{}, fmt.Errorf("twin: decode change: %w", rd.err)
	}
	l, err := ParseStoredLayer(layer)
	if err != nil {
		return Change{}, fmt.Errorf("twin: decode change %d: %w", c.Seq, err)
	}
	id := ID{Layer: l, Name: name}
	var f *Feature
	if flags&chgNew != 0 {
		if f, err = readLogFeature(&rd, id); err != nil {
			return Change{}, fmt.Errorf("twin: decode change %d: %w", c.Seq, err)
		}
	}
	if flags&chgSample != 0 {
		c.Sample = readLogSample(&rd, id)
	}
	if rd.err != nil || len(rd.b) != 0 {
		return Change{}, fmt.Errorf("twin: decode change %d: %w", c.Seq, errBadFeature)
	}
	switch c.Kind {
	case Upsert:
		if f == nil {
			return Change{}, fmt.Errorf("twin: decode change %d: upsert without a state", c.Seq)
		}
		c.New = f
	case Remove, History:
		c.Old = &Feature{ID: id} // for ID(); Install replaces it
	default:
		return Change{}, fmt.Errorf("twin: decode change %d: unknown kind %d", c.Seq, c.Kind)
	}
	return c, nil
}

func readLogFeature(rd *recReader, id ID) (*Feature, error) {
	f := &Feature{ID: id, Version: rd.uvarint(), Updated: Stamp(rd.varint()), Observed: Stamp(rd.varint())}
	n := rd.uvarint()
	if n > uint64(len(rd.b)) {
		return nil, errBadFeature
	}
	var region []string
	if n > 0 {
		region = make([]string, n)
		for i := range region {
			region[i] = string(rd.str())
		}
	}
	f.Place = NewPlace(region, string(rd.str()))
	if n = rd.uvarint(); n > uint64(len(rd.b)) {
		return nil, errBadFeature
	}
	if n > 0 {
		cells := make([]uint64, n)
		for i := range cells {
			cells[i] = rd.uvarint()
		}
		f.SetCells(cells)
	}
	f.SetSource(string(rd.str()))
	switch rd.byte() {
	case featGeomNone:
	case featGeomPoint:
		p := orb.Point{rd.f64(), rd.f64()}
		if !finite(p[0]) || !finite(p[1]) {
			return nil, fmt.Errorf("%w: point", errBadFeature)
		}
		f.Geometry = p
	case chgGeomJSON:
		j := rd.str()
		if rd.err != nil || string(j) == "null" {
			break
		}
		g, err := geojson.UnmarshalGeometry(j)
		if err != nil {
			return nil, fmt.Errorf("geometry: %w", err)
		}
		if f.Geometry = g.Geometry(); f.Geometry == nil {
			return nil, fmt.Errorf("geometry without coordinates")
		}
	default:
		rd.fail()
	}
	switch rd.byte() {
	case featPropsPacked:
		keys, data := rd.str(), rd.str()
		if rd.err == nil {
			var ok bool
			if f.Props, ok = unpackChecked(keys, data); !ok {
				return nil, fmt.Errorf("%w: props", errBadFeature)
			}
		}
	case featPropsJSON:
		obj := rd.str()
		if rd.err == nil {
			if err := f.Props.UnmarshalJSON(obj); err != nil {
				return nil, fmt.Errorf("props: %w", err)
			}
		}
	default:
		rd.fail()
	}
	return f, rd.err
}

func readLogSample(rd *recReader, id ID) *Sample {
	s := &Sample{ID: id}
	flags := rd.byte()
	if flags&smpTime != 0 {
		s.Time = time.Unix(0, rd.varint()).UTC()
	}
	s.HasPos, s.HasSpeed, s.HasHeading = flags&smpPos != 0, flags&smpSpeed != 0, flags&smpHeading != 0
	s.Pos = orb.Point{rd.f64(), rd.f64()}
	s.SpeedKmh, s.Heading = rd.f64(), rd.f64()
	if !finite(s.Pos[0]) || !finite(s.Pos[1]) || !finite(s.SpeedKmh) || !finite(s.Heading) {
		rd.fail() // the JSON record cannot hold them either
	}
	n := rd.uvarint()
	if n > uint64(len(rd.b)) {
		rd.fail()
		return s
	}
	s.Values = readLogReadings(rd, n)
	return s
}

// readLogReadings reads a sample's n readings: in name order, as written
// since readings are packed, or in map order, as before (of a name twice,
// a corrupt record's, the last wins, as in the map the old reader made).
func readLogReadings(rd *recReader, n uint64) Readings {
	var rb ReadingsBuilder
	for range n {
		k := rd.str()
		v := rd.f64()
		if !finite(v) {
			rd.fail()
		}
		if rd.err != nil {
			return Readings{}
		}
		rb.Set(unsafe.String(unsafe.SliceData(k), len(k)), v) // copied by Set
	}
	return rb.Readings()
}
