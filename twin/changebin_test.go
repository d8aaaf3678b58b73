package twin

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/paulmach/orb"
)

// TestChangeBinaryMatchesJSON: the binary change record decodes to what
// the JSON record of the same change decodes to (props with the types a
// JSON round trip gives, full-precision coordinates, times as instants),
// and is the smaller; a change it cannot write goes as JSON.
func TestChangeBinaryMatchesJSON(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CST", 8*3600))
	v := NewID(Vehicles, "渝A·12345")
	point := &Feature{ID: v, Geometry: orb.Point{106.123456789012345, 29.000000000001},
		Props: NewProps(map[string]any{"kind": "bus", "speed": 42.3, "n": 3.0, "load": 0.123456789, "ok": true, "none": nil,
			"tags": []any{"a", 1.5, map[string]any{"x": "y"}}}).Pack(),
		Version: 9, Updated: StampOf(ts), Observed: StampOf(ts.Add(-time.Second)), Place: NewPlace([]string{"500000", "500103"}, "g7")}
	point.SetCells([]uint64{1, math.MaxUint64})
	point.SetSource("gps")
	// Go types JSON does not keep: they come back as float64 and []any,
	// as from the JSON record.
	typed := &Feature{ID: v, Geometry: orb.Point{106.5, 29.5}, Version: 2,
		Props: NewProps(map[string]any{"n": 3, "i64": int64(-4), "f32": float32(1.5), "names": []string{"a", "b"}}).Pack()}
	road := &Feature{ID: NewID(Roads, "r1"), Geometry: orb.LineString{{106.123456789012, 29.1}, {106.2, 29.2}},
		Props: NewProps(map[string]any{"name": "解放碑"}), Version: 1}
	sample := &Sample{ID: v, Time: ts, HasPos: true, Pos: orb.Point{106.1, -29.000000000001}, HasSpeed: true, SpeedKmh: 33.3,
		HasHeading: true, Heading: 359.9, Values: ReadingsOf(map[string]float64{"co": 0.1, "pm25": -2e300})}
	changes := []Change{
		{Seq: 1, Kind: Upsert, Time: ts, New: point, Sample: sample},
		{Seq: 2, Kind: Upsert, Time: ts, New: typed},
		{Seq: 3, Kind: Upsert, New: road},
		{Seq: 4, Kind: Upsert, Time: ts, New: &Feature{ID: v}},
		{Seq: 5, Kind: Remove, Time: ts, Old: point},
		{Seq: 6, Kind: History, Time: ts, Old: point, Sample: &Sample{ID: v, Pos: orb.Point{1, 2}}},
	}
	for _, c := range changes {
		bin, err := MarshalChange(&c)
		if err != nil || bin[0] != changeBinary {
			t.Fatalf("change %d: not binary (%v): %q", c.Seq, err, bin)
		}
		js, err := appendChangeJSONRecord(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		if len(bin) >= len(js) {
			t.Errorf("change %d: binary %d bytes, JSON %d", c.Seq, len(bin), len(js))
		}
		a, err := UnmarshalChange(bin)
		if err != nil {
			t.Fatalf("change %d: %v", c.Seq, err)
		}
		b, err := UnmarshalChange(js)
		if err != nil {
			t.Fatal(err)
		}
		sameChange(t, a, b)
	}

	// A NaN prop: the binary form leaves it to JSON, which drops it and
	// says so.
	bad := Change{Seq: 7, Kind: Upsert, Time: ts, New: &Feature{ID: v, Props: NewProps(map[string]any{"x": math.NaN(), "y": 1.0}).Pack()}}
	out, err := MarshalChange(&bad)
	if err == nil || len(out) == 0 || out[0] != '{' {
		t.Fatalf("NaN prop: %v %q", err, out)
	}
	if d, err := UnmarshalChange(out); err != nil || d.New.Props.Has("x") || !d.New.Props.Has("y") {
		t.Fatalf("NaN prop decoded: %v %v", err, d.New)
	}
	// A time a Unix ns cannot hold goes as JSON too.
	old := Change{Seq: 8, Kind: Remove, Time: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), Old: point}
	if out, err := MarshalChange(&old); err != nil || out[0] != '{' {
		t.Fatalf("year 1600: %v %q", err, out)
	}
}

// sameChange fails unless a and b are the same change: equal instants,
// and props equal with the same Go types.
//
// Props are compared by their values, never by reflect.DeepEqual: a
// packed form is two pointers, and DeepEqual would compare the first byte
// of the values only (and a map form's address).
func sameChange(t *testing.T, a, b Change) {
	t.Helper()
	if a.Seq != b.Seq || a.Kind != b.Kind || !a.Time.Equal(b.Time) || a.ID() != b.ID() {
		t.Fatalf("change %d: envelope %+v vs %+v", a.Seq, a, b)
	}
	if (a.New == nil) != (b.New == nil) {
		t.Fatalf("change %d: new %v vs %v", a.Seq, a.New, b.New)
	}
	if a.New != nil {
		x, y := *a.New, *b.New
		if !reflect.DeepEqual(x.Props.Map(), y.Props.Map()) {
			t.Fatalf("change %d: props %#v vs %#v", a.Seq, x.Props.Map(), y.Props.Map())
		}
		if !sameFeature(&x, &y) {
			t.Fatalf("change %d: state\n%+v\n%+v", a.Seq, x, y)
		}
	}
	if (a.Sample == nil) != (b.Sample == nil) {
		t.Fatalf("change %d: sample %v vs %v", a.Seq, a.Sample, b.Sample)
	}
	if a.Sample != nil {
		x, y := *a.Sample, *b.Sample
		if !x.Time.Equal(y.Time) {
			t.Fatalf("change %d: sample time %v vs %v", a.Seq, x.Time, y.Time)
		}
		x.Time, y.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("change %d: sample\n%+v\n%+v", a.Seq, x, y)
		}
	}
}

