package timeline_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/logtest"
	"github.com/citytwin/citytwin/twin/timeline"
)

// TestBackfillAfterACrash: a recorder that starts behind the feed (its
// last flush was before the store writer's when the server was killed,
// and the feed restarts at the writer's seq) reads the changes in between
// from the change log (Options.Backfill), so every minute's position is
// in the replay, before, inside and after the gap. Without a log it
// records the current state instead (the old behaviour; the versions in
// the gap are lost), and a log that has lost them says so (ErrSeqGap):
// the same.
func TestBackfillAfterACrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backfill bool
		logErr   error // returned by the log after the first call (a retry must follow)
		lost     bool
	}{
		{name: "from the log", backfill: true},
		{name: "log away once", backfill: true, logErr: errors.New("nats: timeout")},
		{name: "log aged out", backfill: true, logErr: fmt.Errorf("%w: aged out", twin.ErrSeqGap), lost: true},
		{name: "no log", lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) { testBackfill(t, tc.backfill, tc.logErr, tc.lost) })
	}
}

func testBackfill(t *testing.T, backfill bool, logErr error, lost bool) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := timeline.Options{FlushInterval: 5 * time.Millisecond, Clock: clk}
	const trucks = 5
	id := func(i int) twin.ID { return twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i)) }
	pos := func(i, m int) orb.Point { return orb.Point{106.5 + 0.001*float64(m+1), 29.5 + 0.001*float64(i)} }
	at := func(m int) time.Time { return t0.Add(time.Duration(m)*time.Minute + 10*time.Second) }
	move := func(tw *twin.Twin, m int) {
		clk.Set(at(m).Add(time.Second)) // the fixes arrive as they are made
		for i := range trucks {
			if _, _, err := tw.ApplySample(twin.Sample{ID: id(i), Time: at(m), HasPos: true, Pos: pos(i, m)}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The first life: a recording starts, minutes 0-2 are recorded.
	tw := twin.New(twin.Options{Clock: clk})
	for i := range trucks {
		if _, err := tw.Put(&twin.Feature{ID: id(i), Geometry: orb.Point{106, 29}}); err != nil {
			t.Fatal(err)
		}
	}
	bid := twin.NewID(twin.Buildings, "b1")
	if _, err := tw.Put(&twin.Feature{ID: bid, Geometry: orb.Polygon{{{106.5, 29.5}, {106.501, 29.5}, {106.501, 29.501}, {106.5, 29.5}}},
		Props: twin.NewProps(map[string]any{"risk_color": "green"})}); err != nil {
		t.Fatal(err)
	}
	rec, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := runRecorder(t, rec, st)
	for m := range 3 {
		move(tw, m)
	}
	waitRecorded(t, tw, st)
	stop()
	// Minutes 3-6 reach the log and the store writer, not the recorder:
	// the server is killed.
	for m := 3; m < 7; m++ {
		move(tw, m)
		if c := map[int]string{4: "red", 5: "yellow"}[m]; c != "" { // the building changes twice in the gap
			if _, _, err := tw.Update(bid, func(f *twin.Feature) (*twin.Feature, error) { f.Props.Set("risk_color", c); return f, nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := logtest.New(tw) // as the change log holds them
	log.Keep(t)

	// The second life, a minute later: the twin is loaded from the store
	// (the writer's state), its feed beginning after the writer's seq.
	clk.Set(at(6).Add(30 * time.Second))
	tw2 := twin.New(twin.Options{Clock: clk})
	var fs []*twin.Feature
	for _, l := range []twin.Layer{twin.Vehicles, twin.Buildings} {
		tw.Range(l, func(f *twin.Feature) bool { fs = append(fs, f.Clone()); return true })
	}
	tw2.Load(fs)
	tw2.Feed().SetLast(tw.Feed().Last())
	calls := 0
	o2 := opts
	if backfill {
		o2.Backfill = func(ctx context.Context, after, upto uint64, fn func(*twin.Change) error) error {
			calls++
			// A gap is final; any other error is transient: once, then
			// the log answers.
			if logErr != nil && (calls == 1 || errors.Is(logErr, twin.ErrSeqGap)) {
				return logErr
			}
			return log.Changes(ctx, after, upto, fn)
		}
	}
	rec2, err := timeline.NewRecorder(tw2, st, o2)
	if err != nil {
		t.Fatal(err)
	}
	defer runRecorder(t, rec2, st)()
	waitRecorded(t, tw2, st) // it has caught up (or recorded the state) before the next fixes
	for m := 7; m < 10; m++ {
		move(tw2, m)
		if m == 8 { // and black after the restart
			if _, _, err := tw2.Update(bid, func(f *twin.Feature) (*twin.Feature, error) { f.Props.Set("risk_color", "black"); return f, nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitRecorded(t, tw2, st)
	if backfill && logErr != nil && !lost && calls < 2 {
		t.Fatalf("the log was asked %d times, want a retry after its error", calls)
	}

	rd, err := timeline.NewReader(tw2, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The building: red from minute 4, yellow from 5, both in the gap,
	// black from minute 8. The log gives both versions in the gap
	// (addLogged). Without it only yellow is known, as the version black
	// replaced. Before the red, it is not in the replay either way: its
	// version before was never recorded (the log holds no previous state,
	// and buildings are in no checkpoint).
	for m, want := range map[int]string{2: "", 4: "red", 5: "yellow", 6: "yellow", 8: "black", 9: "black"} {
		if lost && m == 4 {
			want = ""
		}
		fs, err := rd.Snapshot(context.Background(), timeline.Query{At: at(m).Add(20 * time.Second), Layers: []twin.Layer{twin.Buildings}})
		got := ""
		if len(fs) == 1 {
			got, _ = fs[0].Props.Get("risk_color").(string)
		}
		if err != nil || len(fs) > 1 || got != want {
			t.Errorf("building at minute %d: %q (%d, %v), want %q", m, got, len(fs), err, want)
		}
	}
	for m := range 10 {
		fs, err := rd.Snapshot(context.Background(), timeline.Query{At: at(m).Add(20 * time.Second), Layers: []twin.Layer{twin.Vehicles}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[twin.ID]orb.Point{}
		for _, f := range fs {
			got[f.ID] = f.Geometry.(orb.Point)
		}
		inGap := m >= 3 && m < 7
		for i := range trucks {
			ok := got[id(i)] == pos(i, m)
			switch {
			case lost && inGap && ok:
				t.Errorf("minute %d: %s recorded, yet the log could not give it", m, id(i))
			case (!lost || !inGap) && !ok:
				t.Errorf("minute %d: %s at %v, want %v", m, id(i), got[id(i)], pos(i, m))
			}
		}
	}
}

// gatedTimeline holds the recorder's chunk writes while hold is set, and
// tells held when one starts being held.
type gatedTimeline struct {
	*boltstore.Store
	hold    atomic.Bool
	held    chan struct{} // buffered: a value once a write is held
	release chan struct{}
}

func (g *gatedTimeline) AppendChanges(ctx context.Context, chunks []twin.TimelineChunk) error {
	if g.hold.Load() {
		select {
		case g.held <- struct{}{}:
		default:
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.AppendChanges(ctx, chunks)
}

// TestBackfillWhenCutLoose: a recorder stuck in a flush (its store hung)
// is cut loose by the feed at its hard cap while objects keep changing;
// once the store answers it reads the changes the feed dropped from the
// change log, and every one of them is in the replay.
func TestBackfillWhenCutLoose(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	bs, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	st := &gatedTimeline{Store: bs, held: make(chan struct{}, 1), release: make(chan struct{})}
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 16})
	log := logtest.New(tw)
	id := twin.NewID(twin.Vehicles, "v")
	move := func(k int) {
		clk.Set(t0.Add(time.Duration(k) * time.Second))
		if _, err := tw.Put(&twin.Feature{ID: id, Geometry: orb.Point{106 + float64(k)*1e-4, 29}}); err != nil {
			t.Fatal(err)
		}
		log.Keep(t)
	}
	move(0)
	reg := prometheus.NewRegistry()
	opts := timeline.Options{FlushInterval: 5 * time.Millisecond, Clock: clk, Registerer: reg,
		Backfill: log.Changes}
	rec, err := timeline.NewRecorder(tw, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer runRecorder(t, rec, bs)()
	waitRecorded(t, tw, bs)
	// The first move after the hold is what the recorder's next flush
	// writes, and that flush hangs; only then do the other moves come, so
	// the recorder reads none of them before the feed cuts it loose (on a
	// busy machine it could otherwise read them all before its first flush).
	st.hold.Store(true)
	move(1)
	select {
	case <-st.held:
	case <-time.After(30 * time.Second):
		close(st.release)
		t.Fatal("the recorder did not flush the first move in 30 s")
	}
	const moves = 400 // the hard cap is 2 x 4 windows of 16
	for k := 2; k <= moves; k++ {
		move(k)
	}
	var cuts uint64
	for _, c := range tw.Feed().Consumers() {
		if c.Name == "timeline" {
			cuts = c.Cuts
		}
	}
	if cuts == 0 {
		close(st.release)
		t.Fatal("the recorder was not cut loose; the test proves nothing")
	}
	close(st.release)
	waitRecorded(t, tw, bs)
	rd, err := timeline.NewReader(tw, bs, opts)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := rd.Changes(context.Background(), t0, t0.Add(time.Hour), []twin.Layer{twin.Vehicles})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for _, c := range cs {
		got[c.Time.Sub(t0).Milliseconds()/1000] = true
	}
	for k := 1; k <= moves; k++ {
		if !got[int64(k)] {
			t.Fatalf("the move at +%ds is not in the replay (%d of %d recorded)", k, len(got), moves)
		}
	}
	if g := promtest.Value(t, reg, "twin_timeline_gaps_total"); g != 0 {
		t.Fatalf("%v gaps, want 0", g)
	}
}
