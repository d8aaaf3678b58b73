package boltstore

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
	"unsafe"
)

var propSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"name":"b000001","height_m":24.5,"levels":8,"high_rise":true,"risk_level":5,"risk_color":"green","street":"500103001","owners":["person-00001","person-00002"]}`,
	`{"a":null,"b":false,"c":[],"d":{},"e":[1,"x",{"f":[true,null]}]}`,
	`{"n":-0,"m":-0.0,"e":1e3,"E":2E-3,"x":-12.5e+2,"big":1e308,"tiny":5e-324}`,
	`{"esc":"a\"b\\c\u00e9\n","cjk":"解放碑街道","emoji":"😀"}`,
	`{"dup":1,"dup":2}`, `{"bad":"\xff"}`, `{"ctl":"a` + "\x01" + `"}`,
	`{"over":1e400}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1,}`, `{"a"}`, `[1]`, `{"a":1} x`, `{"a":tru}`, `{"a":"x`, `{"a":1e}`,
	"\t{\n\"a\" : [ 1 , 2 ] }\r\n",
}

// TestDecodePropsMatchesJSON: the hand parser gives what encoding/json
// gives, errors included, with and without the interner.
func TestDecodePropsMatchesJSON(t *testing.T) {
	in := newInterner()
	for _, s := range propSeeds {
		checkProps(t, []byte(s), in)
		checkProps(t, []byte(s), nil)
	}
}

func checkProps(t *testing.T, b []byte, in *interner) {
	t.Helper()
	var want map[string]any
	werr := json.Unmarshal(b, &want)
	got, err := decodeProps(b, in)
	if (werr == nil) != (err == nil) {
		t.Fatalf("%q: error %v, encoding/json %v", b, err, werr)
	}
	if werr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %#v, want %#v", b, got, want)
	}
	for k, v := range got { // -0 keeps its sign
		if f, ok := v.(float64); ok && f == 0 && math.Signbit(f) != math.Signbit(want[k].(float64)) {
			t.Fatalf("%q: %s sign", b, k)
		}
	}
}

func FuzzDecodeProps(f *testing.F) {
	for _, s := range propSeeds {
		f.Add([]byte(s))
	}
	in := newInterner()
	f.Fuzz(func(t *testing.T, b []byte) { checkProps(t, b, in) })
}

// TestInternerShares: repeated strings, numbers and paths come back as the
// same memory; unique ones stop being added once the interner is full.
func TestInternerShares(t *testing.T) {
	in := newInterner()
	a, _ := decodeProps([]byte(`{"risk_color":"green","levels":8}`), in)
	b, _ := decodeProps([]byte(`{"risk_color":"green","levels":8}`), in)
	if unsafeData(a["risk_color"].(string)) != unsafeData(b["risk_color"].(string)) {
		t.Fatal("string not shared")
	}
	if a["levels"] != 8.0 || b["levels"] != 8.0 {
		t.Fatal("number")
	}
	p1 := in.place([]string{"500000", "500103", "500103001"}, "g1")
	p2 := in.place([]string{"500000", "500103", "500103001"}, "g1")
	if p1 != p2 {
		t.Fatal("place not shared")
	}
	for i := 0; i < 1<<16+10; i++ {
		if v := in.num(float64(i) + 0.5); v != float64(i)+0.5 {
			t.Fatalf("num %d gave %v", i, v)
		}
		if s := in.str([]byte(fmt.Sprint(i))); s != fmt.Sprint(i) {
			t.Fatalf("str %d gave %q", i, s)
		}
	}
	if in.str(nil) != "" || in.str([]byte{}) != "" {
		t.Fatal("empty string")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
