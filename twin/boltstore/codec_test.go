package boltstore

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin"
)

// TestFeaturePropsPackedOrJSON: props are stored in the twin's packed form
// and read back equal, with random values of every JSON type (seeded;
// BOLT_CODEC_SEED=N replays); props the packed form cannot vouch for
// (a string that is not UTF-8) are stored as JSON, as every record was
// before; and a record of that older form still reads.
func TestFeaturePropsPackedOrJSON(t *testing.T) {
	seed := testseed.Seed(t, "BOLT_CODEC_SEED")
	r := rand.New(rand.NewPCG(seed, 3))
	var value func(depth int) any
	value = func(depth int) any {
		switch r.IntN(8) {
		case 0:
			return float64(r.IntN(1000)) / 10
		case 1:
			return r.NormFloat64() * 1e6
		case 2:
			return []string{"渝A·12345", "solfeo", "", `q"\`}[r.IntN(4)]
		case 3:
			return nil
		case 4:
			return r.IntN(2) == 0
		case 5:
			if depth < 3 {
				l := []any{}
				for range r.IntN(5) {
					l = append(l, value(depth+1))
				}
				return l
			}
		case 6:
			if depth < 3 {
				m := map[string]any{}
				for i := range r.IntN(5) {
					m["k"+strconv.Itoa(i)] = value(depth + 1)
				}
				return m
			}
		}
		return "s" + strconv.Itoa(r.IntN(99))
	}
	id := twin.NewID(twin.Alerts, "a1")
	for round := range 200 {
		m := map[string]any{}
		for i := range 1 + r.IntN(12) {
			m[[]string{"count", "history", "kind", "名称", "regions", "z"}[i%6]+strconv.Itoa(i/6)] = value(0)
		}
		f := &twin.Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Version: 2, Props: twin.NewProps(m)}
		b, err := encodeFeature(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeFeature(id, b, nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !got.Props.Equal(f.Props) {
			t.Fatalf("round %d: props\n got %v\nwant %v", round, got.Props.Map(), m)
		}
		if noProps, _ := encodeFeature(nil, &twin.Feature{ID: id, Geometry: f.Geometry, Version: 2}); b[len(noProps)] != propsPacked {
			t.Fatalf("round %d: props stored as %q, not packed", round, b[len(noProps):])
		}
	}

	// Not UTF-8: JSON (the string's bad byte becomes U+FFFD, as JSON
	// writes it), and it reads back.
	f := &twin.Feature{ID: id, Version: 1, Props: twin.NewProps(map[string]any{"s": "a\xffb", "n": 1.5})}
	b, err := encodeFeature(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	noProps, _ := encodeFeature(nil, &twin.Feature{ID: id, Version: 1})
	if b[len(noProps)] != '{' {
		t.Fatalf("props not JSON: %q", b[len(noProps):])
	}
	got, err := decodeFeature(id, b, nil)
	if err != nil || got.Prop("s") != "a\uFFFDb" {
		t.Fatalf("JSON props read back as %v, %v", got, err)
	}

	// A record written before the packed form: JSON props.
	old := append(noProps, `{"kind":"muck_truck","n":[1,"两"]}`...)
	got, err = decodeFeature(id, old, nil)
	want := twin.NewProps(map[string]any{"kind": "muck_truck", "n": []any{1.0, "两"}})
	if err != nil || !got.Props.Equal(want) {
		t.Fatalf("old record read as %v, %v", got, err)
	}

	// Packed props with bytes after them, or cut short: refused.
	for _, bad := range [][]byte{append(b[:len(noProps):len(noProps)], propsPacked), append(encodeOK(t, id), 'x')} {
		if _, err := decodeFeature(id, bad, nil); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func encodeOK(t *testing.T, id twin.ID) []byte {
	t.Helper()
	b, err := encodeFeature(nil, &twin.Feature{ID: id, Version: 1, Props: twin.NewProps(map[string]any{"a": 1.0})})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
