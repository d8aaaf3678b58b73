package twin

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// TestReadings: Set inserts in name order and replaces, Get and All read
// back, and the JSON is json.Marshal's of the same map.
func TestReadings(t *testing.T) {
	var r Readings
	if !r.IsZero() || r.Len() != 0 || r.Map() != nil || r.String() != "null" {
		t.Fatalf("zero readings: %v", r)
	}
	if _, ok := r.Get(""); ok {
		t.Fatal("zero readings hold \"\"")
	}
	want := map[string]float64{}
	set := func(k string, v float64) {
		t.Helper()
		r.Set(k, v)
		want[k] = v
		checkReadingsAgainst(t, r, want)
	}
	set("sent_ms", 1772366340123)     // an integer (varint)
	set("co2", 412.3)                 // tenths
	set("a", math.Pi)                 // 8 bytes
	set("zz", math.Copysign(0, -1))   // -0 keeps its sign
	set("", 1)                        // sorts first
	set("co2", 1e300)                 // replaced, longer
	set("sent_ms", 7)                 // replaced, shorter
	set("co", -2.5)                   // between a and co2
	set("<&>\u2028\xff", 0.000001234) // escaped as json escapes it
	if _, ok := r.Get("c"); ok {
		t.Fatal("Get(c) found")
	}
	if _, ok := r.Get("zzz"); ok {
		t.Fatal("Get(zzz) found")
	}
	// A copy keeps its readings when the original is Set (a value).
	c := r
	r.Set("a", 1)
	if v, _ := c.Get("a"); v != math.Pi {
		t.Fatalf("copy changed by a Set on the original: a = %v", v)
	}
	// Setting a value to what it is keeps the same string.
	before := unsafeData(r)
	r.Set("a", 1)
	if unsafeData(r) != before {
		t.Fatal("Set of the same value made a new string")
	}
}

// TestReadingsOf: the same readings are the same bytes however they are
// built, and the zero value stands for none.
func TestReadingsOf(t *testing.T) {
	if r := ReadingsOf(nil); !r.IsZero() {
		t.Fatal("ReadingsOf(nil) not zero")
	}
	if r := ReadingsOf(map[string]float64{}); !r.IsZero() {
		t.Fatal("ReadingsOf({}) not zero")
	}
	m := map[string]float64{"b": 2, "a": 1.5, "c": -3e-9}
	var r Readings
	for _, k := range []string{"c", "a", "b"} {
		r.Set(k, m[k])
	}
	if r != ReadingsOf(m) {
		t.Fatalf("Set in any order %v, ReadingsOf %v", r, ReadingsOf(m))
	}
	if !maps.Equal(r.Map(), m) {
		t.Fatalf("Map %v, want %v", r.Map(), m)
	}
}

// TestReadingsJSON: readings read from JSON as json reads a map (null:
// none; errors where it fails) and written back byte for byte.
func TestReadingsJSON(t *testing.T) {
	for _, in := range []string{`null`, `{}`, `{"a":1}`, `{"b":1,"a":2,"b":3}`, ` { "x" : 1e-7 , "\u003c" : 12345678901234567890 } `} {
		var r Readings
		var m map[string]float64
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatal(err)
		}
		checkReadingsAgainst(t, r, m)
	}
	for _, in := range []string{`[]`, `{"a":"1"}`, `{"a":1e999}`, `{"a":null,`, `1`} {
		var r Readings
		var m map[string]float64
		errR, errM := json.Unmarshal([]byte(in), &r), json.Unmarshal([]byte(in), &m)
		if (errR == nil) != (errM == nil) {
			t.Errorf("%s: readings %v, map %v", in, errR, errM)
		}
	}
	// A record field: omitted when none, as omitempty omitted a nil map.
	type rec struct {
		V Readings `json:"v,omitzero"`
	}
	for _, r := range []Readings{{}, ReadingsOf(map[string]float64{"k": 1})} {
		got, _ := json.Marshal(rec{r})
		want, _ := json.Marshal(struct {
			V map[string]float64 `json:"v,omitempty"`
		}{r.Map()})
		if string(got) != string(want) {
			t.Errorf("record %s, want %s", got, want)
		}
	}
	// Not finite (Unchecked only): json's error.
	var r Readings
	r.Set("a", math.NaN())
	if _, err := r.MarshalJSON(); err == nil || err.Error() != "json: unsupported value: NaN" {
		t.Errorf("NaN: %v", err)
	}
}

