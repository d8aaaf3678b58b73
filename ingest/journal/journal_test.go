package journal_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/paulmach/orb"
	"go.uber.org/goleak"

	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type rig struct {
	sp        *spine.Spine
	j         *journal.Journal
	tw        *twin.Twin
	persisted atomic.Uint64
	mu        sync.Mutex
	dead      []string // reasons
}

// start runs a twin with vehicles/v1 and the applier on an embedded spine.
func start(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := spine.Open(ctx, spine.Options{DataDir: t.TempDir(), LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{sp: sp, j: journal.New(sp, nil, nil), tw: twin.New(twin.Options{})}
	if _, err := r.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v1"), Geometry: orb.Point{106.5, 29.5}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- r.j.RunApplier(ctx, r.tw, journal.ApplierOptions{
			Persisted: r.persisted.Load,
			DeadLetter: func(source, topic string, payload []byte, err error) {
				r.mu.Lock()
				r.dead = append(r.dead, string(telemetry.ReasonOf(err)))
				r.mu.Unlock()
			},
			Metrics: telemetry.NewMetrics(nil),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("applier: %v", err)
		}
		sp.Close()
	})
	eventually(t, "applier leading", r.j.Leading)
	return r
}

func entry(name string, ts time.Time, lon float64) journal.Entry {
	return journal.Entry{Source: "http", Topic: "test", Name: name, TS: ts,
		Payload: fmt.Appendf(nil, `{"ts":%d,"lon":%v,"lat":29.5}`, ts.UnixMilli(), lon)}
}

