package twin

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// marshalReflect is the reflective encoding appendWire replaces: the
// reference its output must equal byte for byte.
func marshalReflect(f *Feature) ([]byte, error) {
	w := wireFeature{Type: "Feature", ID: f.ID.String(), Layer: f.ID.Layer, Version: f.Version,
		Region: f.Region(), Grid: f.Grid(), Props: f.Props.Map()}
	if w.Region == nil {
		w.Region = []string{}
	}
	if w.Props == nil {
		w.Props = map[string]any{}
	}
	if !f.Updated.IsZero() {
		w.Updated = f.Updated.Time().Format(time.RFC3339Nano)
	}
	if !f.Observed.IsZero() {
		w.Observed = f.Observed.Time().Format(time.RFC3339Nano)
	}
	if f.Geometry != nil {
		w.Geometry = geojson.NewGeometry(orb.Round(orb.Clone(f.Geometry), CoordFactor))
	}
	return json.Marshal(w)
}

var wireCases = []*Feature{
	{ID: NewID(Vehicles, "BP2968"), Geometry: orb.Point{106.5512345678, 29.5623}, Version: 7,
		Updated:  StampOf(time.Date(2026, 11, 23, 8, 0, 0, 123456789, time.FixedZone("CST", 8*3600))),
		Observed: StampOf(time.Date(2026, 11, 23, 0, 0, 1, 0, time.UTC)), Place: NewPlace([]string{"500000", "500103", "500103001"}, "8930e1d8a2fffff"),
		Props: NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 32.5, "heading": 90.0, "values": map[string]any{"b": 1.0, "a": math.Copysign(0, -1)}})},
	{ID: NewID(Devices, "d1")},
	{ID: NewID(Buildings, "b<1>&\"x\"\\\u2028\u2029\x01\t\n\xff中"), Place: NewPlace([]string{}, ""), Geometry: orb.Polygon{{{106.5, 29.5}, {106.51, 29.5}, {106.51, 29.51}, {106.5, 29.5}}},
		Props: NewProps(map[string]any{"name": "解放碑 <b>", "levels": 8, "owners": []any{"p1", nil, true}, "tiny": 1e-9, "huge": 1e22})},
	{ID: NewID(Roads, "r"), Geometry: orb.LineString{{0, 0}, {1e-7, -2.5e21}}, Props: NewProps(map[string]any{})},
	{ID: NewID(Vehicles, "z"), Geometry: orb.Point{0, math.Copysign(0, -1)}},
	{ID: NewID(Vehicles, "e"), Geometry: orb.Point{1e-7, 1e21}},
	{ID: NewID(Vehicles, "e2"), Geometry: orb.Point{-3.2e-10, 123456789012345678}},
	{ID: NewID(Devices, "many"), Props: NewProps(manyProps())},
}

// manyProps has more keys than appendProps sorts on the stack, and every
// scalar type it writes directly.
func manyProps() map[string]any {
	m := map[string]any{"i64": int64(-1 << 60), "u64": uint64(1 << 63), "i32": int32(-7), "t": true, "f": false,
		"nil": nil, "<&>": "a<b>&c", "neg0": math.Copysign(0, -1), "f32": float32(0.1), "num": json.Number("12.5")}
	for i := range 20 {
		m[string(rune('A'+i))+"k"] = float64(i) / 3
	}
	return m
}

// TestAppendGeoJSONKeeps: a property selection writes exactly the
// selected props (absent ones skipped), the rest byte for byte as the
// full form.
func TestAppendGeoJSONKeeps(t *testing.T) {
	f := wireCases[0]
	got, err := f.AppendGeoJSON([]byte("x"), []string{"heading", "missing", "values"})
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.Props = NewProps(map[string]any{"heading": f.Props.Get("heading"), "values": f.Props.Get("values")})
	want, _ := marshalReflect(&g)
	if string(got) != "x"+string(want) {
		t.Fatalf("got %s\nwant x%s", got, want)
	}
	none, err := f.AppendGeoJSON(nil, []string{})
	if err != nil || !bytes.Contains(none, []byte(`"properties":{}}`)) {
		t.Fatalf("no props: %s %v", none, err)
	}
	bad := &Feature{ID: NewID(Vehicles, "nan"), Props: NewProps(map[string]any{"x": math.Inf(1)})}
	if _, err := bad.AppendGeoJSON(nil, nil); err == nil {
		t.Fatal("Inf prop encoded")
	}
}