// FuzzReadings applies random sets to a Readings, a ReadingsBuilder and a
// map[string]float64 side by side, and checks that they agree (Get, All,
// Len, JSON).
func FuzzReadings(f *testing.F) {
	f.Add([]byte("\x03sent_ms\x00\x00\x00\x00\x00\x00\xf0\x3f\x01a\x00\x00\x00\x00\x00\x00\x00\x80"))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02<>\x9a\x99\x99\x99\x99\x99\xb9\x3f\x02<>\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		seed := slices.Clone(ops)
		defer func() {
			if t.Failed() {
				t.Logf("ops (the seed) %q", seed)
			}
		}()
		var r Readings
		var rb ReadingsBuilder
		m := map[string]float64{}
		// Each op: a name length byte (mod 8, from a small alphabet so
		// names repeat), the name, and 8 bytes of float64.
		for len(ops) >= 9 {
			n := int(ops[0] % 8)
			if len(ops) < 1+n+8 {
				break
			}
			k := string(ops[1 : 1+n])
			v := math.Float64frombits(binary.LittleEndian.Uint64(ops[1+n:]))
			ops = ops[1+n+8:]
			if math.IsNaN(v) {
				v = 0 // NaN != NaN; the twin refuses it before Readings
			}
			r.Set(k, v)
			rb.Set(k, v)
			m[k] = v
			if g, ok := rb.Get(k); !ok || math.Float64bits(g) != math.Float64bits(v) || rb.Len() != len(m) {
				t.Fatalf("builder: Get(%q) = %v, %v, Len %d; want %v, %d", k, g, ok, rb.Len(), v, len(m))
			}
			if len(m)%5 == 0 {
				rb.Reset(rb.Readings()) // the same readings, from a copy
			}
			if len(m) > 4*MaxValues {
				break
			}
		}
		checkReadingsAgainst(t, r, m)
		if got := rb.Readings(); got != r {
			t.Fatalf("builder's readings %v, Set's %v", got, r)
		}
	})
}

// FuzzReadingsJSON: any bytes read as Readings as json reads them into a
// map[string]float64 (the same readings, or both an error), whether
// readStoredJSON takes them or the map path does.
func FuzzReadingsJSON(f *testing.F) {
	for _, s := range []string{`{}`, `null`, `{"a":1,"b":-2.5e-7}`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a":01}`,
		`{"\u003c":1}`, `{"a":1e999}`, `{"a":-0,"b":0.1,"c":1E+2}`, `{"a":1,}`, `{"a" :1}`, "{\"\xff\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m map[string]float64
		var r Readings
		errM, errR := json.Unmarshal(b, &m), json.Unmarshal(b, &r)
		if (errM == nil) != (errR == nil) {
			t.Fatalf("%q: readings %v, map %v", b, errR, errM)
		}
		if errM == nil && r != ReadingsOf(m) {
			t.Fatalf("%q: readings %v, map %v", b, r, m)
		}
		if _, ok := readStoredJSON(b); ok && errM != nil {
			t.Fatalf("%q taken by readStoredJSON, json: %v", b, errM)
		}
	})
}

// TestReadingsStoredJSON: what AppendJSON writes is read without the map.
func TestReadingsStoredJSON(t *testing.T) {
	r := ReadingsOf(map[string]float64{"sent_ms": 1772366340123, "co2": 412.3, "a": -1e-7, "é": math.Pi, "z": math.Copysign(0, -1)})
	b, _ := r.AppendJSON(nil)
	got, ok := readStoredJSON(b)
	if !ok || got != r {
		t.Fatalf("%s read as %v, %v", b, got, ok)
	}
	if n := testing.AllocsPerRun(100, func() { _ = got.UnmarshalJSON(b) }); n != 1 {
		t.Errorf("%v allocations reading %s, want 1", n, b)
	}
}

