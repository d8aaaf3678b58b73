package writer_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/internal/tcpproxy"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/citytwin/citytwin/twin/writer"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
)

// poison is a row the store must refuse, written around good rows.
type poison struct {
	kind  twin.QuarantineKind
	id    twin.ID
	apply func(t *testing.T, tw *twin.Twin)
}

// TestPoisonedRows bypasses the edge (a twin with Options.Unchecked takes
// what a server's twin refuses) and feeds the writer rows each store cannot
// hold, in the middle of a stream of good ones: the good rows are all
// written, each bad one is quarantined with its error and JSON, counted and
// not retried, the feed sequence advances, and later flushes still work.
func TestPoisonedRows(t *testing.T) {
	nulProp := twin.NewID(twin.Vehicles, "nul-prop")
	badName := twin.NewID(twin.Vehicles, "bad\xffname")
	nanProp := twin.NewID(twin.Buildings, "nan-prop")
	nulKeySample := twin.NewID(twin.Vehicles, "v3")
	putWith := func(id twin.ID, props map[string]any) func(t *testing.T, tw *twin.Twin) {
		return func(t *testing.T, tw *twin.Twin) {
			if _, err := tw.Put(&twin.Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Props: twin.NewProps(props)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Both stores refuse NaN (JSON has no NaN); only PostGIS refuses NUL in
	// text and jsonb and invalid UTF-8 in text (bbolt stores any bytes).
	nan := poison{twin.QuarantineUpsert, nanProp, putWith(nanProp, map[string]any{"height": math.NaN()})}
	cases := map[string]struct {
		open    func(t *testing.T) twin.Store
		poisons []poison
	}{
		"postgis": {
			open: func(t *testing.T) twin.Store {
				st, err := pgstore.Open(context.Background(), pgtest.Migrated(t), pgstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return st
			},
			poisons: []poison{
				{twin.QuarantineUpsert, nulProp, putWith(nulProp, map[string]any{"note": "a\x00b"})},
				{twin.QuarantineUpsert, badName, putWith(badName, map[string]any{"kind": "muck_truck"})},
				{twin.QuarantineSample, nulKeySample, func(t *testing.T, tw *twin.Twin) {
					if _, _, err := tw.ApplySample(twin.Sample{ID: nulKeySample, Time: t0.Add(time.Hour),
						Values: twin.ReadingsOf(map[string]float64{"\x00": 1})}); err != nil {
						t.Fatal(err)
					}
				}},
				// The sample's key is now in v3's props.values too, so the
				// object's new state is refused as well (the stored v3
				// stays at its last storable version).
				{twin.QuarantineUpsert, nulKeySample, func(*testing.T, *twin.Twin) {}},
				nan,
			},
		},
		"bolt": {
			open: func(t *testing.T) twin.Store {
				st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return st
			},
			poisons: []poison{nan},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			st := tc.open(t)
			defer st.Close()
			// Unchecked: the twin refuses these strings itself (the edge);
			// the writer's defence is tested behind it.
			tw := twin.New(twin.Options{Clock: clock.NewFake(t0), FeedSize: 1 << 16, Unchecked: true})
			reg := prometheus.NewRegistry()
			w := writer.New(tw, st, writer.Options{FlushInterval: time.Hour, Registerer: reg})
			startWriter(t, w)
			const vehicles = 20
			for i := 0; i < vehicles; i++ {
				put(t, tw, twin.Vehicles, fmt.Sprint("v", i), orb.Point{106.5, 29.5})
			}
			samples := 0
			apply := func(from, to int) {
				for i := from; i < to; i++ {
					s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", i%vehicles)),
						Time: t0.Add(time.Duration(i) * time.Second), HasPos: true, Pos: orb.Point{106.5 + float64(i)*1e-5, 29.5},
						Values: twin.ReadingsOf(map[string]float64{"fuel": float64(i)})}
					if _, _, err := tw.ApplySample(s); err != nil {
						t.Fatal(err)
					}
					samples++
				}
			}
			// One batch: good rows, the poisons, good rows.
			apply(0, 200)
			for _, p := range tc.poisons {
				p.apply(t, tw)
			}
			apply(200, 400)
			flush(t, w)

			if v := promtest.Value(t, reg, "twin_writer_quarantined_total"); v != float64(len(tc.poisons)) {
				t.Fatalf("quarantined_total = %v, want %d", v, len(tc.poisons))
			}
			qs, err := st.(twin.Quarantiner).Quarantined(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, q := range qs {
				got = append(got, fmt.Sprintf("%s %s", q.Kind, q.ID))
				if q.Err == "" || len(q.Data) == 0 || q.At.IsZero() {
					t.Errorf("quarantined %s without error, data or time: %+v", q.ID, q)
				}
				if q.Kind == twin.QuarantineUpsert && (q.Version == 0 || !strings.Contains(string(q.Data), `"type":"Feature"`)) &&
					q.ID != nanProp {
					t.Errorf("quarantined %s: version %d, data %s", q.ID, q.Version, q.Data)
				}
			}
			for _, p := range tc.poisons {
				want = append(want, fmt.Sprintf("%s %s", p.kind, p.id))
			}
			sort.Strings(got)
			sort.Strings(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("quarantine holds %q, want %q", got, want)
			}

			// Every good row is there.
			for i := 0; i < vehicles; i++ {
				id := twin.NewID(twin.Vehicles, fmt.Sprint("v", i))
				if id == nulKeySample && name == "postgis" {
					continue
				}
				cur, _ := tw.Get(id)
				f, err := st.Get(context.Background(), id)
				if err != nil || f.Version != cur.Version {
					t.Fatalf("%s: stored %v, %v; twin version %d", id, f, err, cur.Version)
				}
			}
			stored := 0
			for i := 0; i < vehicles; i++ {
				h, err := st.History(context.Background(), twin.NewID(twin.Vehicles, fmt.Sprint("v", i)), time.Time{}, time.Time{}, 0)
				if err != nil {
					t.Fatal(err)
				}
				stored += len(h)
			}
			if stored != samples {
				t.Fatalf("%d history rows for %d good samples", stored, samples)
			}
			seq, _ := st.GetMeta(context.Background(), writer.MetaFeedSeq)
			if len(seq) != 8 || binary.BigEndian.Uint64(seq) != tw.Feed().Last() {
				t.Fatalf("feed_seq %x, feed last %d", seq, tw.Feed().Last())
			}
			if err := w.Ready(context.Background()); err != nil {
				t.Fatalf("ready after quarantine: %v", err)
			}

			// The writer is not wedged: the next batch goes through whole.
			for i := 0; i < 10; i++ {
				s := twin.Sample{ID: twin.NewID(twin.Vehicles, "v0"), Time: t0.Add(time.Duration(1000+i) * time.Second)}
				if _, _, err := tw.ApplySample(s); err != nil {
					t.Fatal(err)
				}
			}
			flush(t, w)
			if v := promtest.Value(t, reg, "twin_writer_quarantined_total"); v != float64(len(tc.poisons)) {
				t.Fatalf("quarantined_total = %v after a clean batch", v)
			}
			h, err := st.History(context.Background(), twin.NewID(twin.Vehicles, "v0"), time.Time{}, time.Time{}, 0)
			if err != nil || len(h) != 400/vehicles+10 {
				t.Fatalf("v0 history %d, %v; want %d", len(h), err, 400/vehicles+10)
			}
		})
	}
}

// TestReadyTurnsRed: with the database away and changes waiting, Ready
// reports the stalled writer after StallAfter; once the database is back
// and a flush succeeds, it is green again.
func TestReadyTurnsRed(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	u, _ := url.Parse(dbURL)
	px := tcpproxy.New(t, u.Host)
	pu := *u
	pu.Host = px.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()
	st, err := pgstore.Open(context.Background(), pu.String(), pgstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tw := newTwin()
	w := writer.New(tw, st, writer.Options{FlushInterval: 10 * time.Millisecond, StallAfter: 200 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, FlushTimeout: 2 * time.Second})
	startWriter(t, w)
	put(t, tw, twin.Vehicles, "v0", orb.Point{106.5, 29.5})
	flush(t, w)
	if err := w.Ready(context.Background()); err != nil {
		t.Fatalf("ready with the database up: %v", err)
	}
	px.SetCut(true)
	put(t, tw, twin.Vehicles, "v1", orb.Point{106.5, 29.5})
	waitFor(t, "writer not ready while the database is away", func() bool { return w.Ready(context.Background()) != nil })
	t.Logf("ready: %v", w.Ready(context.Background()))
	px.SetCut(false)
	waitFor(t, "writer ready again", func() bool { return w.Ready(context.Background()) == nil })
	if _, err := st.Get(context.Background(), twin.NewID(twin.Vehicles, "v1")); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a busy CI machine is slow; the test asserts no timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
