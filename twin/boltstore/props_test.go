package boltstore

import (
	"fmt"
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

// TestInternerShares: repeated strings and paths come back as the same
// memory; unique ones stop being added once the interner is full.
func TestInternerShares(t *testing.T) {
	in := newInterner()
	a, b := in.str([]byte("500103001")), in.str([]byte("500103001"))
	if unsafeData(a) != unsafeData(b) {
		t.Fatal("string not shared")
	}
	p1 := in.place([]string{"500000", "500103", "500103001"}, "g1")
	p2 := in.place([]string{"500000", "500103", "500103001"}, "g1")
	if p1 != p2 {
		t.Fatal("place not shared")
	}
	for i := 0; i < 1<<16+10; i++ {
		if s := in.str([]byte(fmt.Sprint(i))); s != fmt.Sprint(i) {
			t.Fatalf("str %d gave %q", i, s)
		}
	}
	if in.str(nil) != "" || in.str([]byte{}) != "" {
		t.Fatal("empty string")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
