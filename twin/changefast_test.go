package twin

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
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
			lc.New = &logFeature{Props: c.New.Props, Version: c.New.Version, Updated: c.New.Updated.Time(), Observed: c.New.Observed.Time(),
				Region: c.New.Region(), Grid: c.New.Grid(), Cells: c.New.Cells(), Source: c.New.Source()}
			if c.New.Geometry != nil {
				lc.New.Geometry = json.RawMessage(`{"type":"Point","coordinates":[106.123456789012345,29.1]}`)
			}
		}
		if s := c.Sample; s != nil {
			lc.Sample = &logSample{Time: s.Time, HasPos: s.HasPos, Pos: s.Pos, HasSpeed: s.HasSpeed, SpeedKmh: s.SpeedKmh,
				HasHeading: s.HasHeading, Heading: s.Heading, Values: s.Values}
		}
		fast, ok := appendChange(nil, &lc, lc.New, lc.Sample)
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
		sameChange(t, a, b)
	}
	ts := time.Unix(1, 0)
	bad := logChange{Seq: 1, Kind: History, Time: ts, Sample: &logSample{Time: ts, SpeedKmh: math.NaN()}}
	if _, ok := appendChange(nil, &bad, bad.New, bad.Sample); ok {
		t.Fatal("NaN written")
	}
}

// TestPointJSONMatchesOrb: the fast point encoding is byte for byte orb's
// geojson marshaller (what followers and older records were written with).
func TestPointJSONMatchesOrb(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	pts := []orb.Point{{0, 0}, {math.Copysign(0, -1), 1e-7}, {106.5, 29.5}, {180, -90}, {1e21, -1e-6}, {123456789.123, 5e-324}, {-179.9999999, 85.0511287798}}
	for range 20000 {
		var p orb.Point
		for i := range p {
			switch r.IntN(3) {
			case 0:
				p[i] = r.Float64()*360 - 180
			case 1:
				p[i] = math.Round((r.Float64()*360-180)*1e6) / 1e6
			default:
				p[i] = math.Ldexp(r.Float64(), r.IntN(200)-100)
			}
		}
		pts = append(pts, p)
	}
	for _, p := range pts {
		want, err := geojson.NewGeometry(p).MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPointJSON(nil, p); string(got) != string(want) {
			t.Fatalf("%v: got %s, orb writes %s", p, got, want)
		}
	}
}

// BenchmarkAppendChange: the leader's per-change cost of the change log
// encoding, for a moving vehicle (point, props, cells, region, sample):
// the binary record AppendChange writes, and the JSON one it wrote before.
func BenchmarkAppendChange(b *testing.B) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 123456789, time.UTC)
	f := &Feature{ID: ID{Layer: "vehicles", Name: "load-42"}, Geometry: orb.Point{106.5512345, 29.5623456},
		Props: NewProps(map[string]any{"kind": "patrol", "plate": "渝A12345", "speed_kmh": 42.5}).Pack(), Version: 17,
		Updated: StampOf(now), Observed: StampOf(now), Place: NewPlace([]string{"500000", "500103", "500103001"}, "g-12")}
	f.SetCell(0x8840c9a4c5fffff)
	c := &Change{Seq: 123456, Kind: Upsert, Time: now, New: f,
		Sample: &Sample{ID: f.ID, Time: now, HasPos: true, Pos: [2]float64{106.5512345, 29.5623456}, HasSpeed: true, SpeedKmh: 42.5, HasHeading: true, Heading: 90}}
	for _, form := range []struct {
		name string
		enc  func([]byte, *Change) ([]byte, error)
	}{{"binary", AppendChange}, {"json", appendChangeJSONRecord}} {
		b.Run(form.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				out, err := form.enc(buf[:0], c)
				if err != nil {
					b.Fatal(err)
				}
				buf = out
			}
			b.ReportMetric(float64(len(buf)), "B/record")
		})
	}
}