// TestChangeBinaryOldReadings: a record written before readings were
// packed has them in map order, maybe a name twice (a corrupt one): it
// reads as the old reader read it, into a map (the last value wins).
func TestChangeBinaryOldReadings(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := NewID(Devices, "gas-1")
	vals := map[string]float64{"a": 1, "b": 2.5, "c": -3}
	c := Change{Seq: 1, Kind: History, Time: ts, Old: &Feature{ID: v}, Sample: &Sample{ID: v, Time: ts, Values: ReadingsOf(vals)}}
	rec, err := MarshalChange(&c)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(k string, x float64) []byte {
		return binary.LittleEndian.AppendUint64(appendStr(nil, k), math.Float64bits(x))
	}
	sorted := slices.Concat(entry("a", 1), entry("b", 2.5), entry("c", -3))
	at := bytes.Index(rec, sorted)
	if at < 0 {
		t.Fatalf("record %q does not hold the readings in name order", rec)
	}
	for _, tc := range []struct {
		wire []byte
		want map[string]float64
	}{
		{slices.Concat(entry("c", -3), entry("a", 1), entry("b", 2.5)), vals},
		{slices.Concat(entry("b", 2.5), entry("c", -3), entry("a", 1)), vals},
		{slices.Concat(entry("a", 1), entry("c", 7), entry("c", -3)), map[string]float64{"a": 1, "c": -3}},
	} {
		old := slices.Concat(rec[:at], tc.wire, rec[at+len(sorted):])
		got, err := UnmarshalChange(old)
		if err != nil {
			t.Fatal(err)
		}
		if want := ReadingsOf(tc.want); got.Sample.Values != want {
			t.Errorf("wire %q: readings %v, want %v", tc.wire, got.Sample.Values, want)
		}
	}
}

// BenchmarkChangeReadings: a History change with a sample of two
// readings, encoded (binary) and decoded.
func BenchmarkChangeReadings(b *testing.B) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 123456789, time.UTC)
	id := ID{Layer: "devices", Name: "gas-42"}
	c := &Change{Seq: 123456, Kind: History, Time: now, Old: &Feature{ID: id}, New: &Feature{ID: id},
		Sample: &Sample{ID: id, Time: now, Values: ReadingsOf(map[string]float64{"ch4": 1.25, "h2s": 0.02})}}
	rec, err := AppendChange(nil, c)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = AppendChange(buf[:0], c)
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := UnmarshalChange(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sameFeature reports whether a and b hold the same state: props with the
// same values of the same Go types, everything else as DeepEqual sees it.
func sameFeature(a, b *Feature) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !reflect.DeepEqual(a.Props.Map(), b.Props.Map()) {
		return false
	}
	x, y := *a, *b
	x.Props, y.Props = Props{}, Props{}
	return reflect.DeepEqual(x, y)
}

// TestJSONTypedASCII: jsonTyped, which skips the UTF-8 check of a list's
// or map's strings when all of its bytes are ASCII, answers as a check of
// every string would, over random packed values (seeded).
func TestJSONTypedASCII(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	strs := []string{"", "a", "fired", "2026-12-05T00:00:00Z", "渝A·12345", "\xff", "a\xc3", "\xc3\xa9", strings.Repeat("x", 200)}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(9); {
		case k == 0 && depth < 3:
			l := make([]any, rng.IntN(5))
			for i := range l {
				l[i] = value(depth + 1)
			}
			return l
		case k == 1 && depth < 3:
			m := map[string]any{}
			for range rng.IntN(5) {
				m[strs[rng.IntN(len(strs))]] = value(depth + 1)
			}
			return m
		case k == 2:
			return rng.Float64() * 1e6
		case k == 3:
			return int64(rng.IntN(1000))
		case k == 4:
			return math.NaN()
		case k == 5:
			return rng.IntN(2) == 0
		default:
			return strs[rng.IntN(len(strs))]
		}
	}
	// Every string checked: what jsonTyped answered before.
	var slow func(v string) bool
	slow = func(v string) bool {
		switch v[0] {
		case tagNull, tagFalse, tagTrue, tagF64Int, tagF64Tenths:
			return true
		case tagF64:
			return finite(math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[1:9]))))
		case tagStr:
			s, _ := propStr(v[1:])
			return utf8.ValidString(s)
		case tagList, tagMap:
			body, w := propUvarint(v[1:])
			c := v[1+w : 1+w+int(body)]
			cnt, k := propUvarint(c)
			c = c[k:]
			for range cnt {
				if v[0] == tagMap {
					key, n := propStr(c)
					if !utf8.ValidString(key) {
						return false
					}
					c = c[n:]
				}
				n := valueLen(c)
				if !slow(c[:n]) {
					return false
				}
				c = c[n:]
			}
			return true
		}
		return false
	}
	typed := 0
	for range 3000 {
		m := map[string]any{}
		for range 1 + rng.IntN(4) {
			m[strs[rng.IntN(len(strs))]] = value(0)
		}
		p := NewProps(m).Pack()
		if !p.packed() {
			continue
		}
		data, want := p.values(), true
		for d := data; d != ""; {
			n := valueLen(d)
			want = want && slow(d[:n])
			d = d[n:]
		}
		if got := jsonTyped(data); got != want {
			t.Fatalf("jsonTyped(%v) = %v, every string checked says %v", m, got, want)
		}
		if want {
			typed++
		}
	}
	if typed < 100 {
		t.Fatalf("only %d of the random props were JSON-typed", typed)
	}
}
