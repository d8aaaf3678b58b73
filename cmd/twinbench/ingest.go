package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
)

// runIngest loads the scale-1 demo city into a twin with the locator,
// registers cfg.objects vehicles, and has cfg.workers goroutines decode and
// apply telemetry payloads (each vehicle driving east in steps of cfg.step
// degrees) as fast as they can for cfg.duration, while one consumer drains
// the feed as the websocket hub and writer do.
func runIngest(ctx context.Context, cfg config, w io.Writer) error {
	city, err := demo.Generate(demo.Options{Scale: cfg.scale})
	if err != nil {
		return err
	}
	loc := locate.New()
	loc.Reset(city.Features[twin.Regions], city.Features[twin.Grids])
	tw := twin.New(twin.Options{Enricher: loc, FeedSize: cfg.feed})
	tw.Load(city.All())
	box := demo.Box()
	names := make([]string, cfg.objects)
	for i := range names {
		names[i] = fmt.Sprintf("tb%06d", i)
		id := twin.NewID(twin.Vehicles, names[i])
		if _, err := tw.Put(&twin.Feature{ID: id, Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
			return err
		}
	}
	// Pre-render payloads: each worker owns a slice of the vehicles.
	base := time.Now().Add(-time.Hour).UnixMilli()
	cursor := tw.Feed().Subscribe()
	defer cursor.Close()
	var consumed atomic.Int64
	done := make(chan struct{})
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
				consumed.Add(int64(len(cs)))
			}
		}
	}()
	runtime.GC()
	stop := cfg.startCPU()
	var applied, failed atomic.Int64
	deadline := time.Now().Add(cfg.duration)
	t0 := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < cfg.workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 0, 160)
			var n, bad int64
			for step := int64(1); ; step++ {
				if step%64 == 0 && time.Now().After(deadline) {
					break
				}
				for i := g; i < len(names); i += cfg.workers {
					lon := box.Min[0] + 0.05 + float64(i%251)*0.0003 + float64(step%200)*cfg.step
					lat := box.Min[1] + 0.05 + float64(i/251)*0.0002
					buf = fmt.Appendf(buf[:0], `{"ts":%d,"lon":%.6f,"lat":%.6f,"speed_kmh":32.5,"heading":90}`, base+step*1000, lon, lat)
					m, err := telemetry.Decode(buf, t0, telemetry.Limits{})
					if err != nil {
						bad++
						continue
					}
					if _, err := telemetry.Apply(tw, names[i], m, false); err != nil {
						bad++
						continue
					}
					n++
					if n%1024 == 0 && time.Now().After(deadline) {
						break
					}
				}
				if time.Now().After(deadline) {
					break
				}
			}
			applied.Add(n)
			failed.Add(bad)
		}(g)
	}
	wg.Wait()
	took := time.Since(t0)
	stop()
	close(done)
	runtime.GC()
	if cfg.memprofile != "" {
		if err := writeHeap(cfg.memprofile); err != nil {
			return err
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "ingest       %d msgs applied (%d failed) in %s by %d workers: %.0f msgs/s; feed consumer saw %d; GOMAXPROCS %d, load average %s, heap in use after GC %d MB (feed window %d changes)\n",
		applied.Load(), failed.Load(), took.Round(time.Millisecond), cfg.workers, float64(applied.Load())/took.Seconds(),
		consumed.Load(), runtime.GOMAXPROCS(0), loadAvg(), ms.HeapInuse>>20, cfg.feed)
	return nil
}
