package writer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/logtest"
	"github.com/citytwin/citytwin/twin/writer"
)

// TestBackfillInsteadOfResync: a writer that starts (as a new leader's
// does) at a seq its feed no longer holds reads the changes in between
// from the change log (Options.Backfill): every telemetry sample is in
// the history and the stored state is the twin's, with no resync, also
// when the batch fills up on the way (MaxBatch) and when the log fails
// once (it is asked again). Without the log it resyncs: the state is
// right, the history has a hole.
func TestBackfillInsteadOfResync(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backfill bool
		maxBatch int
		failOnce bool
	}{
		{"from the log", true, 0, false},
		{"from the log, in batches", true, 37, false},
		{"log away once", true, 0, true},
		{"no log", false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := boltstore.Open(t.TempDir(), boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			tw := twin.New(twin.Options{Clock: clock.NewFake(t0), FeedSize: 16})
			log := logtest.New(tw)
			const vehicles, fixes = 5, 60
			id := func(v int) twin.ID { return twin.NewID(twin.Vehicles, fmt.Sprint("v", v)) }
			for v := range vehicles {
				put(t, tw, twin.Vehicles, fmt.Sprint("v", v), orb.Point{106, 29})
				log.Keep(t)
			}
			for k := 1; k <= fixes; k++ {
				for v := range vehicles {
					s := twin.Sample{ID: id(v), Time: t0.Add(time.Duration(k) * time.Second), HasPos: true, Pos: orb.Point{106 + float64(k)*1e-4, 29 + float64(v)*1e-3}}
					if _, _, err := tw.ApplySample(s); err != nil {
						t.Fatal(err)
					}
					log.Keep(t)
				}
			}
			if _, err := tw.Delete(id(4)); err != nil {
				t.Fatal(err)
			}
			log.Keep(t)
			opts := writer.Options{FlushInterval: 5 * time.Millisecond, MaxBatch: tc.maxBatch}
			if tc.backfill {
				opts.Backfill = log.Changes
			}
			if tc.failOnce {
				failed := false
				opts.Backfill = func(ctx context.Context, after, upto uint64, fn func(*twin.Change) error) error {
					if !failed {
						failed = true
						return errors.New("nats: timeout")
					}
					return log.Changes(ctx, after, upto, fn)
				}
			}
			reg := prometheus.NewRegistry()
			opts.Registerer = reg
			w := writer.New(tw, bs, opts)
			w.ResumeAt(0) // the store holds nothing yet; the feed begins at ~300
			startWriter(t, w)
			flush(t, w)
			assertSame(t, tw, bs)
			total := 0
			for v := range vehicles {
				ss, err := bs.History(context.Background(), id(v), t0, t0.Add(time.Hour), 0)
				if err != nil {
					t.Fatal(err)
				}
				total += len(ss)
			}
			resyncs := promtest.Value(t, reg, "twin_writer_resyncs_total")
			if tc.backfill {
				if total != vehicles*fixes || resyncs != 0 {
					t.Fatalf("%d samples in the history, want %d; %v resyncs, want 0", total, vehicles*fixes, resyncs)
				}
				if tc.maxBatch > 0 && log.Calls() < 2 {
					t.Fatalf("the log was read %d times; with MaxBatch %d, want it read on after a flush", log.Calls(), tc.maxBatch)
				}
				return
			}
			if total >= vehicles*fixes || resyncs < 1 {
				t.Fatalf("without the log: %d samples, %v resyncs; want a hole and a resync", total, resyncs)
			}
		})
	}
}
