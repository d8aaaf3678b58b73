package twin

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// TestMergedReadings checks that ApplySample's merge of packed readings
// gives the props its map path gives: the old readings decoded, the
// sample's set over them, packed again.
func TestMergedReadings(t *testing.T) {
	olds := []map[string]any{
		nil,
		{},
		{"sent_ms": 1234.567},
		{"a": 1.0, "m": 2.5, "z": math.Copysign(0, -1), "s": "text", "n": nil, "l": []any{1.0, "x"}, "i": 7, "f": float32(1.5)},
		{"co2": 400.0, "no2": math.Pi, "pm10": 12.3},
	}
	samples := []map[string]float64{
		{"sent_ms": 99.125},
		{"a": 3, "b": 0.1, "zz": -4.2, "": 1},
		{"m": math.Inf(1), "co2": 401, "aa": math.Copysign(0, -1)},
		{"no2": 1e300, "pm10": 12.3, "pm25": 5},
	}
	for _, old := range olds {
		base := map[string]any{"speed_kmh": 12.3, "kind": "bus"}
		if old != nil {
			base["values"] = old
		}
		p := NewProps(base).Pack()
		for _, vals := range samples {
			checkMerge(t, p, vals)
		}
	}
	// An overlay or a map form is not merged; values not a map neither.
	for _, p := range []Props{NewProps(map[string]any{"values": map[string]any{"a": 1.0}}),
		NewProps(map[string]any{"values": "x"}).Pack()} {
		if _, _, ok := packedReadings(p); ok {
			t.Errorf("packedReadings(%v) ok", p)
		}
	}
}

// checkMerge checks the merge of vals into p's packed readings against
// the map path.
func checkMerge(t *testing.T, p Props, vals map[string]float64) {
	t.Helper()
	entries, held, ok := packedReadings(p)
	if !ok {
		t.Fatalf("packedReadings(%v) not ok", p)
	}
	prev := valuesOf(&Feature{Props: p})
	if held != len(prev) {
		t.Fatalf("held %d, want %d", held, len(prev))
	}
	r := ReadingsOf(vals)
	added := readingsAdded(entries, r)
	want := map[string]any{}
	for k, v := range prev {
		want[k] = v
	}
	for k, v := range vals {
		want[k] = v
	}
	if added != len(want)-len(prev) {
		t.Errorf("old %v, sample %v: added %d, want %d", prev, vals, added, len(want)-len(prev))
	}
	raw := appendMergedReadings(nil, entries, held, r, added)
	got := p.with(nil, raw)
	exp := p.with([]propKV{{"values", want}}, nil)
	if got.ref != exp.ref || got.values() != exp.values() {
		t.Errorf("old %v, sample %v: merged %v, want %v", prev, vals, got, exp)
	}
}

// FuzzMergedReadings: any stored readings (a JSON object) and any two
// readings of a sample merge as the map path merges them.
func FuzzMergedReadings(f *testing.F) {
	f.Add(`{"sent_ms":1234.5}`, "sent_ms", 99.125, "b", 0.1)
	f.Add(`{"a":1,"m":2.5,"s":"text","n":null,"l":[1,"x"]}`, "a", 3.0, "", math.Copysign(0, -1))
	f.Add(`{}`, "co2", math.Inf(1), "co2", 1e300)
	f.Fuzz(func(t *testing.T, oldJSON, k1 string, v1 float64, k2 string, v2 float64) {
		var old map[string]any
		if json.Unmarshal([]byte(oldJSON), &old) != nil || old == nil || v1 != v1 || v2 != v2 {
			return // not an object, or a NaN reading (refused before the twin)
		}
		p := NewProps(map[string]any{"speed_kmh": 12.3, "values": old}).Pack()
		if _, _, ok := packedReadings(p); !ok {
			return
		}
		checkMerge(t, p, map[string]float64{k1: v1, k2: v2})
	})
}

// BenchmarkApplySampleReading applies samples with one reading (wsload's
// sent_ms) to vehicles that hold it already: the merge of the packed
// readings, without a map of the old ones.
func BenchmarkApplySampleReading(b *testing.B) {
	tw := New(Options{FeedSize: 1 << 16})
	tw.Feed().SetLimit(1<<62, 1<<20)
	const vehicles = 1000
	ids := make([]ID, vehicles)
	for i := range ids {
		ids[i] = NewID(Vehicles, fmt.Sprint("v", i))
		if _, err := tw.Put(&Feature{ID: ids[i], Geometry: orb.Point{106, 29}}); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	// The readings made before the timer, as the one map the loop set
	// was before readings were packed: what is measured is the apply.
	vals := make([]Readings, 1024)
	for i := range vals {
		vals[i].Set("sent_ms", 1.7e12+float64(i)*0.125)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := tw.ApplySample(Sample{ID: ids[i%vehicles], Time: t0.Add(time.Duration(i) * time.Millisecond),
			HasPos: true, Pos: orb.Point{106 + float64(i%100)*1e-5, 29}, HasSpeed: true, SpeedKmh: 42.3, Values: vals[i%len(vals)]}); err != nil {
			b.Fatal(err)
		}
	}
}