// checkReadingsAgainst checks r against the map it should equal: Len,
// Get of each name and of absent ones, All in sorted order with the same
// bits, Map, ReadingsOf, and the JSON byte for byte.
func checkReadingsAgainst(t *testing.T, r Readings, m map[string]float64) {
	t.Helper()
	if r.Len() != len(m) || r.IsZero() != (len(m) == 0) {
		t.Fatalf("Len %d, IsZero %v; want %d", r.Len(), r.IsZero(), len(m))
	}
	keys := slices.Sorted(maps.Keys(m))
	i := 0
	for k, v := range r.All() {
		if i >= len(keys) || k != keys[i] || math.Float64bits(v) != math.Float64bits(m[k]) {
			t.Fatalf("All: entry %d is %q=%v, want %q of %v", i, k, v, keys[min(i, len(keys)-1)], m)
		}
		i++
	}
	if i != len(keys) {
		t.Fatalf("All gave %d readings, want %d", i, len(keys))
	}
	for k, v := range m {
		if g, ok := r.Get(k); !ok || math.Float64bits(g) != math.Float64bits(v) {
			t.Fatalf("Get(%q) = %v, %v; want %v", k, g, ok, v)
		}
		if _, ok := r.Get(k + "\x00"); ok != hasKey(m, k+"\x00") {
			t.Fatalf("Get(%q) = %v", k+"\x00", ok)
		}
	}
	if r != ReadingsOf(m) {
		t.Fatalf("readings %q, ReadingsOf the map %q", r.s, ReadingsOf(m).s)
	}
	if !maps.Equal(r.Map(), m) || (len(m) == 0) != (r.Map() == nil) {
		t.Fatalf("Map %v, want %v", r.Map(), m)
	}
	want, werr := json.Marshal(m)
	got, gerr := json.Marshal(r)
	if len(m) == 0 {
		want, werr = []byte("null"), nil // the zero readings are a nil map
	}
	if string(got) != string(want) || (werr == nil) != (gerr == nil) {
		t.Fatalf("JSON %s (%v), json.Marshal of the map %s (%v)", got, gerr, want, werr)
	}
	if werr == nil {
		var back Readings
		if err := json.Unmarshal(got, &back); err != nil || (back != r && !hasInvalidUTF8(m)) {
			t.Fatalf("JSON %s read back as %v, %v", got, back, err)
		}
	}
}

func hasKey(m map[string]float64, k string) bool { _, ok := m[k]; return ok }

// hasInvalidUTF8: such names are written as U+FFFD, so they do not read
// back as they were (as with a map).
func hasInvalidUTF8(m map[string]float64) bool {
	for k := range m {
		if !utf8.ValidString(k) {
			return true
		}
	}
	return false
}

func unsafeData(r Readings) *byte { return unsafe.StringData(r.s) }

// BenchmarkReadingsUnmarshal: a stored sample's readings read back (the
// stores' history reads), into the map they were read into before
// readings were packed, and into Readings.
func BenchmarkReadingsUnmarshal(b *testing.B) {
	stored := []byte(`{"ch4":1.25,"h2s":0.02,"sent_ms":1772366340123}`)
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]float64
			if err := json.Unmarshal(stored, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readings", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r Readings
			if err := r.UnmarshalJSON(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestReadingsBuilder: readings past the builder's own buffer go to the
// heap and come out the same; Readings costs one allocation.
func TestReadingsBuilder(t *testing.T) {
	var rb ReadingsBuilder
	if !rb.Readings().IsZero() || rb.Len() != 0 {
		t.Fatal("empty builder holds readings")
	}
	m := map[string]float64{}
	for i := range MaxValues {
		k := strings.Repeat(string(rune('a'+i%26)), 1+i/26) // 20 B and more past the buffer
		rb.Set(k, float64(i)+0.5)
		m[k] = float64(i) + 0.5
		rb.Set(k, math.Pi) // replaced, longer
		m[k] = math.Pi
	}
	checkReadingsAgainst(t, rb.Readings(), m)
	// Past MaxValues (Unchecked callers) the builder searches without its
	// index, from a Reset too.
	for i := 3 * MaxValues; i > 0; i-- {
		k := strings.Repeat("k", i%7) + string(rune('0'+i%10)) + strings.Repeat("z", i/10)
		rb.Set(k, float64(i))
		m[k] = float64(i)
		if i%50 == 0 {
			rb.Reset(rb.Readings())
		}
	}
	checkReadingsAgainst(t, rb.Readings(), m)
	rb.Reset(Readings{})
	rb.Set("temperature_c", 21.5) // more than 32 B, so the string is
	rb.Set("humidity_pct", 40)    // not on the stack where it could be
	rb.Set("pressure_hpa", 1013.2)
	if n := testing.AllocsPerRun(100, func() { _ = rb.Readings() }); n != 1 {
		t.Errorf("Readings: %v allocations, want 1", n)
	}
}
