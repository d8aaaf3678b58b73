package timeline_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/timeline"
	"github.com/paulmach/orb"
)

// TestSnapshotAndChanges drives two vehicles with timestamped telemetry,
// then checks snapshots at several times (from checkpoints and changes,
// with and without a bbox), the ordered changes of a window, a late
// object that makes checkpoints stale, and buildings by version.
//
// Twice: with the recorder keeping the last checkpoint's state between
// builds, and reading it back from the store each time (as it does for a
// large state).
func TestSnapshotAndChanges(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("cached=%v", cached), func(t *testing.T) { testSnapshotAndChanges(t, cached) })
	}
}

func testSnapshotAndChanges(t *testing.T, cached bool) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk})
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, n := range []string{"v1", "v2"} {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, n), Geometry: orb.Point{106, 29}, Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
			t.Fatal(err)
		}
	}
	b := &twin.Feature{ID: twin.NewID(twin.Buildings, "b1"), Geometry: orb.Polygon{{{106.5, 29.5}, {106.501, 29.5}, {106.501, 29.501}, {106.5, 29.5}}},
		Props: twin.NewProps(map[string]any{"risk_color": "green"})}
	if _, err := tw.Put(b); err != nil {
		t.Fatal(err)
	}
	opts := timeline.Options{Interval: time.Minute, Lateness: time.Second, FlushInterval: 5 * time.Millisecond, BuildEvery: 20 * time.Millisecond, Clock: clk}
	rec, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !cached {
		rec.SetMaxCachedState(0)
	}
	rd, err := timeline.NewReader(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer runRecorder(t, rec, st)()
	pos := func(v, k int) orb.Point { return orb.Point{106.5 + 0.001*float64(k), 29.5 + 0.1*float64(v)} }
	for k := 1; k <= 60; k++ {
		for v := 1; v <= 2; v++ {
			s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", v)), Time: t0.Add(time.Duration(k) * 10 * time.Second), HasPos: true, Pos: pos(v, k)}
			if _, _, err := tw.ApplySample(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.Set(t0.Add(4 * time.Minute))
	// The building turns red at +4 min (Updated = the fake now).
	if _, _, err := tw.Update(b.ID, func(f *twin.Feature) (*twin.Feature, error) { f.Props.Set("risk_color", "red"); return f, nil }); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(20 * time.Minute))
	waitCheckpoint(t, tw, st, t0.Add(19*time.Minute))

	check := func(at time.Time, q timeline.Query, want map[string]orb.Point) {
		t.Helper()
		q.At, q.Layers = at, []twin.Layer{twin.Vehicles}
		fs, err := rd.Snapshot(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]orb.Point{}
		for _, f := range fs {
			got[f.ID.Name] = f.Geometry.(orb.Point)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("at %s: %v, want %v", at.Sub(t0), got, want)
		}
	}
	for _, k := range []int{1, 6, 9, 30, 59, 60} {
		at := t0.Add(time.Duration(k)*10*time.Second + 5*time.Second)
		check(at, timeline.Query{}, map[string]orb.Point{"v1": pos(1, k), "v2": pos(2, k)})
		box := orb.Bound{Min: orb.Point{106, 29.55}, Max: orb.Point{107, 29.65}} // v1's row only
		check(at, timeline.Query{BBox: box, HasBBox: true}, map[string]orb.Point{"v1": pos(1, k)})
	}

	cs, err := rd.Changes(context.Background(), t0.Add(30*time.Second), t0.Add(60*time.Second), []twin.Layer{twin.Vehicles})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 6 {
		t.Fatalf("%d changes in (30s, 60s], want 6", len(cs))
	}
	for i := 1; i < len(cs); i++ {
		if cs[i].Time.Before(cs[i-1].Time) || cs[i].Time.Equal(cs[i-1].Time) && cs[i].Seq < cs[i-1].Seq {
			t.Fatalf("changes out of order: %v", cs)
		}
	}

	// A late truck at +2 min: the checkpoints after it are rebuilt.
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v3"), Geometry: orb.Point{106, 29}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, "v3"), Time: t0.Add(2 * time.Minute), HasPos: true, Pos: pos(3, 1)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		fs, err := rd.Snapshot(context.Background(), timeline.Query{At: t0.Add(5 * time.Minute), Layers: []twin.Layer{twin.Vehicles}})
		return err == nil && len(fs) == 3
	})
	waitCheckpoint(t, tw, st, t0.Add(19*time.Minute))

	// The building: green before +4 min, red after.
	for at, want := range map[time.Duration]string{3 * time.Minute: "green", 5 * time.Minute: "red"} {
		fs, err := rd.Snapshot(context.Background(), timeline.Query{At: t0.Add(at), Layers: []twin.Layer{twin.Buildings}})
		if err != nil || len(fs) != 1 || fs[0].Props.Get("risk_color") != want {
			t.Fatalf("building at +%s: %v %v, want %s", at, fs, err, want)
		}
	}
}