// logState is the telemetry stream's state.
func (r *rig) logState(t *testing.T) jetstream.StreamState {
	t.Helper()
	st, err := r.sp.JetStream().Stream(context.Background(), spine.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// backlog is how many messages the log still holds (work queue: not acked).
func (r *rig) backlog(t *testing.T) uint64 { return r.logState(t).Msgs }

// TestSubmitAppliesAndAcksAfterPersist: Submit answers once the twin has
// the message (read your writes), the log keeps it until the store has
// flushed its change, and the same sample again is a duplicate.
func TestSubmitAppliesAndAcksAfterPersist(t *testing.T) {
	r := start(t)
	ctx := context.Background()
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	out, err := r.j.Submit(ctx, entry("v1", ts, 106.51))
	if err != nil || out != telemetry.OutcomeApplied {
		t.Fatalf("Submit = %q, %v; want applied", out, err)
	}
	f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1"))
	if p := f.Geometry.(orb.Point); p[0] != 106.51 {
		t.Fatalf("twin at %v after Submit answered", p)
	}
	// Not persisted yet: still in the log after several ack rounds.
	time.Sleep(100 * time.Millisecond) // give a wrong gate the chance to ack
	if n := r.backlog(t); n != 1 {
		t.Fatalf("log holds %d before the store flushed, want 1", n)
	}
	r.persisted.Store(r.tw.Feed().Last())
	eventually(t, "ack after the flush", func() bool { return r.backlog(t) == 0 })

	out, err = r.j.Submit(ctx, entry("v1", ts, 106.51))
	if err != nil || out != telemetry.OutcomeDuplicate {
		t.Fatalf("resubmit = %q, %v; want duplicate", out, err)
	}
	out, err = r.j.Submit(ctx, entry("v1", ts.Add(-time.Second), 106.50))
	if err != nil || out != telemetry.OutcomeHistory {
		t.Fatalf("older sample = %q, %v; want history", out, err)
	}
}

// TestApplierDeadLetters: what only the twin can refuse (unknown name) is
// dead-lettered by the applier, reported to the submitter, and acked.
func TestApplierDeadLetters(t *testing.T) {
	r := start(t)
	_, err := r.j.Submit(context.Background(), entry("ghost", time.Now().Add(-time.Second), 106.5))
	var te *telemetry.Error
	if !errors.As(err, &te) || te.Reason != telemetry.UnknownDevice {
		t.Fatalf("Submit(ghost) error %v, want unknown_device", err)
	}
	r.mu.Lock()
	dead := fmt.Sprint(r.dead)
	r.mu.Unlock()
	if dead != "[unknown_device]" {
		t.Fatalf("dead letters %s", dead)
	}
	eventually(t, "dead letter acked", func() bool { return r.backlog(t) == 0 })
}

// TestAppendConfirm: an async append is confirmed, and every message of a
// burst is applied once, each object ending at its newest sample.
func TestAppendConfirm(t *testing.T) {
	r := start(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	const n = 500
	for i := range n {
		e := entry("v1", t0.Add(time.Duration(i)*time.Second), 106.5+float64(i)*1e-5)
		f, err := r.j.AppendBatch([]journal.Entry{e})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.j.ConfirmBatch(ctx, f, []journal.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "burst applied", func() bool {
		f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1"))
		return f.Observed.Time().Equal(t0.Add((n - 1) * time.Second))
	})
	r.persisted.Store(r.tw.Feed().Last())
	eventually(t, "burst acked", func() bool { return r.backlog(t) == 0 })
	if f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1")); f.Version != n+1 {
		t.Fatalf("version %d, want %d (one per sample, in order)", f.Version, n+1)
	}
}

// TestSubmitAll: a body's lines go to the log together and each gets its
// own outcome, in order: applied, a repeat within the body duplicate, an
// unknown name the applier's dead letter. (Lines the applier has not
// reached within Submit's wait answer accepted: durable, applied later.
// A body longer than AppendWindow cannot wait on its own window slots:
// SubmitAll confirms on a second goroutine while it appends; 2,000 lines
// keep this test light under -race, where the rig's 1 s lease flaps.)
func TestSubmitAll(t *testing.T) {
	r := start(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	const n = 2000
	es := []journal.Entry{entry("v1", t0, 106.5), entry("v1", t0, 106.5), entry("ghost", t0, 106.5)}
	for i := 1; i <= n; i++ {
		es = append(es, entry("v1", t0.Add(time.Duration(i)*time.Millisecond), 106.5+float64(i)*1e-6))
	}
	res := r.j.SubmitAll(context.Background(), es)
	if len(res) != len(es) {
		t.Fatalf("%d results for %d entries", len(res), len(es))
	}
	if res[0].Err != nil || res[0].Outcome != telemetry.OutcomeApplied {
		t.Fatalf("first: %+v, want applied", res[0])
	}
	if res[1].Err != nil || res[1].Outcome != telemetry.OutcomeDuplicate {
		t.Fatalf("repeat: %+v, want duplicate", res[1])
	}
	var te *telemetry.Error
	if !errors.As(res[2].Err, &te) || te.Reason != telemetry.UnknownDevice {
		t.Fatalf("ghost: %+v, want unknown_device", res[2])
	}
	for i, x := range res[3:] {
		if x.Err != nil || (x.Outcome != telemetry.OutcomeApplied && x.Outcome != journal.OutcomeAccepted) {
			t.Fatalf("line %d: %+v, want applied (or accepted)", i+3, x)
		}
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1"))
		if f.Observed.Time().Equal(t0.Add(time.Duration(n) * time.Millisecond)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v1 at %v (version %d), want every line applied", f.Observed.Time().Sub(t0), f.Version)
		}
	}
	if f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1")); f.Version != uint64(n+2) {
		t.Fatalf("v1 version %d, want %d (one per line, the repeat not)", f.Version, n+2)
	}
}

// TestBatchOneMessage: AppendBatch puts many entries in ONE log message,
// the applier applies each in order (a dead letter among them changes
// nothing for the others), and the message stays in the log until the
// persisted seq covers every entry's change, then it is acked once. The
// same batch appended again is a duplicate of the log; the same lines in
// another batch are stored again and absorbed by the twin (duplicate).
func TestBatchOneMessage(t *testing.T) {
	r := start(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var es []journal.Entry
	for i := 0; i < 40; i++ {
		es = append(es, entry("v1", t0.Add(time.Duration(i)*time.Second), 106.5+float64(i)*1e-5))
		if i == 20 {
			es = append(es, entry("ghost", t0, 106.5))
		}
	}
	f, err := r.j.AppendBatch(es)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := r.j.ConfirmBatch(ctx, f, es)
	if err != nil || pa.Duplicate {
		t.Fatalf("confirm: %+v %v", pa, err)
	}
	if n := r.backlog(t); n != 1 {
		t.Fatalf("log holds %d messages, want 1 for the batch", n)
	}
	eventually(t, "batch applied", func() bool {
		f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1"))
		return f.Observed.Time().Equal(t0.Add(39 * time.Second))
	})
	if f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1")); f.Version != 41 {
		t.Fatalf("version %d, want 41 (one per entry, in order)", f.Version)
	}
	// The ghost's line is another object's: the applier's shard for it
	// may run after v1's last line, so its dead letter is waited for.
	var dead string
	eventually(t, "the ghost's dead letter", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		dead = fmt.Sprint(r.dead)
		return len(r.dead) > 0
	})
	if dead != "[unknown_device]" {
		t.Fatalf("dead letters %s, want the ghost's", dead)
	}
	time.Sleep(100 * time.Millisecond) // a gate round: still unpersisted
	if n := r.backlog(t); n != 1 {
		t.Fatalf("acked before persisted: %d left", n)
	}
	r.persisted.Store(r.tw.Feed().Last())
	eventually(t, "batch acked", func() bool { return r.backlog(t) == 0 })

	if pa, err := r.j.ConfirmBatch(ctx, nil, es); err != nil || !pa.Duplicate {
		t.Fatalf("the same batch again: %+v %v, want a duplicate of the log", pa, err)
	}
	res := r.j.SubmitAll(ctx, es[38:])
	for i, x := range res {
		want := telemetry.OutcomeHistory // older than the state: history, kept once
		if i == len(res)-1 {
			want = telemetry.OutcomeDuplicate
		}
		if x.Err != nil || x.Outcome != want {
			t.Fatalf("line %d again in another batch: %+v, want %s", i, x, want)
		}
	}
	if f, _ := r.tw.Get(twin.NewID(twin.Vehicles, "v1")); f.Version != 41 {
		t.Fatalf("version %d after the repeat, want 41", f.Version)
	}
}
