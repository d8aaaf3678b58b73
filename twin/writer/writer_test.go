package writer_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/internal/tcpproxy"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/citytwin/citytwin/twin/storetest"
	"github.com/citytwin/citytwin/twin/writer"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func newTwin() *twin.Twin {
	return twin.New(twin.Options{Clock: clock.NewFake(t0), FeedSize: 1 << 16})
}

// startWriter runs w until the test ends.
func startWriter(t *testing.T, w *writer.Writer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// flush retries Flush until the store takes the batch.
func flush(t *testing.T, w *writer.Writer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := w.Flush(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush: %v", err)
		}
	}
}

func put(t *testing.T, tw *twin.Twin, l twin.Layer, name string, g orb.Geometry) {
	t.Helper()
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(l, name), Geometry: g,
		Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
		t.Fatal(err)
	}
}

// assertSame checks the store holds exactly the twin's objects.
func assertSame(t *testing.T, tw *twin.Twin, st twin.Store) {
	t.Helper()
	n := 0
	err := st.Load(context.Background(), func(f *twin.Feature) error {
		n++
		cur, ok := tw.Get(f.ID)
		if !ok {
			return fmt.Errorf("store has %s, twin does not", f.ID)
		}
		return storetest.Equal(cur, f)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != tw.Len() {
		t.Fatalf("store has %d objects, twin %d", n, tw.Len())
	}
}

// TestOutage cuts the database link mid-stream: every applied sample ends up
// in history exactly once and the final state equals the twin.
func TestOutage(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	u, _ := url.Parse(dbURL)
	px := tcpproxy.New(t, u.Host)
	pu := *u
	pu.Host = px.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pu.String(), pgstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	tw := newTwin()
	reg := prometheus.NewRegistry()
	w := writer.New(tw, st, writer.Options{FlushInterval: 10 * time.Millisecond, BatchSize: 50,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, FlushTimeout: 3 * time.Second, Registerer: reg})
	startWriter(t, w)
	const vehicles = 20
	for i := 0; i < vehicles; i++ {
		put(t, tw, twin.Vehicles, fmt.Sprint("v", i), orb.Point{106.5, 29.5})
	}
	put(t, tw, twin.Vehicles, "doomed", orb.Point{106.5, 29.5})

	applied := 0
	apply := func(from, to int) {
		for i := from; i < to; i++ {
			s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", i%vehicles)),
				Time: t0.Add(time.Duration(i) * time.Second), HasPos: true,
				Pos: orb.Point{106.5 + float64(i)*1e-5, 29.5}, HasSpeed: true, SpeedKmh: float64(i % 60)}
			if i%17 == 0 && i > vehicles {
				s.Time = s.Time.Add(-time.Duration(vehicles) * time.Second / 2) // older: history only
			}
			if _, _, err := tw.ApplySample(s); err != nil {
				t.Fatalf("apply %d: %v", i, err)
			}
			applied++
		}
	}
	const n = 3000
	apply(0, n/3)
	flush(t, w)

	px.SetCut(true)
	apply(n/3, 2*n/3)
	if _, err := tw.Delete(twin.NewID(twin.Vehicles, "doomed")); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = w.Flush(fctx)
	cancel()
	if err == nil {
		t.Fatal("flush succeeded through a cut link")
	}
	if v := promtest.Value(t, reg, "twin_writer_flush_errors_total"); v < 1 {
		t.Fatalf("flush errors = %v", v)
	}
	apply(2*n/3, n)
	px.SetCut(false)
	flush(t, w)

	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM telemetry`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != applied {
		t.Fatalf("%d history rows for %d applied samples", rows, applied)
	}
	assertSame(t, tw, st)
	seq, err := st.GetMeta(ctx, writer.MetaFeedSeq)
	if err != nil || len(seq) != 8 || binary.BigEndian.Uint64(seq) != tw.Feed().Last() {
		t.Fatalf("feed_seq = %q, %v; feed last %d", seq, err, tw.Feed().Last())
	}
}

// TestRestart: a new twin loaded from the store equals the old one.
func TestRestart(t *testing.T) {
	stores := map[string]func(t *testing.T) (open func() twin.Store){
		"bolt": func(t *testing.T) func() twin.Store {
			dir := t.TempDir()
			return func() twin.Store {
				s, err := boltstore.Open(dir, boltstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		},
		"postgis": func(t *testing.T) func() twin.Store {
			u := pgtest.Migrated(t)
			return func() twin.Store {
				s, err := pgstore.Open(context.Background(), u, pgstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			open := mk(t)
			st := open()
			old := newTwin()
			w := writer.New(old, st, writer.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			for _, f := range storetest.Features() {
				if _, err := old.Put(f); err != nil {
					t.Fatal(err)
				}
			}
			put(t, old, twin.Vehicles, "gone", orb.Point{106, 29})
			put(t, old, twin.Workers, "w1", nil)
			for i := 0; i < 100; i++ {
				s := twin.Sample{ID: twin.NewID(twin.Workers, "w1"), Time: t0.Add(time.Duration(i) * time.Second),
					HasPos: true, Pos: orb.Point{106.5, 29.5 + float64(i)*1e-4}, Values: twin.ReadingsOf(map[string]float64{"hr": 70})}
				if _, _, err := old.ApplySample(s); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := old.Delete(twin.NewID(twin.Vehicles, "gone")); err != nil {
				t.Fatal(err)
			}
			// Re-created after delete with a lower version than before.
			put(t, old, twin.Vehicles, "BP2968", orb.Point{106.7, 29.7})
			cancel() // graceful shutdown flushes
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(context.Background()); err != nil {
				t.Fatalf("flush after run returned: %v", err)
			}
			st.Close()

			st = open()
			defer st.Close()
			fresh := newTwin()
			var fs []*twin.Feature
			if err := st.Load(context.Background(), func(f *twin.Feature) error { fs = append(fs, f); return nil }); err != nil {
				t.Fatal(err)
			}
			fresh.Load(fs)
			if fresh.Len() != old.Len() {
				t.Fatalf("reloaded %d objects, had %d", fresh.Len(), old.Len())
			}
			for _, l := range twin.Layers {
				old.Range(l, func(f *twin.Feature) bool {
					g, ok := fresh.Get(f.ID)
					if !ok {
						t.Errorf("%s missing after restart", f.ID)
						return true
					}
					if err := storetest.Equal(f, g); err != nil {
						t.Error(err)
					}
					return true
				})
			}
			h, err := st.History(context.Background(), twin.NewID(twin.Workers, "w1"), time.Time{}, time.Time{}, 0)
			if err != nil || len(h) != 100 {
				t.Fatalf("history: %d, %v", len(h), err)
			}
			seq, _ := st.GetMeta(context.Background(), writer.MetaFeedSeq)
			if len(seq) != 8 || binary.BigEndian.Uint64(seq) != old.Feed().Last() {
				t.Fatalf("feed_seq %q, want %d", seq, old.Feed().Last())
			}
		})
	}
}

// flaky fails every write while down is set.
type flaky struct {
	twin.Store
	down atomic.Bool
}

var errDown = errors.New("store down")

func (f *flaky) Upsert(ctx context.Context, fs []*twin.Feature) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Upsert(ctx, fs)
}
func (f *flaky) Delete(ctx context.Context, ids []twin.ID) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Delete(ctx, ids)
}
func (f *flaky) AppendHistory(ctx context.Context, ss []twin.Sample) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.AppendHistory(ctx, ss)
}
func (f *flaky) Load(ctx context.Context, fn func(*twin.Feature) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Load(ctx, fn)
}

// TestResync: with the store away and the buffer full, the writer is cut
// loose by the feed at its hard cap and falls out of the window; once the
// store is back, the stored state equals the twin's again (objects deleted
// in the gap included).
func TestResync(t *testing.T) {
	bs, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	st := &flaky{Store: bs}
	tw := twin.New(twin.Options{Clock: clock.NewFake(t0), FeedSize: 16})
	reg := prometheus.NewRegistry()
	w := writer.New(tw, st, writer.Options{FlushInterval: 5 * time.Millisecond, MaxPending: 8,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Registerer: reg})
	startWriter(t, w)
	for i := 0; i < 10; i++ {
		put(t, tw, twin.Vehicles, fmt.Sprint("v", i), orb.Point{106, 29})
	}
	flush(t, w)
	st.down.Store(true)
	// Object writes (not telemetry, which would wait for the writer):
	// the feed grows to its hard cap for the stuck writer, then cuts it
	// loose.
	for i := 0; i < 100; i++ {
		put(t, tw, twin.Vehicles, fmt.Sprint("v", i%10), orb.Point{106 + float64(i)*1e-4, 29})
	}
	if _, err := tw.Delete(twin.NewID(twin.Vehicles, "v3")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		put(t, tw, twin.Buildings, fmt.Sprint("b", i), orb.Point{106, 29})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if err := w.Flush(ctx); err == nil {
		t.Fatal("flush succeeded while the store is down")
	}
	cancel()
	st.down.Store(false)
	flush(t, w)
	assertSame(t, tw, bs)
	if v := promtest.Value(t, reg, "twin_writer_pending_items"); v != 0 {
		t.Fatalf("pending after flush = %v", v)
	}
	if v := promtest.Value(t, reg, "twin_writer_resyncs_total"); v < 1 {
		t.Fatalf("resyncs = %v, want >= 1", v)
	}
}

// TestFlushed: Flushed covers a change only once the store holds it, so a
// log under ingest can acknowledge by it.
func TestFlushed(t *testing.T) {
	bs, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	tw := newTwin()
	w := writer.New(tw, bs, writer.Options{FlushInterval: time.Hour})
	if got := w.Flushed(); got != 0 {
		t.Fatalf("Flushed before any change = %d, want 0", got)
	}
	put(t, tw, twin.Vehicles, "v1", orb.Point{106.5, 29.5})
	seq := tw.Feed().Last()
	startWriter(t, w)
	if got := w.Flushed(); got >= seq {
		t.Fatalf("Flushed = %d before the flush, want < %d", got, seq)
	}
	flush(t, w)
	if got := w.Flushed(); got < seq {
		t.Fatalf("Flushed = %d after the flush, want >= %d", got, seq)
	}
	if _, err := bs.Get(context.Background(), twin.NewID(twin.Vehicles, "v1")); err != nil {
		t.Fatalf("flushed change not in the store: %v", err)
	}
}
