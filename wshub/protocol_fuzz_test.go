package wshub

import (
	"math"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// FuzzParseRequest: whatever a websocket client sends (CONTRACT §6) is a
// valid subscription or an error for the client, never a panic; what is
// accepted names 1..32 distinct known layers and a finite bbox inside
// the world with west <= east and south <= north.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"op":"subscribe","layers":["vehicles","alerts"],"bbox":[106.4,29.4,106.7,29.7],"since":42}`))
	f.Add([]byte(`{"op":"subscribe","layers":["vehicles","vehicles"],"bbox":[-180,-90,180,90]}`))
	f.Add([]byte(`{"op":"subscribe","layers":["vehicles"],"bbox":[1,1,0,0],"since":-1}`))
	f.Add([]byte(`{"op":"subscribe","layers":["\u0000"],"bbox":[0,0,1,1],"since":1e3}`))
	f.Add([]byte("{\"op\":\"subscribe\",\"layers\":[\"\xff\"]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sub, err := parseRequest(b)
		if err != nil {
			return
		}
		if len(sub.layers) == 0 || len(sub.layers) > maxLayers {
			t.Fatalf("accepted %d layers", len(sub.layers))
		}
		seen := map[twin.Layer]bool{}
		for _, l := range sub.layers {
			if _, err := twin.ParseLayer(string(l)); err != nil || seen[l] {
				t.Fatalf("accepted layer %q (%v, repeated %v)", l, err, seen[l])
			}
			seen[l] = true
		}
		for _, v := range [...]float64{sub.bbox.Min[0], sub.bbox.Min[1], sub.bbox.Max[0], sub.bbox.Max[1]} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("accepted bbox %v", sub.bbox)
			}
		}
		if sub.bbox.Min[0] < -180 || sub.bbox.Max[0] > 180 || sub.bbox.Min[1] < -90 || sub.bbox.Max[1] > 90 ||
			sub.bbox.Min[0] > sub.bbox.Max[0] || sub.bbox.Min[1] > sub.bbox.Max[1] {
			t.Fatalf("accepted bbox %v", sub.bbox)
		}
	})
}