// waitCheckpoint waits until the recorder has written every change of the
// twin and a checkpoint at or after at exists (built after that write).
func waitCheckpoint(t *testing.T, tw *twin.Twin, st *boltstore.Store, at time.Time) {
	t.Helper()
	want := tw.Feed().Last()
	waitFor(t, func() bool {
		v, err := st.GetMeta(context.Background(), timeline.MetaSeq)
		return err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) >= want
	})
	waitFor(t, func() bool {
		last, ok, err := st.LastCheckpoint(context.Background(), math.MaxInt64)
		return err == nil && ok && last >= at.UnixNano()
	})
}

// runRecorder runs rec until the returned stop is called (deferred before
// the store closes), once it has recorded its first sequence.
func runRecorder(t *testing.T, rec *timeline.Recorder, st *boltstore.Store) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	started := false
	defer func() { // waitFor failed the test: stop the recorder all the same
		if !started {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	waitFor(t, func() bool {
		v, err := st.GetMeta(context.Background(), timeline.MetaSeq)
		return err == nil && v != nil
	})
	started = true
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 20 s")
}

// TestBaseInParts: a first start with more objects than one base part
// holds writes the base as several parts that overwrite none of each
// other, then the recorded seq: a snapshot sees every object, and the
// changes that follow are recorded on top.
func TestBaseInParts(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk})
	const n = 2*(1<<15) + 5 // three parts of the recorder's baseChunk
	fs := make([]*twin.Feature, n)
	for i := range fs {
		fs[i] = &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i)), Version: 1,
			Geometry: orb.Point{106 + float64(i%1000)*0.001, 29 + float64(i/1000)*0.001}}
	}
	tw.Load(fs)
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := timeline.Options{FlushInterval: 5 * time.Millisecond, Clock: clk}
	rec, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := timeline.NewReader(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer runRecorder(t, rec, st)()
	keys := map[uint64]bool{}
	if err := st.ScanChanges(context.Background(), math.MinInt64, math.MaxInt64, func(c twin.TimelineChunk) error {
		keys[c.Key] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("base chunks under %d keys, want 3", len(keys))
	}
	clk.Set(t0.Add(time.Second))
	moved := orb.Point{107, 30}
	if _, _, err := tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, "v7"), Time: t0.Add(time.Second), HasPos: true, Pos: moved}); err != nil {
		t.Fatal(err)
	}
	waitRecorded(t, tw, st)
	snap, err := rd.Snapshot(context.Background(), timeline.Query{At: t0.Add(2 * time.Second), Layers: []twin.Layer{twin.Vehicles}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != n {
		t.Fatalf("snapshot holds %d vehicles, want %d", len(snap), n)
	}
	for _, f := range snap {
		if f.ID.Name == "v7" && f.Geometry != orb.Geometry(moved) {
			t.Fatalf("v7 at %v in the snapshot, want %v", f.Geometry, moved)
		}
	}
}

// waitRecorded waits until the recorder has written every change of
// the twin.
func waitRecorded(t *testing.T, tw *twin.Twin, st *boltstore.Store) {
	t.Helper()
	want := tw.Feed().Last()
	waitFor(t, func() bool {
		v, err := st.GetMeta(context.Background(), timeline.MetaSeq)
		return err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) >= want
	})
}
