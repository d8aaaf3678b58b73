// Package loadgen paces the telemetry the load tools (cmd/twinload,
// cmd/wsload) publish: a rate spread over several connections, each owning
// a disjoint set of objects so that every object's timestamps increase.
package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Emit publishes one message for object obj on connection conn with
// timestamp ts (epoch ms, strictly increasing per object).
type Emit func(conn, obj int, ts int64)

// Pace calls emit rate times a second in all, over conns connections, until
// ctx ends, and returns how many it made. Connection c drives objects c,
// c+conns, c+2*conns, ... round-robin. Pacing follows elapsed time in 10 ms
// ticks, so a late tick catches up instead of lowering the rate.
func Pace(ctx context.Context, conns, objects, rate int, emit Emit) int64 {
	return PaceTicks(ctx, conns, objects, rate, emit, nil)
}

// PaceTicks is Pace that also calls tick(conn) on connection conn's
// goroutine after each 10 ms tick's messages, so a publisher that buffers
// its writes can flush once per tick instead of once per message.
func PaceTicks(ctx context.Context, conns, objects, rate int, emit Emit, tick func(conn int)) int64 {
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := range conns {
		var mine []int
		for o := c; o < objects; o += conns {
			mine = append(mine, o)
		}
		if len(mine) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastTS := make([]int64, len(mine))
			perSec := float64(rate) / float64(conns)
			ticker := time.NewTicker(10 * time.Millisecond)
			defer ticker.Stop()
			t0, next := time.Now(), 0
			for {
				select {
				case <-ctx.Done():
					return
				case <-ticker.C:
				}
				for due := int(perSec * time.Since(t0).Seconds()); next < due && ctx.Err() == nil; next++ {
					k := next % len(mine)
					ts := max(time.Now().UnixMilli(), lastTS[k]+1)
					lastTS[k] = ts
					emit(c, mine[k], ts)
					sent.Add(1)
				}
				if tick != nil {
					tick(c)
				}
			}
		}()
	}
	wg.Wait()
	return sent.Load()
}
