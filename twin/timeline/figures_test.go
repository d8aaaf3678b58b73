package timeline_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/demo/sim"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/timeline"
	"github.com/paulmach/orb"
)

// TestReplayFigures measures the README's replay figures (not run by
// default; it writes about a gigabyte): TWIN_REPLAY_FIGURES=SCALE
// [TWIN_REPLAY_RATE=msgs/s, default 200 = `twin serve --demo`]. It drives
// the demo city's simulation through the real path (telemetry decode,
// twin, recorder, embedded store, default 5 min checkpoints) for 10
// simulated minutes around 24 h ago and for the last 70 minutes, fills the
// 23 hours between with copies of measured chunks and checkpoints (so the
// file is a day's size), then times GET /api/snapshot's work at T = 1 h and
// 24 h ago (a district view and the whole city) and reports the bytes a
// simulated hour adds.
func TestReplayFigures(t *testing.T) {
	scale, _ := strconv.Atoi(os.Getenv("TWIN_REPLAY_FIGURES"))
	if scale <= 0 {
		t.Skip("set TWIN_REPLAY_FIGURES=1 (demo scale) to measure the replay figures")
	}
	rate := 200.0
	if v, err := strconv.ParseFloat(os.Getenv("TWIN_REPLAY_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	ctx := context.Background()
	now := time.Now().Truncate(time.Minute)
	clk := clock.NewFake(now.Add(-24*time.Hour - 5*time.Minute))
	city, err := demo.Generate(demo.Options{Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 1 << 16})
	tw.Load(city.All())
	dir := t.TempDir()
	if d := os.Getenv("TWIN_REPLAY_DIR"); d != "" {
		dir = d
	}
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := timeline.Options{Clock: clk, FlushInterval: 20 * time.Millisecond, BuildEvery: 50 * time.Millisecond}
	rec, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := timeline.NewReader(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(rctx) }()
	waitFor(t, func() bool { v, err := st.GetMeta(ctx, timeline.MetaSeq); return err == nil && v != nil }) // the base is recorded
	s := sim.New(city, sim.Options{Rate: rate, Clock: clk})
	drive := func(d time.Duration) (msgs int) {
		end := clk.Now().Add(d)
		for clk.Now().Before(end) {
			clk.Advance(time.Second)
			for _, m := range s.Step(clk.Now()) {
				tm, err := telemetry.Decode(m.Payload, clk.Now(), telemetry.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := telemetry.Apply(tw, strings.TrimPrefix(m.Topic, sim.TopicPrefix), tm, false); err != nil {
					t.Fatal(err)
				}
				msgs++
			}
		}
		return msgs
	}
	settle := func() {
		want := tw.Feed().Last()
		waitFor(t, func() bool {
			v, err := st.GetMeta(ctx, timeline.MetaSeq)
			return err == nil && len(v) == 8 && beUint64(v) >= want
		})
	}
	t0 := time.Now()
	n1 := drive(10 * time.Minute)
	settle()
	t.Logf("phase 1: %d messages in %s", n1, time.Since(t0).Round(time.Millisecond))

	// 23 hours of filler: the chunks of one measured minute and the
	// checkpoint at +5 min, re-keyed (their content is never read).
	var sample []twin.TimelineChunk
	base := clk.Now().Add(-10 * time.Minute)
	if err := st.ScanChanges(ctx, base.Add(6*time.Minute).UnixNano(), base.Add(6*time.Minute).UnixNano(), func(c twin.TimelineChunk) error {
		sample = append(sample, twin.TimelineChunk{Key: c.Key, Min: math.MaxInt64, Max: math.MinInt64, Data: append([]byte(nil), c.Data...)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ckAt, ok, err := st.LastCheckpoint(ctx, base.Add(5*time.Minute).UnixNano())
	if err != nil || !ok {
		t.Fatalf("no checkpoint in phase 1: %v", err)
	}
	ck := map[uint32][]byte{}
	if err := st.ScanCheckpoint(ctx, ckAt, nil, func(c uint32, d []byte) error { ck[c] = append([]byte(nil), d...); return nil }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	chunkBytes, ckBytes := 0, 0
	for _, c := range sample {
		chunkBytes += len(c.Data)
	}
	for _, d := range ck {
		ckBytes += len(d)
	}
	t.Logf("one minute of changes: %d chunks, %d bytes; one checkpoint: %d cells, %d bytes", len(sample), chunkBytes, len(ck), ckBytes)
	fillFrom, fillTo := base.Add(10*time.Minute).Truncate(time.Minute), now.Add(-70*time.Minute)
	t1 := time.Now()
	for m := fillFrom; m.Before(fillTo); m = m.Add(time.Minute) {
		cs := make([]twin.TimelineChunk, len(sample))
		for i, c := range sample {
			cs[i] = twin.TimelineChunk{Bucket: m.UnixNano(), Key: c.Key, Min: math.MaxInt64 - 1, Max: math.MaxInt64 - 1, Data: c.Data}
		}
		if err := st.AppendChanges(ctx, cs); err != nil {
			t.Fatal(err)
		}
		if m.Minute()%5 == 0 {
			if err := st.PutCheckpoint(ctx, m.UnixNano(), ck); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("filler %s..%s in %s", fillFrom.Format(time.RFC3339), fillTo.Format(time.RFC3339), time.Since(t1).Round(time.Millisecond))

	// The last 70 minutes, live again (the sim jumps ahead: its objects
	// report from where they are).
	clk.Set(fillTo)
	rctx, cancel = context.WithCancel(ctx)
	defer cancel()
	done = make(chan error, 1)
	go func() { done <- rec2(t, tw, st, opts).Run(rctx) }()
	fi0, _ := os.Stat(filepath.Join(dir, "twin.db"))
	t2 := time.Now()
	n2 := drive(70 * time.Minute)
	settle()
	waitFor(t, func() bool {
		last, ok, err := st.LastCheckpoint(ctx, math.MaxInt64)
		return err == nil && ok && last >= now.Add(-5*time.Minute).UnixNano()
	})
	fi1, _ := os.Stat(filepath.Join(dir, "twin.db"))
	t.Logf("phase 2: %d messages in %s; the file grew %d MB (%d MB in all)", n2, time.Since(t2).Round(time.Millisecond),
		(fi1.Size()-fi0.Size())>>20, fi1.Size()>>20)

	district := orb.Bound{Min: orb.Point{106.50, 29.52}, Max: orb.Point{106.60, 29.60}} // Yuzhong and around
	var all []twin.Layer                                                                // the live (checkpointed) layers
	for _, l := range timeline.ReplayableLayers() {
		if l != twin.Buildings {
			all = append(all, l)
		}
	}
	for _, ago := range []time.Duration{time.Hour, 24 * time.Hour} {
		at := now.Add(-ago).Add(2*time.Minute + 30*time.Second) // mid-interval: half the changes since the checkpoint
		for _, v := range []struct {
			name string
			q    timeline.Query
		}{
			{"district view, live layers", timeline.Query{At: at, Layers: all, BBox: district, HasBBox: true}},
			{"city, vehicles+alerts", timeline.Query{At: at, Layers: []twin.Layer{twin.Vehicles, twin.Alerts}}},
			{"city, every replayable layer", timeline.Query{At: at, Layers: append(all, twin.Buildings)}},
		} {
			var ds []time.Duration
			var n int
			for range 5 {
				s := time.Now()
				fs, err := rd.Snapshot(ctx, v.q)
				if err != nil {
					t.Fatal(err)
				}
				ds = append(ds, time.Since(s))
				n = len(fs)
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			t.Logf("snapshot %s ago, %s: %d objects, median %s (min %s)", ago, v.name, n, ds[2].Round(time.Millisecond), ds[0].Round(time.Millisecond))
		}
	}
	fmt.Fprintf(os.Stderr, "scale %d, rate %.0f msg/s\n", scale, rate)
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}

// rec2 is a second recorder on the same store: it resumes from the
// recorded seq like a restarted server.
func rec2(t *testing.T, tw *twin.Twin, st *boltstore.Store, opts timeline.Options) *timeline.Recorder {
	r, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
