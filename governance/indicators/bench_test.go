package indicators

import (
	"fmt"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// BenchmarkDrainTelemetry: the consumer's cost per telemetry change (a
// device reading that changes no status), the bulk of the feed, which a
// required consumer must keep up with.
func BenchmarkDrainTelemetry(b *testing.B) {
	tw := twin.New(twin.Options{FeedSize: 1 << 20})
	const n = 1000
	for i := range n {
		_, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Devices, fmt.Sprint("d", i)), Geometry: orb.Point{106.5, 29.5},
			Place: twin.NewPlace([]string{"500000", "500105", "500105001"}, ""), Props: twin.NewProps(map[string]any{"status": "online"})})
	}
	s := New(tw, nil, Options{})
	s.cur = tw.Feed().Follow("indicators", twin.Required, tw.Feed().Last())
	s.after = tw.Feed().Last()
	s.mu.Lock()
	s.reconcile()
	s.mu.Unlock()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	done := 0
	for done < b.N {
		// The feed holds at most 1<<20 changes: drain in rounds, timing only
		// the drains.
		b.StopTimer()
		k := min(b.N-done, 1<<19)
		for i := range k {
			_, _, _ = tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Devices, fmt.Sprint("d", (done+i)%n)), Time: t0.Add(time.Duration(done+i) * time.Millisecond),
				Values: twin.ReadingsOf(map[string]float64{"ch4": 0.1})})
		}
		b.StartTimer()
		s.drain()
		done += k
	}
}
