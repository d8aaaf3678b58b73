package boltstore

import (
	"math"
	"slices"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// FuzzDecodeFeature: a stored object's bytes, however damaged (a torn
// page, a file from elsewhere), decode to a feature or an error, never a
// panic; a feature that decodes, stored again, decodes to the same one.
func FuzzDecodeFeature(f *testing.F) {
	id := twin.NewID(twin.Vehicles, "v1")
	seed := &twin.Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Version: 3, Updated: 1764806400000000000,
		Props: twin.NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 42.5, "tags": []any{"a", 1.0}})}
	seed.SetCells([]uint64{0x8940d6a3c0bffff})
	seed.SetSource("import.geojson")
	b, err := encodeFeature(nil, seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b) // props packed
	f.Add(b[:len(b)/2])
	f.Add([]byte{0})
	seed.Props = twin.Props{}
	bare, err := encodeFeature(nil, seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(bare, `{"kind":"muck_truck","tags":["a",1]}`...)) // props JSON, as records were before the packed form
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeFeature(id, v, twin.NewPlaceCache())
		if err != nil {
			return
		}
		again, err := encodeFeature(nil, got)
		if err != nil {
			return // props the JSON form cannot hold (NaN read from a damaged record)
		}
		back, err := decodeFeature(id, again, twin.NewPlaceCache())
		if err != nil {
			t.Fatalf("stored again, it does not decode: %v", err)
		}
		if back.Version != got.Version || back.Updated != got.Updated || back.Observed != got.Observed ||
			back.Grid() != got.Grid() || back.Source() != got.Source() || !slices.Equal(back.Region(), got.Region()) ||
			!slices.Equal(back.Cells(), got.Cells()) || !back.Props.Equal(got.Props) ||
			(back.Geometry == nil) != (got.Geometry == nil) || (got.Geometry != nil && !orb.Equal(back.Geometry, got.Geometry)) {
			t.Fatalf("stored again it changed:\n%+v\n%+v", got, back)
		}
	})
}

// TestDecodeFeatureRefusesBadCoords: a record whose geometry is WKB but
// not a place on Earth (a NaN, a lon of 500) is refused like any damaged
// record (quarantined by Load), instead of reaching the spatial index.
func TestDecodeFeatureRefusesBadCoords(t *testing.T) {
	id := twin.NewID(twin.Vehicles, "v1")
	for _, g := range []orb.Geometry{orb.Point{math.NaN(), 29}, orb.Point{500, 29},
		orb.LineString{{106, 29}, {106, math.Inf(1)}}, orb.Polygon{{{106, 29}, {107, 29}, {107, -91}, {106, 29}}}} {
		b, err := encodeFeature(nil, &twin.Feature{ID: id, Geometry: g, Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if f, err := decodeFeature(id, b, twin.NewPlaceCache()); err == nil {
			t.Errorf("%v decoded: %v", g, f.Geometry)
		}
	}
	b, _ := encodeFeature(nil, &twin.Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Version: 1})
	if _, err := decodeFeature(id, b, twin.NewPlaceCache()); err != nil {
		t.Fatal(err)
	}
}
