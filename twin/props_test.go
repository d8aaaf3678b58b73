package twin

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unique"
	"unsafe"
)

// TestPropsPackRoundTrip: a packed form reads back every value with the
// type it was set with, and Set on a copy never changes the original.
func TestPropsPackRoundTrip(t *testing.T) {
	m := manyProps()
	m["list"] = []any{"a", 1.5, nil, map[string]any{"z": 1.0, "a": []string{"x", ""}}}
	m["strs"] = []string{"p1", "p2"}
	m["values"] = map[string]any{"ch4": 0.25, "h2s": 3.0}
	m["int"] = 5
	m["big"] = float64(1 << 60)
	p := NewProps(m).Pack()
	if !p.packed() {
		t.Fatal("not packed")
	}
	if !reflect.DeepEqual(p.Map(), m) || p.Len() != len(m) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", p.Map(), m)
	}
	for k, want := range m {
		if got, ok := p.Lookup(k); !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %#v, want %#v", k, got, want)
		}
		if n, ok := p.Number(k); ok != func() bool { _, ok := ToFloat(want); return ok }() || (ok && n != func() float64 { f, _ := ToFloat(want); return f }()) {
			t.Fatalf("Number(%s) = %v %v", k, n, ok)
		}
	}
	if _, ok := p.Lookup("absent"); ok || p.String("<&>") != "a<b>&c" || p.String("int") != "" {
		t.Fatal("lookup")
	}
	q := p
	q.Set("int", 6)
	q.Delete("list")
	if p.Get("int") != 5 || !p.Has("list") || q.Get("int") != 6 || q.Has("list") {
		t.Fatal("Set on a copy changed the original")
	}
	a, _ := json.Marshal(p)
	b, _ := json.Marshal(m)
	if string(a) != string(b) {
		t.Fatalf("json:\n got %s\nwant %s", a, b)
	}
	// Keys interned: another object with the same keys shares them.
	if r := NewProps(manyProps()).Pack(); r.ref != NewProps(manyProps()).Pack().ref || r.ref == nil {
		t.Fatal("keys not shared")
	}
	// A type the packed form does not hold keeps the map form.
	odd := NewProps(map[string]any{"m": map[string]float64{"x": 1}})
	if odd.Pack().packed() || odd.Pack().Get("m") == nil {
		t.Fatal("unsupported type packed")
	}
	// with: the apply path's update keeps the key set.
	w := p.with([]propKV{{"int", 7}, {"big", math.Pi}}, nil)
	if w.ref != p.ref || w.Get("int") != 7 || w.Get("big") != math.Pi || p.Get("int") != 5 {
		t.Fatalf("with: %v", w)
	}
	if w2 := p.with([]propKV{{"new", "x"}}, nil); w2.Get("new") != "x" || w2.Len() != p.Len()+1 {
		t.Fatalf("with a new key: %v", w2)
	}
}

// TestPackTenths: a float64 holding tenths packs in a few bytes and reads
// back with the same bits; others keep their 8 bytes.
func TestPackTenths(t *testing.T) {
	for _, x := range []float64{42.3, -0.1, 0.1, 59.9, 1e14 + 0.5, -7.5, 0.05, 1.0 / 3, 1e300, math.Copysign(0, -1), 4503599627370495.5} {
		p := NewProps(map[string]any{"v": x}).Pack()
		got, ok := p.Number("v")
		if !ok || math.Float64bits(got) != math.Float64bits(x) {
			t.Fatalf("%v packed reads %v", x, got)
		}
		if v, _ := p.Lookup("v"); math.Float64bits(v.(float64)) != math.Float64bits(x) {
			t.Fatalf("%v packed looks up %v", x, v)
		}
		b, err := p.MarshalJSON()
		want, _ := json.Marshal(map[string]any{"v": x})
		if err != nil || string(b) != string(want) {
			t.Fatalf("%v: JSON %s, want %s (%v)", x, b, want, err)
		}
	}
	if p := NewProps(map[string]any{"v": 42.3}).Pack(); len(p.values()) > 3 {
		t.Fatalf("42.3 packs in %d bytes", len(p.values()))
	}
}

