package changelog_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/changelog"
)

// TestPublishedRuns: the runs the leader hands Options.Published, in
// order, cover every change it made once each, and read back (as the
// replay recorder keeps them: twin.AppendLogRun) as those changes: lone
// changes and runs, compressed or not.
func TestPublishedRuns(t *testing.T) {
	url := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var blob []byte
	var ranges [][2]uint64
	var flagsSeen []byte
	a := join(t, ctx, url, "a", func(o *changelog.Options) {
		o.Published = func(lo, hi uint64, flags byte, body []byte) {
			mu.Lock()
			defer mu.Unlock()
			blob = twin.AppendLogRun(blob, flags, body)
			ranges = append(ranges, [2]uint64{lo, hi})
			flagsSeen = append(flagsSeen, flags)
		}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.node.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	eventually(t, "a leads", a.isLeading)

	var want []string
	put := func(i int, props map[string]any) {
		f := &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i%40)), Geometry: orb.Point{106 + float64(i)*1e-4, 29.5}, Props: twin.NewProps(props)}
		c, err := a.tw.Put(f)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%d %s", c.Seq, f.ID))
	}
	for i := range 2000 { // runs of many changes: compressed
		put(i, map[string]any{"kind": "muck_truck", "plate": "渝A12345", "speed_kmh": 40})
	}
	if _, err := a.node.Committed(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // lone changes, committed one by one
		put(i, map[string]any{"note": strings.Repeat("x", 10+i*300)}) // the last ones big enough to compress
		if _, err := a.node.Committed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	last := a.tw.Feed().Last()
	eventually(t, "every run handed over", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ranges) > 0 && ranges[len(ranges)-1][1] == last
	})
	mu.Lock()
	defer mu.Unlock()
	next := ranges[0][0]
	for _, r := range ranges {
		if r[0] != next || r[1] < r[0] {
			t.Fatalf("run %d-%d after %d", r[0], r[1], next-1)
		}
		next = r[1] + 1
	}
	for _, f := range []byte{twin.LogRunFramed, twin.LogRunS2 | twin.LogRunFramed, twin.LogRunS2} {
		if !slices.Contains(flagsSeen, f) {
			t.Errorf("no run with flags %#x among %x", f, flagsSeen)
		}
	}
	var got []string
	if err := twin.DecodeRecords(blob, func(r *twin.TimelineRecord) error {
		f, err := r.DecodeFeature()
		if err != nil {
			return err
		}
		if f.ID != r.ID {
			return fmt.Errorf("record %s holds %s", r.ID, f.ID)
		}
		got = append(got, fmt.Sprintf("%d %s", r.Seq, r.ID))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || len(got) != 2005 {
		t.Fatalf("%d records read from the runs, want %d; first %v, want %v", len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
	}
}
