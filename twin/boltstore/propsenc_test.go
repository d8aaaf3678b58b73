package boltstore

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// TestAppendPropsRoundTrip: props written by appendProps (the writer of
// older records, keys in map order) read back (through twin.PackJSON and
// encoding/json alike) as what json.Marshal's form gives.
func TestAppendPropsRoundTrip(t *testing.T) {
	var cases []map[string]any
	for _, s := range propSeeds {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil {
			cases = append(cases, m)
		}
	}
	cases = append(cases,
		map[string]any{"s": "a\"b\\c\n\t\x01\x7f<>&\u2028é解😀", "bad": "x\xffy\xc3", "k\x02\"": 1.0},
		map[string]any{"f": 1e21, "g": 1e-7, "h": math.Copysign(0, -1), "i": 123456789.125, "j": 5e-324, "k": math.MaxFloat64},
		map[string]any{"n": nil, "t": true, "u": false, "arr": []any{1.0, "x", nil}, "obj": map[string]any{"y": []string{"a"}}, "i": 7},
	)
	for _, m := range cases {
		got, err := appendProps(nil, m)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		ref, _ := json.Marshal(m)
		var refm map[string]any
		if err := json.Unmarshal(ref, &refm); err != nil {
			t.Fatal(err)
		}
		want := twin.NewProps(refm).Pack()
		dec, err := twin.PackJSON(got)
		if err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		var std map[string]any
		if err := json.Unmarshal(got, &std); err != nil {
			t.Fatalf("%s: encoding/json: %v", got, err)
		}
		if !reflect.DeepEqual(std, refm) || !dec.Equal(want) {
			t.Fatalf("%s read back as %v, want %v", got, dec, want)
		}
		if _, ok := m["h"]; ok {
			if h, _ := dec.Number("h"); !math.Signbit(h) {
				t.Fatalf("-0 lost its sign: %v", h)
			}
		}
	}
	for _, bad := range []any{math.NaN(), math.Inf(1), []any{math.Inf(-1)}} {
		if _, err := appendProps(nil, map[string]any{"x": bad}); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

func BenchmarkAppendProps(b *testing.B) {
	m := map[string]any{"kind": "muck_truck", "speed_kmh": 42.5, "heading": 181.0, "plate": "渝A12345", "active": true}
	b.Run("hand", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendProps(buf[:0], m)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(m)
		}
	})
}
