package twin

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// TestAppendChangeAsJSON: the hand-written record decodes to exactly what
// encoding/json's record of the same change decodes to, for an upsert
// with every field (escapes, non-ASCII, full-precision floats), a bare
// removal and a history sample; a non-finite number is left to
// encoding/json.
func TestAppendChangeAsJSON(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CST", 8*3600))
	id := NewID(Vehicles, `v"1\解放碑`)
	cs := []Change{
		{Seq: 42, Kind: Upsert, Time: ts, New: &Feature{ID: id, Geometry: orb.Point{106.123456789012345, 29.1},
			Props: NewProps(map[string]any{"name": "解放碑\n", "lanes": 4.0, "tags": []any{"a", 1e-9}}), Version: 7, Updated: ts,
			Observed: ts.Add(-time.Second), Region: []string{"500000", "500103"}, Grid: "g\t1", Cells: []uint64{1, math.MaxUint64}, Source: "osm:w1"},
			Sample: &Sample{ID: id, Time: ts, HasPos: true, Pos: orb.Point{106.1, -29.000000000001}, HasSpeed: true, SpeedKmh: 33.3,
				HasHeading: true, Heading: 359.9, Values: map[string]float64{"b": 0.1, "a": -2e300}}},
		{Seq: 43, Kind: Remove, Time: ts},
		{Seq: 44, Kind: History, Time: ts, New: &Feature{ID: id, Props: NewProps(map[string]any{})}, Sample: &Sample{ID: id, Time: ts.Add(-time.Hour)}},
	}
	for _, c := range cs {
		lc := logChange{Seq: c.Seq, Kind: c.Kind, Time: c.Time, Layer: id.Layer, Name: id.Name}
		if c.New != nil {
			lc.New = &logFeature{Props: c.New.Props, Version: c.New.Version, Updated: c.New.Updated, Observed: c.New.Observed,
				Region: c.New.Region, Grid: c.New.Grid, Cells: c.New.Cells, Source: c.New.Source}
			if c.New.Geometry != nil {
				lc.New.Geometry = json.RawMessage(`{"type":"Point","coordinates":[106.123456789012345,29.1]}`)
			}
		}
		if s := c.Sample; s != nil {
			lc.Sample = &logSample{Time: s.Time, HasPos: s.HasPos, Pos: s.Pos, HasSpeed: s.HasSpeed, SpeedKmh: s.SpeedKmh,
				HasHeading: s.HasHeading, Heading: s.Heading, Values: s.Values}
		}
		fast, ok := appendChange(nil, &lc)
		if !ok {
			t.Fatalf("change %d not written", c.Seq)
		}
		std, err := json.Marshal(lc)
		if err != nil {
			t.Fatal(err)
		}
		a, err := UnmarshalChange(fast)
		if err != nil {
			t.Fatalf("change %d: %v in %s", c.Seq, err, fast)
		}
		b, err := UnmarshalChange(std)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("change %d:\nfast %s\njson %s", c.Seq, fast, std)
		}
	}
	bad := logChange{Seq: 1, Kind: History, Time: ts, Sample: &logSample{Time: ts, SpeedKmh: math.NaN()}}
	if _, ok := appendChange(nil, &bad); ok {
		t.Fatal("NaN written")
	}
}
