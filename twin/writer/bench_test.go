package writer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/citytwin/citytwin/twin/writer"
	"github.com/paulmach/orb"
)

// benchSamples pushes telemetry for 1000 vehicles through the twin and
// measures end-to-end persistence (state upserts + history rows) per second,
// Flush included.
func benchSamples(b *testing.B, st twin.Store) {
	tw := twin.New(twin.Options{Clock: clock.NewFake(t0)})
	for i := 0; i < 1000; i++ {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106.5, 29.5}}); err != nil {
			b.Fatal(err)
		}
	}
	w := writer.New(tw, st, writer.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	const perOp = 10000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < perOp; j++ {
			k := i*perOp + j
			s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", k%1000)), Time: t0.Add(time.Duration(k) * time.Second),
				HasPos: true, Pos: orb.Point{106.5 + float64(k%997)*1e-5, 29.5}, HasSpeed: true, SpeedKmh: 30}
			if _, _, err := tw.ApplySample(s); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkWriterBolt(b *testing.B) {
	st, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchSamples(b, st)
}

func BenchmarkWriterPostGIS(b *testing.B) {
	st, err := pgstore.Open(context.Background(), pgtest.Migrated(b), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchSamples(b, st)
}
