package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/paulmach/orb"
)

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

// BenchmarkUpsert: batches of 5000 buildings, each op overwriting them.
func BenchmarkUpsert(b *testing.B) {
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 5000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Upsert(context.Background(), buildings(batch, i+1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "features/s")
}

// BenchmarkLoad streams 200,000 buildings back.
func BenchmarkLoad(b *testing.B) {
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 200000
	all := buildings(n, 1)
	for i := 0; i < n; i += 50000 {
		if err := s.Upsert(context.Background(), all[i:i+50000]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got := 0
		if err := s.Load(context.Background(), func(*twin.Feature) error { got++; return nil }); err != nil || got != n {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "features/s")
}

// BenchmarkLoad1M loads one million buildings; it writes a ~400 MB file, so
// it runs only with TWIN_BENCH_1M=1.
func BenchmarkLoad1M(b *testing.B) {
	if os.Getenv("TWIN_BENCH_1M") == "" {
		b.Skip("set TWIN_BENCH_1M=1")
	}
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n, chunk = 1000000, 50000
	for i := 0; i < n; i += chunk {
		fs := buildings(chunk, 1)
		for j, f := range fs {
			f.ID.Name = fmt.Sprint("b", i+j)
		}
		if err := s.Upsert(context.Background(), fs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got := 0
		if err := s.Load(context.Background(), func(*twin.Feature) error { got++; return nil }); err != nil || got != n {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/load")
}

// BenchmarkFlush is one writer flush at 50,000 msgs/s with a 200 ms
// interval: 10,000 samples of 50,000 moving vehicles and their 10,000
// latest states, as one WriteBatch (one transaction) or as the separate
// Upsert, AppendHistory and PutMeta transactions. History keeps growing
// over the run, as it does in the server.
func BenchmarkFlush(b *testing.B) {
	const objects, perFlush = 50000, 10000
	vehicles := make([]*twin.Feature, objects)
	for i := range vehicles {
		vehicles[i] = &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("load-%d", i)), Geometry: orb.Point{106.5, 29.5},
			Version: 1, Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 30.0})}
	}
	t0 := time.Now()
	batch := func(n int) ([]*twin.Feature, []twin.Sample) {
		fs := make([]*twin.Feature, perFlush)
		ss := make([]twin.Sample, perFlush)
		for j := range ss {
			k := (n*perFlush + j*7919) % objects
			v := *vehicles[k]
			v.Version = uint64(n + 2)
			fs[j] = &v
			ss[j] = twin.Sample{ID: v.ID, Time: t0.Add(time.Duration(n*perFlush+j) * 20 * time.Microsecond),
				HasPos: true, Pos: orb.Point{106.5, 29.5}, HasSpeed: true, SpeedKmh: 30}
		}
		return fs, ss
	}
	for _, mode := range []string{"WriteBatch", "separate"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s := storeHolding(b, vehicles)
			var err error
			n := 0
			for b.Loop() {
				fs, ss := batch(n)
				n++
				if mode == "WriteBatch" {
					err = s.WriteBatch(ctx, nil, fs, ss, "feed_seq", []byte{byte(n)})
				} else if err = s.Upsert(ctx, fs); err == nil {
					if err = s.AppendHistory(ctx, ss); err == nil {
						err = s.PutMeta(ctx, "feed_seq", []byte{byte(n)})
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*perFlush)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkHistoryHour queries one object's hour (3,600 samples, one per
// 1 s chunk) among 200 objects reporting every second: the chunk-major
// layout costs a seek per non-empty chunk in the range.
func BenchmarkHistoryHour(b *testing.B) {
	ctx := context.Background()
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const objects, seconds = 200, 3600
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	for sec := 0; sec < seconds; sec += 60 {
		ss := make([]twin.Sample, 0, objects*60)
		for d := 0; d < 60; d++ {
			for o := 0; o < objects; o++ {
				ss = append(ss, twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", o)),
					Time: t0.Add(time.Duration(sec+d)*time.Second + time.Duration(o)*time.Millisecond), HasSpeed: true, SpeedKmh: 1})
			}
		}
		if err := s.AppendHistory(ctx, ss); err != nil {
			b.Fatal(err)
		}
	}
	id := twin.NewID(twin.Vehicles, "v17")
	for b.Loop() {
		h, err := s.History(ctx, id, time.Time{}, time.Time{}, 0)
		if err != nil || len(h) != seconds {
			b.Fatal(len(h), err)
		}
	}
}

// BenchmarkFlushFleet is one writer flush of the geofenced-writes
// benchmark (scripts/bench-fences.sh): 5,000 vehicles at ~150k updates/s
// with a 200 ms interval, so 30,000 samples, six of each vehicle, and the
// vehicles' 5,000 latest states. Grouping the samples by object is where
// the history differs from BenchmarkFlush's one sample per object.
func BenchmarkFlushFleet(b *testing.B) {
	const objects, each = 5000, 6
	vehicles := make([]*twin.Feature, objects)
	for i := range vehicles {
		vehicles[i] = &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("fleet-%d", i)), Geometry: orb.Point{106.5, 29.5},
			Version: 1, Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}
	}
	ctx := context.Background()
	s := storeHolding(b, vehicles)
	t0 := time.Now()
	ss := make([]twin.Sample, objects*each)
	n := 0
	for b.Loop() {
		for j := range ss {
			// Round after round of the fleet, as the load tool sends it.
			ss[j] = twin.Sample{ID: vehicles[j%objects].ID, Time: t0.Add(time.Duration(n*len(ss)+j) * 6 * time.Microsecond),
				HasPos: true, Pos: orb.Point{106.5, 29.5}}
		}
		n++
		if err := s.WriteBatch(ctx, nil, vehicles, ss, "feed_seq", []byte{byte(n)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ss))/b.Elapsed().Seconds(), "samples/s")
}

// storeHolding opens a store in a temporary directory, closed when b
// ends, holding fs.
func storeHolding(b *testing.B, fs []*twin.Feature) *boltstore.Store {
	b.Helper()
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Upsert(context.Background(), fs); err != nil {
		b.Fatal(err)
	}
	return s
}
