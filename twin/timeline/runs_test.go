package timeline_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/timeline"
)

// TestKeptRunsReplayAsRecorded: two recorders read one leading twin's
// changes, one handed the runs a change log would publish (most of them;
// random sizes, compressed or not), the other none. Replayed, their
// timelines are the same: every change (time, seq, ID, state) and the
// snapshots at random moments, buildings included. The runs hold what the
// recorder treats apart: History samples, a building's versions and import, the
// skeleton's changes, removals, and times across a bucket's end (one
// bucket is 10 s here). Differential, seeded.
func TestKeptRunsReplayAsRecorded(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk})
	const vehicles = 20
	vid := func(i int) twin.ID { return twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i)) }
	for i := range vehicles {
		if _, err := tw.Put(&twin.Feature{ID: vid(i), Geometry: orb.Point{106.5, 29.5}, Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
			t.Fatal(err)
		}
	}
	bid := twin.NewID(twin.Buildings, "b1")
	if _, err := tw.Put(&twin.Feature{ID: bid, Geometry: orb.Polygon{{{106.5, 29.5}, {106.501, 29.5}, {106.501, 29.501}, {106.5, 29.5}}},
		Props: twin.NewProps(map[string]any{"risk_color": "green"})}); err != nil {
		t.Fatal(err)
	}
	road := twin.NewID(twin.Roads, "r1")
	if _, err := tw.Put(&twin.Feature{ID: road, Geometry: orb.LineString{{106.5, 29.5}, {106.6, 29.6}}}); err != nil {
		t.Fatal(err)
	}
	tw.Replicate()
	tw.Lead()

	opts := timeline.Options{Interval: time.Minute, Lateness: time.Second, Bucket: 10 * time.Second,
		FlushInterval: 5 * time.Millisecond, BuildEvery: 20 * time.Millisecond, Clock: clk, Pause: -1}
	open := func() *boltstore.Store {
		st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stRuns, stOwn := open(), open()
	reg := prometheus.NewRegistry()
	withRuns := opts
	withRuns.Registerer = reg
	recRuns, err := timeline.NewRecorder(tw, stRuns, withRuns)
	if err != nil {
		t.Fatal(err)
	}
	recOwn, err := timeline.NewRecorder(tw, stOwn, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer runRecorder(t, recRuns, stRuns)()
	defer runRecorder(t, recOwn, stOwn)()

	// publish commits what is tentative as a change log would: runs of
	// 1-40 changes, handed to recRuns (all but about one in eight).
	published := tw.Feed().Last()
	// One body buffer for every run, as the change log reuses its own
	// once Offer returns: a recorder that kept a reference instead of a
	// copy (or reused a copy a kept run still holds) replays wrong.
	var scratch []byte
	publish := func() {
		cs, err := tw.Feed().Tentative(published, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		for len(cs) > 0 {
			n := min(len(cs), 1+rng.IntN(40))
			body := scratch[:0]
			for i := range cs[:n] {
				b, err := twin.AppendChange(nil, &cs[i])
				if err != nil {
					t.Fatal(err)
				}
				body = binary.AppendUvarint(body, uint64(len(b)))
				body = append(body, b...)
			}
			flags := twin.LogRunFramed
			scratch = body
			if rng.IntN(2) == 0 {
				body, flags = s2.Encode(nil, body), twin.LogRunS2|twin.LogRunFramed
			}
			lo, hi := cs[0].Seq, cs[n-1].Seq
			if rng.IntN(8) != 0 {
				recRuns.Offer(lo, hi, flags, body)
			}
			clear(body) // the log's buffer takes the next run
			tw.Feed().Commit(hi)
			published = hi
			cs = cs[n:]
		}
	}

	at := t0
	for step := range 300 {
		at = at.Add(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		clk.Set(at)
		for range 1 + rng.IntN(30) {
			v := vid(rng.IntN(vehicles))
			switch k := rng.IntN(40); k {
			case 0: // a building's version
				if _, _, err := tw.Update(bid, func(f *twin.Feature) (*twin.Feature, error) {
					f.Props.Set("risk_color", []string{"green", "yellow", "red"}[rng.IntN(3)])
					return f, nil
				}); err != nil {
					t.Fatal(err)
				}
			case 3: // a building imported: no version, no record
				nb := &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprintf("b-%d", step)), Geometry: orb.Point{106.52, 29.52}}
				if _, err := tw.Put(nb); err != nil {
					t.Fatal(err)
				}
			case 1: // the skeleton
				if _, _, err := tw.Update(road, func(f *twin.Feature) (*twin.Feature, error) { f.Props.Set("step", step); return f, nil }); err != nil {
					t.Fatal(err)
				}
			case 2: // gone, and back
				if _, err := tw.Delete(v); err != nil {
					t.Fatal(err)
				}
				if _, err := tw.Put(&twin.Feature{ID: v, Geometry: orb.Point{106.4, 29.4}}); err != nil {
					t.Fatal(err)
				}
			default:
				ts := at.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond) // some across a bucket's start
				if k < 7 {
					ts = at.Add(-time.Hour) // older than the state: History
				}
				s := twin.Sample{ID: v, Time: ts, HasPos: true, Pos: orb.Point{106.5 + rng.Float64()*0.1, 29.5 + rng.Float64()*0.1},
					HasSpeed: true, SpeedKmh: rng.Float64() * 60}
				if _, _, err := tw.ApplySample(s); err != nil && !errors.Is(err, twin.ErrDuplicate) {
					t.Fatal(err)
				}
			}
		}
		publish()
	}
	waitRecorded(t, tw, stRuns)
	waitRecorded(t, tw, stOwn)
	if promtest.Value(t, reg, "twin_timeline_log_runs_total") == 0 {
		t.Fatal("no run was kept as published")
	}

	layers := timeline.ReplayableLayers()
	rdRuns, err := timeline.NewReader(tw, stRuns, opts)
	if err != nil {
		t.Fatal(err)
	}
	rdOwn, err := timeline.NewReader(tw, stOwn, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := rdRuns.Changes(ctx, t0.Add(-2*time.Hour), at.Add(time.Hour), layers)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rdOwn.Changes(ctx, t0.Add(-2*time.Hour), at.Add(time.Hour), layers)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(want) < 1000 {
		t.Fatalf("%d changes replayed from the runs, %d from the recorder's own records", len(got), len(want))
	}
	// Replay order is time then seq; the base's records share both.
	gs, ws := make([]string, len(got)), make([]string, len(want))
	for i := range want {
		gs[i], ws[i] = changeString(got[i]), changeString(want[i])
	}
	slices.Sort(gs)
	slices.Sort(ws)
	for i := range ws {
		if g, w := gs[i], ws[i]; g != w {
			t.Fatalf("change %d:\n got %s\nwant %s", i, g, w)
		}
	}
	for range 20 {
		q := timeline.Query{At: t0.Add(time.Duration(rng.Int64N(int64(at.Sub(t0))))), Layers: layers}
		if rng.IntN(2) == 0 {
			q.BBox, q.HasBBox = orb.Bound{Min: orb.Point{106.5, 29.5}, Max: orb.Point{106.55, 29.55}}, true
		}
		g, err := rdRuns.Snapshot(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		w, err := rdOwn.Snapshot(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if gs, ws := featuresString(g), featuresString(w); gs != ws {
			t.Fatalf("snapshot at %s (bbox %v):\n got %s\nwant %s", q.At.Sub(t0), q.HasBBox, gs, ws)
		}
	}
}

func changeString(c timeline.Change) string {
	s := fmt.Sprintf("%s %d %s removed=%v", c.Time.Format(time.RFC3339Nano), c.Seq, c.ID, c.Removed)
	if c.Feature != nil {
		j, _ := c.Feature.MarshalJSON()
		s += " " + string(j)
	}
	return s
}

func featuresString(fs []*twin.Feature) string {
	m := map[string]string{}
	for _, f := range fs {
		j, _ := f.MarshalJSON()
		m[f.ID.String()] = string(j)
	}
	return fmt.Sprint(m)
}
