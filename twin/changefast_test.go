package twin

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// TestAppendChangeAsJSON: the hand-written record decodes to exactly what
// encoding/json's record of the same change decodes to, for an upsert
// with every field (escapes, non-ASCII, full-precision floats), a bare
// removal and a history sample; a non-finite number is left to
// encoding/json.
func TestAppendChangeAsJSON(t *testing.T) {
	// Changes read from records, so the test holds whatever type the
	// props have.
	var cs []Change
	for _, rec := range []string{
		`{"seq":42,"k":1,"t":"2026-01-02T03:04:05.123456789+08:00","l":"vehicles","n":"v\"1\\解放碑",` +
			`"new":{"g":{"type":"Point","coordinates":[106.123456789012345,29.1]},"p":{"name":"解放碑\n","lanes":4,"tags":["a",1e-9]},` +
			`"v":7,"u":"2026-01-02T03:04:05.123456789+08:00","o":"2026-01-02T03:04:04.123456789+08:00","r":["500000","500103"],` +
			`"grid":"g\t1","c":[1,18446744073709551615],"src":"osm:w1"},` +
			`"s":{"t":"2026-01-02T03:04:05.123456789+08:00","hp":true,"p":[106.1,-29.000000000001],"hs":true,"sp":33.3,"hh":true,"hd":359.9,"vals":{"b":0.1,"a":-2e300}}}`,
		`{"seq":43,"k":2,"t":"2026-01-02T03:04:05Z","l":"vehicles","n":"v1"}`,
		`{"seq":44,"k":3,"t":"2026-01-02T03:04:05Z","l":"vehicles","n":"v1","new":{"v":1,"u":"2026-01-02T03:04:05Z","o":"0001-01-01T00:00:00Z"},"s":{"t":"2026-01-02T02:04:05Z","p":[0,0]}}`,
	} {
		c, err := UnmarshalChange([]byte(rec))
		if err != nil {
			t.Fatalf("%v in %s", err, rec)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		id := c.ID()
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
	ts := time.Unix(1, 0)
	bad := logChange{Seq: 1, Kind: History, Time: ts, Sample: &logSample{Time: ts, SpeedKmh: math.NaN()}}
	if _, ok := appendChange(nil, &bad); ok {
		t.Fatal("NaN written")
	}
}
