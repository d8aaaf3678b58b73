package boltstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// TestWriteBatchPauses: a store opened with Options.Pause pauses once per
// pacedItems objects and samples a WriteBatch puts, and what it stores is
// the whole batch; one opened without never pauses.
func TestWriteBatchPauses(t *testing.T) {
	const objects, perObject = 700, 3
	var fs []*twin.Feature
	var ss []twin.Sample
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for i := range objects {
		id := twin.NewID(twin.Vehicles, fmt.Sprintf("v%04d", i))
		fs = append(fs, &twin.Feature{ID: id, Version: 1, Geometry: orb.Point{106.5, 29.5}, Props: twin.NewProps(map[string]any{"n": i})})
		for k := range perObject {
			ss = append(ss, twin.Sample{ID: id, Time: t0.Add(time.Duration(k) * time.Second), Pos: orb.Point{106.5 + float64(k)*1e-4, 29.5}, HasPos: true})
		}
	}
	for _, tc := range []struct {
		name  string
		pause time.Duration
		want  int
	}{
		// Each sample ticks twice: grouped, then encoded and put.
		{"paused", time.Microsecond, (objects + 2*objects*perObject) / pacedItems},
		{"no pause", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), Options{Pause: tc.pause})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pauses := 0
			if s.pause != nil {
				s.pause = func() { pauses++ } // the same calls, counted
			}
			ctx := context.Background()
			if err := s.WriteBatch(ctx, nil, fs, ss, "", nil); err != nil {
				t.Fatal(err)
			}
			if pauses != tc.want {
				t.Errorf("%d pauses for %d objects and %d samples, want %d", pauses, len(fs), len(ss), tc.want)
			}
			for _, i := range []int{0, objects / 2, objects - 1} {
				id := fs[i].ID
				if _, err := s.Get(ctx, id); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
				h, err := s.History(ctx, id, t0, t0.Add(time.Hour), 0)
				if err != nil || len(h) != perObject {
					t.Fatalf("%s history: %d samples, %v; want %d", id, len(h), err, perObject)
				}
			}
		})
	}
}
