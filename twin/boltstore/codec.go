package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/wkb"
)

// Feature record layout (all integers varint unless noted). Version comes
// first so Upsert can compare versions without decoding the rest:
//
//	version, updated ns (0 = zero time), observed ns, grid, source,
//	len(region) then each code, len(cells) then each cell (8 bytes LE),
//	len(wkb) then WKB geometry (0 = nil geometry), then the props to the
//	end: propsPacked and the twin's packed form (twin.AppendPackedProps),
//	or a JSON object (what every record held before the packed form, and
//	for props the packed form cannot vouch for: a NaN, invalid UTF-8).
//
// Strings are a length then bytes.

var errShort = errors.New("truncated record")

// propsPacked starts props in the twin's packed form; a JSON object
// starts with '{'. Copying the packed bytes instead of writing JSON took
// the store writer's encoding of an alert (a 50-entry history, 5.7 KB of
// JSON) from a walk of every value to two copies (issue 16 goal 1), and
// a load no longer parses JSON.
const propsPacked = 0

func encodeFeature(b []byte, f *twin.Feature) ([]byte, error) {
	b = binary.AppendUvarint(b, f.Version)
	b = binary.AppendVarint(b, int64(f.Updated))
	b = binary.AppendVarint(b, int64(f.Observed))
	b = appendString(b, f.Grid())
	b = appendString(b, f.Source())
	b = binary.AppendUvarint(b, uint64(len(f.Region())))
	for _, r := range f.Region() {
		b = appendString(b, r)
	}
	cells := f.Cells()
	b = binary.AppendUvarint(b, uint64(len(cells)))
	for _, c := range cells {
		b = binary.LittleEndian.AppendUint64(b, c)
	}
	if f.Geometry == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		g, err := wkb.Marshal(f.Geometry, binary.LittleEndian)
		if err != nil {
			return nil, fmt.Errorf("encode geometry: %w", err)
		}
		b = binary.AppendUvarint(b, uint64(len(g)))
		b = append(b, g...)
	}
	if f.Props.Len() > 0 {
		if pb, ok := twin.AppendPackedProps(append(b, propsPacked), f.Props); ok {
			return pb, nil
		}
		var err error
		if b, err = f.Props.AppendJSON(b); err != nil {
			return nil, fmt.Errorf("encode props: %w", err)
		}
	}
	return b, nil
}

// reader walks a record; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) f64() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// decodeFeature decodes a record; v may be bbolt's mmap'd memory, so nothing
// returned aliases it. in (nil for none) shares places between the
// features of one load.
func decodeFeature(id twin.ID, v []byte, in *twin.PlaceCache) (*twin.Feature, error) {
	r := &reader{b: v}
	f := &twin.Feature{ID: id}
	f.Version = r.uvarint()
	f.Updated = twin.Stamp(r.varint())
	f.Observed = twin.Stamp(r.varint())
	grid := r.bytes()
	if src := r.bytes(); len(src) > 0 {
		f.SetSource(string(src))
	}
	region := r.b
	if n := r.uvarint(); n > 0 && n <= uint64(len(r.b)) {
		for range n {
			r.bytes()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	place, err := in.Get(grid, region[:len(region)-len(r.b)], decodeRegion)
	if err != nil {
		return nil, err
	}
	f.Place = place
	if n := r.uvarint(); n > 0 && r.err == nil {
		if n*8 > uint64(len(r.b)) {
			return nil, errShort
		}
		if n == 1 {
			f.SetCell(binary.LittleEndian.Uint64(r.b))
		} else {
			cells := make([]uint64, n)
			for i := range cells {
				cells[i] = binary.LittleEndian.Uint64(r.b[i*8:])
			}
			f.SetCells(cells)
		}
		r.b = r.b[n*8:]
	}
	g := r.bytes()
	if r.err != nil {
		return nil, r.err
	}
	if len(g) > 0 {
		geom, err := wkb.Unmarshal(g)
		if err != nil {
			return nil, fmt.Errorf("decode geometry: %w", err)
		}
		// A damaged record may still be WKB: a NaN or a lon of 1e300 would
		// go into the spatial index as it is (FuzzDecodeFeature).
		if err := twin.ValidCoords(geom); err != nil {
			return nil, fmt.Errorf("decode geometry: %w", err)
		}
		f.Geometry = geom
	}
	if len(r.b) > 0 && r.b[0] == propsPacked {
		p, rest, err := twin.ReadPackedProps(r.b[1:])
		if err == nil && len(rest) > 0 {
			err = errors.New("bytes after the props")
		}
		if err != nil {
			return nil, fmt.Errorf("decode props: %w", err)
		}
		f.Props = p
	} else if len(r.b) > 0 {
		// Straight into the packed form the twin holds: no map, boxed
		// numbers or strings per object, dropped between the objects
		// kept (twin.PackJSON).
		p, err := twin.PackJSON(r.b)
		if err != nil {
			return nil, fmt.Errorf("decode props: %w", err)
		}
		f.Props = p
	}
	return f, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Sample record: a flags byte, then the present fields as 8-byte LE floats
// (lon, lat, speed, heading), then values JSON to the end.
const (
	hasPos = 1 << iota
	hasSpeed
	hasHeading
)

func encodeSample(b []byte, s twin.Sample) ([]byte, error) {
	var flags byte
	if s.HasPos {
		flags |= hasPos
	}
	if s.HasSpeed {
		flags |= hasSpeed
	}
	if s.HasHeading {
		flags |= hasHeading
	}
	b = append(b, flags)
	put := func(f float64) { b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f)) }
	if s.HasPos {
		put(s.Pos[0])
		put(s.Pos[1])
	}
	if s.HasSpeed {
		put(s.SpeedKmh)
	}
	if s.HasHeading {
		put(s.Heading)
	}
	if !s.Values.IsZero() {
		// The JSON of a map[string]float64, as before readings were packed.
		var err error
		if b, err = s.Values.AppendJSON(b); err != nil {
			return nil, fmt.Errorf("encode values: %w", err)
		}
	}
	return b, nil
}

func decodeSample(id twin.ID, ts time.Time, v []byte) (twin.Sample, error) {
	s := twin.Sample{ID: id, Time: ts}
	if len(v) == 0 {
		return s, errShort
	}
	flags := v[0]
	r := &reader{b: v[1:]}
	if flags&hasPos != 0 {
		s.HasPos = true
		s.Pos = orb.Point{r.f64(), r.f64()}
	}
	if flags&hasSpeed != 0 {
		s.HasSpeed, s.SpeedKmh = true, r.f64()
	}
	if flags&hasHeading != 0 {
		s.HasHeading, s.Heading = true, r.f64()
	}
	if r.err != nil {
		return s, r.err
	}
	if len(r.b) > 0 {
		if err := json.Unmarshal(r.b, &s.Values); err != nil {
			return s, fmt.Errorf("decode values: %w", err)
		}
	}
	return s, nil
}

// decodeRegion decodes a record's region bytes: the count then each code
// (a uvarint length then its bytes), checked by the caller; a count the
// bytes cannot hold reads as no codes.
func decodeRegion(region []byte) ([]string, error) {
	r := &reader{b: region}
	var codes []string
	if n := r.uvarint(); n > 0 && n <= uint64(len(r.b)) {
		codes = make([]string, n)
		for i := range codes {
			codes[i] = string(r.bytes())
		}
	}
	return codes, nil
}
