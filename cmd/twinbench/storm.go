package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/governance/ogc"
	"github.com/citytwin/citytwin/governance/query"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/paulmach/orb"
)

// runStorm measures what readers cost the apply path (issue 13 item 6):
// cfg.objects vehicles on the demo city, one producer applying telemetry
// paced at cfg.rate samples/s, first alone for cfg.duration, then as long
// again under a read storm: cfg.h3 H3 aggregates of every vehicle a
// second, cfg.ogc OGC items requests over the whole vehicles layer a
// second, and cfg.subscribes websocket-style snapshots a second (a View
// collecting every vehicle in a viewport cfg.viewport of the city's side
// at a random place, as the hub's takeSnapshot does, then the first 1,000
// encoded to JSON). Each kind runs at most 1 (4 for
// snapshots) at once; a tick that finds them all still running is skipped
// and counted, so the storm never queues more work than the machine does.
//
// An apply's latency is counted from when the pacing schedule wanted it to
// start, not from when it started: a producer held up by a lock delays
// every sample behind it, and counting from the actual start would hide
// that (coordinated omission). Samples still unapplied when the phase ends
// count as late as they are then.
func runStorm(ctx context.Context, cfg config, w io.Writer) error {
	city, err := demo.Generate(demo.Options{Scale: cfg.scale})
	if err != nil {
		return err
	}
	loc := locate.New()
	loc.Reset(city.Features[twin.Regions], city.Features[twin.Grids])
	tw := twin.New(twin.Options{Enricher: loc, FeedSize: cfg.feed})
	tw.Load(city.All())
	box := demo.Box()
	rng := rand.New(rand.NewPCG(1, 2))
	pos := make([]orb.Point, cfg.objects)
	vs := make([]*twin.Feature, cfg.objects)
	ids := make([]twin.ID, cfg.objects)
	for i := range vs {
		ids[i] = twin.NewID(twin.Vehicles, fmt.Sprintf("st%06d", i))
		pos[i] = orb.Point{box.Min[0] + rng.Float64()*(box.Max[0]-box.Min[0]), box.Min[1] + rng.Float64()*(box.Max[1]-box.Min[1])}
		vs[i] = &twin.Feature{ID: ids[i], Geometry: pos[i],
			Props: twin.NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 30.0})}
	}
	tw.Load(vs)
	// A feed consumer keeps the window moving, as the hub and writer do.
	cursor := tw.Feed().Subscribe()
	defer cursor.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		last := tw.Feed().Last()
		for {
			select {
			case <-done:
				return
			case <-cursor.C():
			}
			for {
				cs, err := tw.Feed().Since(last, 4096)
				if err != nil {
					last = tw.Feed().Last()
					break
				}
				if len(cs) == 0 {
					break
				}
				last = cs[len(cs)-1].Seq
			}
		}
	}()
	runtime.GC()
	base := time.Now().Add(-time.Hour)
	var step atomic.Int64
	// apply returns each sample's lateness (from its scheduled start) and
	// service time (the ApplySample call alone: what a lock wait shows in).
	apply := func(d time.Duration) (lat, svc []time.Duration) {
		lat = make([]time.Duration, 0, int(float64(cfg.rate)*d.Seconds())+1)
		svc = make([]time.Duration, 0, cap(lat))
		interval := time.Second / time.Duration(cfg.rate)
		start := time.Now()
		end := start.Add(d)
		for n := 0; ; n++ {
			due := start.Add(time.Duration(n) * interval)
			if due.After(end) {
				break
			}
			now := time.Now()
			if now.Before(due) {
				time.Sleep(due.Sub(now))
			} else if now.After(end) {
				// The phase is over and the producer is behind: the
				// samples not applied yet count as late as they are now.
				for ; !due.After(end); n++ {
					lat = append(lat, now.Sub(due))
					due = start.Add(time.Duration(n+1) * interval)
				}
				break
			}
			s := step.Add(1)
			i := int(s) % len(pos)
			p := &pos[i]
			p[0] += 0.0001
			if p[0] > box.Max[0] {
				p[0] = box.Min[0]
			}
			t0 := time.Now()
			_, _, err := tw.ApplySample(twin.Sample{ID: ids[i],
				Time: base.Add(time.Duration(s) * time.Millisecond), HasPos: true, Pos: *p, HasSpeed: true, SpeedKmh: 31})
			if err != nil {
				panic(err)
			}
			t1 := time.Now()
			svc = append(svc, t1.Sub(t0))
			lat = append(lat, t1.Sub(due))
		}
		return lat, svc
	}
	fmt.Fprintf(w, "storm        %d vehicles + %d city objects, applying %d samples/s for %s per phase; GOMAXPROCS %d\n",
		cfg.objects, tw.Len()-cfg.objects, cfg.rate, cfg.duration, runtime.GOMAXPROCS(0))
	quiet, quietSvc := apply(cfg.duration)
	fmt.Fprintf(w, "quiet        lateness %s\n             service  %s; load average %s\n", latencies(quiet), latencies(quietSvc), loadAvg())

	stop := cfg.startCPU()
	admin := auth.Principal{Subject: "bench", Role: auth.Admin, Region: auth.CityCode}
	qa := query.New(tw, query.Options{})
	oa := ogc.New(tw, ogc.Options{})
	mux := http.NewServeMux()
	for _, r := range oa.Routes() {
		mux.Handle(r.Pattern, r.Handler)
	}
	stormCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	world := orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}
	rng2 := &lockedRand{r: rand.New(rand.NewPCG(3, 4))}
	type reads struct {
		name          string
		perSec, limit int
		fn            func()
		n, t, skipped atomic.Int64
	}
	kinds := []*reads{
		{name: "h3 res 8 over every vehicle", perSec: cfg.h3, limit: 1,
			fn: func() { qa.Aggregate(admin, twin.Vehicles, 8, world, "") }},
		{name: "ogc items of every vehicle (limit 10000)", perSec: cfg.ogc, limit: 1, fn: func() {
			req := httptest.NewRequest(http.MethodGet, "/ogc/collections/vehicles/items?limit=10000", nil)
			req = req.WithContext(auth.WithPrincipal(stormCtx, admin))
			rec := &discardWriter{h: http.Header{}}
			mux.ServeHTTP(rec, req)
			if rec.code != http.StatusOK && stormCtx.Err() == nil {
				panic(fmt.Sprintf("ogc items: %d", rec.code))
			}
		}},
		{name: fmt.Sprintf("snapshots of %.0f%% of the city", 100*cfg.viewport*cfg.viewport), perSec: cfg.subscribes, limit: 4, fn: func() {
			// As the hub's takeSnapshot: collect the view, encode after.
			var fs []*twin.Feature
			vp := viewport(box, cfg.viewport, rng2)
			tw.View(func(_ uint64, r twin.Reader) {
				r.Search(twin.Vehicles, vp, func(f *twin.Feature) bool { fs = append(fs, f); return true })
			})
			enc := json.NewEncoder(io.Discard)
			for _, f := range fs[:min(len(fs), 1000)] {
				_ = enc.Encode(f)
			}
		}},
	}
	for _, k := range kinds {
		if k.perSec <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(k.perSec))
			defer tick.Stop()
			inflight := make(chan struct{}, k.limit)
			for {
				select {
				case <-stormCtx.Done():
					return
				case <-tick.C:
				}
				select {
				case inflight <- struct{}{}:
				default:
					k.skipped.Add(1) // the last ones still run: the machine is saturated
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-inflight }()
					t0 := time.Now()
					k.fn()
					k.t.Add(int64(time.Since(t0)))
					k.n.Add(1)
				}()
			}
		}()
	}
	storm, stormSvc := apply(cfg.duration)
	la := loadAvg()
	cancel()
	wg.Wait()
	stop()
	fmt.Fprintf(w, "storm        lateness %s\n             service  %s; load average %s\n", latencies(storm), latencies(stormSvc), la)
	for _, k := range kinds {
		mean := time.Duration(0)
		if k.n.Load() > 0 {
			mean = time.Duration(k.t.Load() / k.n.Load())
		}
		fmt.Fprintf(w, "readers      %s: %d/s asked, %d done, mean %s, %d skipped (%d at once at most)\n",
			k.name, k.perSec, k.n.Load(), mean.Round(time.Millisecond), k.skipped.Load(), k.limit)
	}
	return nil
}

// latencies summarises apply latencies.
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	r := func(x time.Duration) string { return x.Round(time.Microsecond).String() }
	return fmt.Sprintf("n %d p50 %s p99 %s p99.9 %s max %s", len(d), r(q(0.5)), r(q(0.99)), r(q(0.999)), r(d[len(d)-1]))
}

// discardWriter is an http.ResponseWriter that keeps the status only.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(b), nil
}
func (d *discardWriter) WriteHeader(c int) { d.code = c }

// viewport is a square part of box, frac of its side, at a random place.
func viewport(box orb.Bound, frac float64, r *lockedRand) orb.Bound {
	if frac >= 1 {
		return box
	}
	w, h := (box.Max[0]-box.Min[0])*frac, (box.Max[1]-box.Min[1])*frac
	x, y := r.float(), r.float()
	lo := orb.Point{box.Min[0] + x*(box.Max[0]-box.Min[0]-w), box.Min[1] + y*(box.Max[1]-box.Min[1]-h)}
	return orb.Bound{Min: lo, Max: orb.Point{lo[0] + w, lo[1] + h}}
}

type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) float() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}