// TestWireMatchesReflect: the hand encoder gives exactly what encoding/json
// gave for the wire struct.
func TestWireMatchesReflect(t *testing.T) {
	for _, f := range wireCases {
		want, werr := marshalReflect(f)
		got, err := f.MarshalJSON()
		if (err == nil) != (werr == nil) {
			t.Fatalf("%s: error %v, reflect %v", f.ID, err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s\nwant %s", f.ID, got, want)
		}
		// json.Marshal(f) only re-compacts MarshalJSON's output: callers
		// (the notifier) may skip it for the same bytes.
		if viaJSON, err := json.Marshal(f); err == nil && !bytes.Equal(viaJSON, got) {
			t.Fatalf("%s: json.Marshal differs:\n got %s\nwant %s", f.ID, viaJSON, got)
		}
		// The packed form the twin holds writes the same bytes.
		g := *f
		g.Props = f.Props.Pack()
		if got, err := g.MarshalJSON(); (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("%s packed:\n got %s %v\nwant %s", f.ID, got, err, want)
		}
	}
	bad := &Feature{ID: NewID(Vehicles, "nan"), Geometry: orb.Point{math.NaN(), 1}}
	if _, err := bad.MarshalJSON(); err == nil {
		t.Fatal("NaN coordinate encoded")
	}
	if _, err := marshalReflect(bad); err == nil {
		t.Fatal("reference encoded NaN")
	}
}

func FuzzWireString(f *testing.F) {
	for _, s := range []string{"", "a", "<>&", "\u2028\xff\x00", "中文\"\\"} {
		f.Add(s, 1.5)
	}
	f.Fuzz(func(t *testing.T, s string, x float64) {
		ft := &Feature{ID: ID{Layer: Vehicles, Name: s}, Place: NewPlace([]string{s}, s), Geometry: orb.Point{x, -x}}
		want, werr := marshalReflect(ft)
		got, err := ft.MarshalJSON()
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("%q %v:\n got %s %v\nwant %s %v", s, x, got, err, want, werr)
		}
	})
}

func BenchmarkMarshalJSON(b *testing.B) {
	f := wireCases[0]
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := f.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflect", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := marshalReflect(f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWireRoundsCoordinates: coordinates leave with at most 7 decimals
// (1 cm), points and every other geometry alike.
func TestWireRoundsCoordinates(t *testing.T) {
	for _, c := range []struct {
		g    orb.Geometry
		want string
	}{
		{orb.Point{106.55123456789, 29.5623123449}, `{"type":"Point","coordinates":[106.5512346,29.5623123]}`},
		{orb.LineString{{106.123456789012, 29.1}, {-0.00000004, 1.99999999}}, `{"type":"LineString","coordinates":[[106.1234568,29.1],[-0,2]]}`},
		{orb.Polygon{{{1.23456789, 2}, {3, 4.000000051}, {5, 6}, {1.23456789, 2}}}, `{"type":"Polygon","coordinates":[[[1.2345679,2],[3,4.0000001],[5,6],[1.2345679,2]]]}`},
	} {
		f := &Feature{ID: NewID(Roads, "r"), Geometry: c.g}
		b, err := f.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"geometry":`+c.want)) {
			t.Errorf("%v:\n got %s\nwant geometry %s", c.g, b, c.want)
		}
	}
	// The twin keeps full precision: encoding does not round in place.
	line := orb.LineString{{106.123456789012, 29.1}}
	f := &Feature{ID: NewID(Roads, "r"), Geometry: line}
	if _, err := f.MarshalJSON(); err != nil || line[0][0] != 106.123456789012 {
		t.Fatalf("geometry changed to %v (%v)", line, err)
	}
}
