// Package gctune keeps a floor under the heap the Go GC lets grow between
// two cycles: GOGC is raised while the live heap is small, so that at
// least MinHeadroom bytes may be allocated before the next cycle, and left
// at its base once the live heap alone gives that much.
//
// Why: under GOGC=100 a cycle starts when the heap has doubled, so a
// server with a small live heap and a steady allocation rate collects
// often, and on one core each cycle's mark (tens to a couple of hundred
// milliseconds of wall time, a quarter of the processor and the
// allocators' assists) is what the websocket fan-out's worst latencies
// are made of: at 20,000 msgs/s with 200 clients the demo city's 140 MB
// live heap was collected every ~4 s, and p99 went over 50 ms in the
// seconds that held a mark (issue 16 goal 6). GOGC=400 kept it under 50
// ms, at 150-200 MB more RSS; the floor buys that where the heap is small
// and costs nothing where it is large (a million objects keep GOGC's own
// proportion). It is the GC tuner several Go services run, not a ballast:
// the floor is headroom the heap may use, never memory taken up front.
//
// GOMEMLIMIT still bounds the whole heap (the runtime collects at the
// limit whatever GOGC says), so a container's limit wins over the floor.
// An explicit GOGC in the environment is the operator's: Run leaves it.
package gctune

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure Run. MinHeadroom 0 disables it.
type Options struct {
	// MinHeadroom is the least heap growth allowed between two cycles.
	MinHeadroom uint64
	// MaxPercent caps the GOGC it sets (default 1000).
	MaxPercent int
	// Every is how often the live heap is read (default 1 s): it moves
	// slowly, and a setting a second late costs at most one early cycle.
	Every time.Duration
	// Registerer receives twin_gc_percent; nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Percent is the GOGC that gives a live heap of live bytes at least
// minHeadroom of growth, never below base nor above maxPct.
func Percent(live, minHeadroom uint64, base, maxPct int) int {
	if live == 0 || minHeadroom == 0 {
		return base
	}
	p := int(math.Ceil(float64(minHeadroom) * 100 / float64(live)))
	return max(base, min(p, maxPct))
}

// Run adjusts GOGC until ctx ends, then sets it back to its base. It
// returns at once when MinHeadroom is 0, GOGC is set in the environment,
// or the GC is off.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPercent <= 0 {
		o.MaxPercent = 1000
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.MinHeadroom == 0 {
		return nil
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		o.Logger.Info("GOGC is set; the GC headroom floor is off", "GOGC", v)
		return nil
	}
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		return nil
	}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "twin_gc_percent",
		Help: "The GOGC in force: raised while the live heap is small so that a GC cycle waits for at least --gc-min-headroom of allocation."})
	if o.Registerer != nil {
		o.Registerer.MustRegister(gauge)
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	cur := base
	gauge.Set(float64(cur))
	defer debug.SetGCPercent(base)
	tick := time.NewTicker(o.Every)
	defer tick.Stop()
	var cycles uint64
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[1].Value.Kind() == metrics.KindUint64 {
			p := Percent(sample[0].Value.Uint64(), o.MinHeadroom, base, o.MaxPercent)
			n := sample[1].Value.Uint64()
			// A higher GOGC only gives the heap more room; a lower one
			// moves the next cycle's goal down, and set late in a cycle
			// (the heap already near the old goal) it starts the next
			// cycle at once with the allocating goroutines assisting
			// hard: lowered only in the tick after a cycle ended, when
			// the heap is about what the cycle left live.
			if p > cur || (p < cur && n != cycles) {
				debug.SetGCPercent(p)
				cur = p
				gauge.Set(float64(p))
			}
			cycles = n
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
