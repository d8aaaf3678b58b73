package sim

import (
	"testing"
	"time"
)

// BenchmarkStep measures one 100 ms Step at the default 500 msg/s (50
// messages: positions or readings, JSON-encoded).
func BenchmarkStep(b *testing.B) {
	s := New(city(b), Options{})
	now := morning
	s.Step(now)
	b.ReportAllocs()
	b.ResetTimer()
	msgs := 0
	for i := 0; i < b.N; i++ {
		now = now.Add(100 * time.Millisecond)
		msgs += len(s.Step(now))
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}
