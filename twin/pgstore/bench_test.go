package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/paulmach/orb"
)

// buildings makes n small building polygons with typical props.
func buildings(n, version int) []*twin.Feature {
	fs := make([]*twin.Feature, n)
	now := time.Now()
	for i := range fs {
		x, y := 106.4+float64(i%1000)*1e-4, 29.5+float64(i/1000)*1e-4
		ring := orb.Ring{{x, y}, {x + 5e-5, y}, {x + 5e-5, y + 5e-5}, {x, y + 5e-5}, {x, y}}
		fs[i] = &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprint("b", i)), Geometry: orb.Polygon{ring},
			Version: uint64(version), Updated: twin.StampOf(now), Place: twin.NewPlace([]string{"500000", "500105", "500105002"}, "g1"),
			Props: twin.NewProps(map[string]any{"name": "building", "height_m": 24.0, "levels": 8.0, "risk_level": 4.0, "risk_color": "blue"})}
		fs[i].SetCell(0x8930e1d8a2fffff)
		fs[i].SetSource(fmt.Sprint("osm:w", i))
	}
	return fs
}

// BenchmarkUpsert measures bulk upsert throughput (COPY + INSERT ON CONFLICT)
// of batches of 5000 buildings, each op updating existing rows.
func BenchmarkUpsert(b *testing.B) {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgtest.Migrated(b), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 5000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Upsert(ctx, buildings(batch, i+1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "features/s")
}

// BenchmarkLoad measures streaming 50,000 buildings back.
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgtest.Migrated(b), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 50000
	all := buildings(n, 1)
	for i := 0; i < n; i += 10000 {
		if err := s.Upsert(ctx, all[i:i+10000]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got := 0
		if err := s.Load(ctx, func(*twin.Feature) error { got++; return nil }); err != nil || got != n {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "features/s")
}
