package rules

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// benchWorld is a twin with n short bridge-like line fences scattered over
// a 50 x 55 km box of Chongqing, 1000 muck trucks, and the demo bridge rule
// (cross + inside, buffer 15 m, restriction windows from the fence props).
func benchWorld(b *testing.B, n int) (*twin.Twin, *Engine, []twin.Sample) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	clk := clock.NewFake(time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai))
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 1 << 20})
	fences := make([]*twin.Feature, 0, n)
	for i := 0; i < n; i++ {
		a := orb.Point{106.3 + r.Float64()*0.5, 29.3 + r.Float64()*0.5}
		fences = append(fences, &twin.Feature{ID: twin.NewID(twin.Bridges, fmt.Sprintf("f%d", i)),
			Geometry: orb.LineString{a, offset(a, r.Float64()*300-150, r.Float64()*300-150)},
			Props: twin.NewProps(map[string]any{"connects": []any{"500103", "500105"},
				"restrictions": map[string]any{"muck_truck": map[string]any{"forbidden": []any{"07:00-09:00", "17:00-19:30"}}}})})
	}
	tw.Load(fences)
	const trucks = 1000
	pos := make([]orb.Point, trucks)
	for i := range pos {
		pos[i] = orb.Point{106.3 + r.Float64()*0.5, 29.3 + r.Float64()*0.5}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("t%d", i)), Geometry: pos[i],
			Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
			b.Fatal(err)
		}
	}
	// 200 fixes per truck, ~15 m/s, a fix every 3 s (45 m apart).
	samples := make([]twin.Sample, 0, trucks*200)
	t0 := clk.Now()
	head := make([]float64, trucks)
	for k := 0; k < 200; k++ {
		for i := range pos {
			head[i] += r.Float64()*0.4 - 0.2
			pos[i] = offset(pos[i], 45*sinCos(head[i], true), 45*sinCos(head[i], false))
			samples = append(samples, twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("t%d", i)),
				Time: t0.Add(time.Duration(k+1) * 3 * time.Second), HasPos: true, Pos: pos[i]})
		}
	}
	rs, err := Parse("bench.yaml", []byte(`
rules:
  - name: bridge-muck
    kind: geofence
    severity: orange
    subjects: {layer: vehicles, when: 'obj.kind == "muck_truck"'}
    target: {layer: bridges}
    detect: [cross, inside]
    buffer_m: 15
    windows_from: restrictions.muck_truck.forbidden
`))
	if err != nil {
		b.Fatal(err)
	}
	e := New(tw, Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e.Load(rs)
	return tw, e, samples
}

func sinCos(a float64, sin bool) float64 {
	if sin {
		return math.Sin(a)
	}
	return math.Cos(a)
}

// BenchmarkEvalPerUpdate is the engine's cost per vehicle update (the
// changes are made beforehand; only rule evaluation is timed).
func BenchmarkEvalPerUpdate(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("fences=%d", n), func(b *testing.B) {
			tw, e, samples := benchWorld(b, n)
			changes := make([]twin.Change, 0, len(samples))
			after := tw.Feed().Last()
			for _, s := range samples {
				if _, c, err := tw.ApplySample(s); err == nil {
					changes = append(changes, c)
				}
			}
			e.mu.Lock()
			e.after = after
			e.mu.Unlock()
			b.ResetTimer()
			e.mu.Lock()
			for i := 0; i < b.N; i++ {
				e.process(&changes[i%len(changes)])
			}
			e.mu.Unlock()
		})
	}
}

// BenchmarkIngestPlusRules is ApplySample plus the engine draining the
// feed, with 10k fences: the sustained updates/s of ingest with rules on
// (rules=off is ApplySample alone on the same world, for comparison).
func BenchmarkIngestPlusRules(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("rules=%v", map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) {
			tw, e, samples := benchWorld(b, 10000)
			b.ResetTimer()
			start := time.Now()
			span := samples[len(samples)-1].Time.Sub(samples[0].Time) + 3*time.Second
			for i := 0; i < b.N; i++ {
				s := samples[i%len(samples)]
				if lap := i / len(samples); lap > 0 {
					s.Time = s.Time.Add(time.Duration(lap) * span)
				}
				if _, _, err := tw.ApplySample(s); err != nil {
					b.Fatal(err)
				}
				if on && i%1024 == 1023 {
					e.Drain()
				}
			}
			if on {
				e.Drain()
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "updates/s")
		})
	}
}

// BenchmarkFire is the cost of a firing: 100 trucks step in and out of
// their own 100 m square fence (enter, exit), so every update updates an
// open alert (its count, last time, regions, and 50-entry history) and
// the twin re-packs and re-places it. The alert changes go to no
// consumer but the feed.
func BenchmarkFire(b *testing.B) {
	clk := clock.NewFake(time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai))
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 1 << 16})
	const trucks = 100
	var fences []*twin.Feature
	in, out := make([]orb.Point, trucks), make([]orb.Point, trucks)
	for i := range trucks {
		c := orb.Point{106.40 + float64(i)*0.003, 29.50}
		sq := orb.Polygon{{offset(c, -50, -50), offset(c, 50, -50), offset(c, 50, 50), offset(c, -50, 50), offset(c, -50, -50)}}
		fences = append(fences, &twin.Feature{ID: twin.NewID(twin.Grids, fmt.Sprintf("z%d", i)), Geometry: sq})
		in[i], out[i] = c, offset(c, 0, 120)
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("t%d", i)), Geometry: out[i],
			Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
			b.Fatal(err)
		}
	}
	tw.Load(fences)
	rs, err := Parse("bench.yaml", []byte(`
rules:
  - name: zones
    kind: geofence
    severity: yellow
    subjects: {layer: vehicles}
    target: {layer: grids}
    detect: [enter, exit]
`))
	if err != nil {
		b.Fatal(err)
	}
	e := New(tw, Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e.Load(rs)
	e.Drain()
	t0 := clk.Now()
	step := func(k int) {
		i := k % trucks
		p := out[i]
		if (k/trucks)%2 == 0 {
			p = in[i]
		}
		if _, _, err := tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("t%d", i)),
			Time: t0.Add(time.Duration(k+1) * time.Second), HasPos: true, Pos: p}); err != nil {
			b.Fatal(err)
		}
	}
	for k := range 100 * trucks { // histories full
		step(k)
		e.Drain()
	}
	fired := func() float64 { return testutil.ToFloat64(e.m.fired.WithLabelValues("zones")) }
	before := fired()
	b.ReportAllocs()
	b.ResetTimer()
	for k := range b.N {
		step(100*trucks + k)
		e.Drain()
	}
	b.StopTimer()
	b.ReportMetric((fired()-before)/float64(b.N), "firings/op")
}
