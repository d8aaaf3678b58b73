package demo

import (
	"runtime"
	"testing"
)

// BenchmarkGenerate measures generation time and allocation per city.
func BenchmarkGenerate(b *testing.B) {
	for _, sc := range []int{1, 20} {
		b.Run(map[int]string{1: "scale1", 20: "scale20"}[sc], func(b *testing.B) {
			if sc > 1 && testing.Short() {
				b.Skip("scale 20 in -short")
			}
			b.ReportAllocs()
			var heap uint64
			for i := 0; i < b.N; i++ {
				c, err := Generate(Options{Scale: sc})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = ms.HeapAlloc
				runtime.KeepAlive(c)
			}
			b.ReportMetric(float64(heap)/(1<<20), "live-MB")
		})
	}
}