// TestHandleIsOnePointer guards handlePointer: a packed form keeps the
// pointer a unique.Handle[string] is, and reads the key set through it.
func TestHandleIsOnePointer(t *testing.T) {
	if unsafe.Sizeof(unique.Handle[string]{}) != unsafe.Sizeof(unsafe.Pointer(nil)) {
		t.Fatalf("unique.Handle[string] is %d bytes, not one pointer", unsafe.Sizeof(unique.Handle[string]{}))
	}
	ks := string(appendStrBytes(nil, "speed"))
	h := unique.Make(ks)
	if *(*string)(handlePointer(h)) != ks || handlePointer(h) != handlePointer(unique.Make(ks)) {
		t.Fatal("a handle's pointer does not lead to its canonical value")
	}
}

// TestPropsAreTwoWords holds the Feature in the 112-B size class.
func TestPropsAreTwoWords(t *testing.T) {
	if got := unsafe.Sizeof(Props{}); got != 16 {
		t.Fatalf("Props is %d bytes", got)
	}
	if got := unsafe.Sizeof(Feature{}); got > 112 {
		t.Fatalf("Feature is %d bytes, over the 112-B size class", got)
	}
}

// TestValueLenAt checks the byte-at-a-time reader of a value's length
// against valueLen for every tag, with lengths and varints of one to ten
// bytes.
func TestValueLenAt(t *testing.T) {
	long := strings.Repeat("长", 100)
	for _, v := range []any{nil, true, false, 1.5, 42.3, 7.0, -1e300, float32(2), int(-300), int64(math.MaxInt64),
		int32(-5), uint64(math.MaxUint64), "", "a", long, json.Number("12.5"), []any{"a", 1.0, nil},
		[]string{"x", long}, map[string]any{"k": []any{long}}} {
		b, ok := appendValueBytes(nil, v)
		if !ok {
			t.Fatalf("%T not packed", v)
		}
		b = append(b, 0xff, 0xff) // what follows must not count
		if got, want := valueLenAt(unsafe.Pointer(&b[0])), valueLen(string(b)); got != want || want != len(b)-2 {
			t.Fatalf("%T %v: valueLenAt %d, valueLen %d, encoded %d", v, v, got, want, len(b)-2)
		}
	}
}

// TestPackedMapSizes: a map value packs and reads back whatever the width
// of its body's length (written before the body once known), alone and
// appended to a list that keeps its last entries.
func TestPackedMapSizes(t *testing.T) {
	for _, n := range []int{0, 1, 100, 127, 128, 16300, 16383, 16384, 20000, 3 << 20} {
		m := map[string]any{"a": strings.Repeat("x", n), "b": 1.5, "c": []any{"y", map[string]any{"z": true}}}
		want, _ := json.Marshal(m)
		p := NewProps(map[string]any{"m": m}).Pack()
		if got, _ := json.Marshal(p.Get("m")); string(got) != string(want) {
			t.Fatalf("n=%d: %.80s, want %.80s", n, got, want)
		}
		var h []any
		for i := range 5 {
			e := map[string]any{"i": float64(i), "m": m}
			p.AppendList("h", e, 3)
			p = p.Pack()
			h = append(h, e)
		}
		want, _ = json.Marshal(h[2:])
		if got, _ := json.Marshal(p.Get("h")); string(got) != string(want) {
			t.Fatalf("n=%d: history %.80s, want %.80s", n, got, want)
		}
	}
}

// TestPackedGetAbsent: a lookup in the packed form, which stops once past
// where its key would sort, finds what the map holds, present or not.
// Seeded.
func TestPackedGetAbsent(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	keys := []string{"", "a", "attached_to", "b", "kind", "z", "Ω", "渝", "aa", "attached"}
	for range 500 {
		m := map[string]any{}
		for _, k := range keys {
			if rng.IntN(2) == 0 {
				m[k] = []any{k, rng.Float64()}
			}
		}
		p := NewProps(m).Pack()
		for _, k := range append(keys, "attached_tp", "y", "\xff") {
			got, _ := json.Marshal(p.Get(k))
			want, _ := json.Marshal(m[k])
			if string(got) != string(want) {
				t.Fatalf("%v: Get(%q) = %s, want %s", m, k, got, want)
			}
		}
	}
}
