package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"github.com/citytwin/citytwin/twin"
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

// TestPlaceCacheShares: objects with the same grid and region bytes get
// one place from a load's twin.PlaceCache through decodeRegion, equal to
// what decoding them gives; past the cache's bound, places are still
// right, only not kept.
func TestPlaceCacheShares(t *testing.T) {
	in := twin.NewPlaceCache()
	place := func(in *twin.PlaceCache, grid, region []byte) *twin.Place {
		t.Helper()
		p, err := in.Get(grid, region, decodeRegion)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	region := func(codes ...string) []byte {
		b := binary.AppendUvarint(nil, uint64(len(codes)))
		for _, c := range codes {
			b = appendString(b, c)
		}
		return b
	}
	r := region("500000", "500103", "500103001")
	p1 := place(in, []byte("g1"), r)
	p2 := place(in, []byte("g1"), bytes.Clone(r))
	if p1 != p2 {
		t.Fatal("place not shared")
	}
	if want := twin.NewPlace([]string{"500000", "500103", "500103001"}, "g1"); !p1.Equal(want) {
		t.Fatalf("place %+v, want %+v", p1, want)
	}
	p3 := place(in, []byte("g"), region("1g1", "500103", "500103001"))
	if p3 == p1 || p3.Grid != "g" || p3.Region[0] != "1g1" {
		t.Fatalf("grid and region not told apart: %+v", p3)
	}
	if unsafe.StringData(p3.Region[1]) != unsafe.StringData(p1.Region[1]) {
		t.Fatal("region code not shared")
	}
	if place(in, nil, region()) != nil || place(nil, nil, region()) != nil {
		t.Fatal("empty place")
	}
	for i := 0; i < 1<<16+10; i++ {
		g := fmt.Sprint(i)
		if p := place(in, []byte(g), r); p.Grid != g {
			t.Fatalf("place %d gave %+v", i, p)
		}
	}
}
