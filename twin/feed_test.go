package twin

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSeqLimit: producers take sequence numbers only below the reservation
// (less the slack); the one that would cross it waits, the reserver is
// signalled, and a new limit lets it go on; once reservations end, a
// producer that needs a number gets ErrSeqExhausted.
func TestSeqLimit(t *testing.T) {
	tw := New(Options{FeedSize: 64})
	f := tw.Feed()
	f.SetLast(100)
	const room = 10
	f.SetLimit(100+SeqSlack+room, 5)
	put := func(i int) error {
		_, err := tw.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106, 29}})
		return err
	}
	for i := 0; i < room; i++ {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-f.NeedLimit():
	default:
		t.Fatal("reserver not signalled with fewer than the low-water mark left")
	}
	done := make(chan error, 1)
	go func() { done <- put(room) }()
	for f.SeqWaits() == 0 {
		select {
		case err := <-done:
			t.Fatalf("producer crossed the reservation: %v (last %d, limit %d)", err, f.Last(), f.Limit())
		case <-time.After(time.Millisecond):
		}
	}
	f.SetLimit(f.Last()+SeqSlack+1, 5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Last() != 100+room+1 {
		t.Fatalf("last = %d", f.Last())
	}
	f.EndReservations()
	if err := put(room + 1); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("put with no reservation left: %v, want ErrSeqExhausted", err)
	}
	if _, _, err := tw.ApplySample(Sample{ID: NewID(Vehicles, "v0"), Time: time.Now()}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("sample with no reservation left: %v", err)
	}
	// No limit (a twin without a store): never waits.
	free := New(Options{FeedSize: 16})
	for i := 0; i < 2*SeqSlack; i++ {
		if _, err := free.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i%3))}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRequiredConsumerSeesBurst (issue 11 item 8): a burst of telemetry
// much larger than the window reaches a slow required consumer whole, in
// order, because producers wait for it (counted); a best-effort consumer
// that did not read falls out of the window as before.
func TestRequiredConsumerSeesBurst(t *testing.T) {
	const window, burst, vehicles = 64, 1000, 10
	tw := New(Options{FeedSize: window})
	f := tw.Feed()
	for i := 0; i < vehicles; i++ {
		if _, err := tw.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106, 29}}); err != nil {
			t.Fatal(err)
		}
	}
	slow := f.Follow("rules", Required, f.Last())
	defer slow.Close()
	best := f.Follow("wshub", BestEffort, f.Last())
	defer best.Close()
	first := f.Last() + 1

	done := make(chan error, 1)
	go func() {
		t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
		for i := 0; i < burst; i++ {
			if _, _, err := tw.ApplySample(Sample{ID: NewID(Vehicles, fmt.Sprint("v", i%vehicles)), Time: t0.Add(time.Duration(i) * time.Second)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waiting := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.roomWaiters > 0
	}
	pos := first - 1
	var finished bool
	for !finished || pos < f.Last() {
		// Slow: read only once the producer has had to wait for us.
		for !finished && !waiting() {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				finished = true
			case <-time.After(time.Millisecond):
			}
		}
		cs, err := f.Since(pos, 7)
		if err != nil {
			t.Fatalf("required consumer at %d: %v (window %d..%d)", pos, err, f.start, f.Last())
		}
		for _, c := range cs {
			if c.Seq != pos+1 {
				t.Fatalf("seq %d after %d: a change was skipped", c.Seq, pos)
			}
			pos = c.Seq
		}
		slow.Done(pos)
	}
	if got := pos - first + 1; got != burst {
		t.Fatalf("required consumer saw %d changes, want %d", got, burst)
	}
	if st := f.Stats(); st.RoomWaits == 0 || st.Window > 2*window {
		t.Fatalf("stats %+v: want producers to have waited and the window bounded", st)
	}
	if _, err := f.Since(first-1, 0); !errors.Is(err, ErrTooOld) {
		t.Fatalf("best-effort consumer that never read: %v, want ErrTooOld", err)
	}
	for _, c := range f.Consumers() {
		switch c.Name {
		case "rules":
			if c.Lag != 0 || !c.Required {
				t.Errorf("rules consumer: %+v", c)
			}
		case "wshub":
			if c.Lag != burst || c.Oldest.IsZero() {
				t.Errorf("wshub consumer: %+v, want lag %d", c, burst)
			}
		default:
			t.Errorf("unexpected consumer %+v", c)
		}
	}
}

// TestRequiredConsumerCutAtHardCap: object writes (which never wait) past
// twice the window while a required consumer does not read: the window
// stops at the hard cap, the consumer is cut loose once (counted) and
// gets ErrTooOld, and producers are not held for it any more.
func TestRequiredConsumerCutAtHardCap(t *testing.T) {
	const window = 64
	tw := New(Options{FeedSize: window})
	f := tw.Feed()
	stuck := f.Follow("writer", Required, f.Last())
	defer stuck.Close()
	for i := 0; i < 3*window; i++ {
		if _, err := tw.Put(&Feature{ID: NewID(Buildings, fmt.Sprint("b", i%5))}); err != nil {
			t.Fatal(err)
		}
	}
	if st := f.Stats(); st.Window != 2*window {
		t.Fatalf("window %d, want the hard cap %d", st.Window, 2*window)
	}
	if _, err := f.Since(0, 0); !errors.Is(err, ErrTooOld) {
		t.Fatalf("cut consumer reads: %v, want ErrTooOld", err)
	}
	cs := f.Consumers()
	if len(cs) != 1 || cs[0].Cuts != 1 {
		t.Fatalf("consumers %+v, want one cut", cs)
	}
	if !f.roomOK.Load() {
		t.Fatal("producers held for a consumer that was cut loose")
	}
	// Back in the window after a resync, it is held for again.
	stuck.Done(f.Last())
	if _, err := tw.Put(&Feature{ID: NewID(Buildings, "b0")}); err != nil {
		t.Fatal(err)
	}
	if cs, err := f.Since(f.Last()-1, 0); err != nil || len(cs) != 1 {
		t.Fatalf("after resync: %d, %v", len(cs), err)
	}
}

// TestFeedCollector: every named consumer has its lag series from the
// moment it follows the feed, in changes and in seconds of the oldest
// unprocessed change.
func TestFeedCollector(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	now := t0
	tw := New(Options{FeedSize: 64, Clock: fakeNow{&now}})
	f := tw.Feed()
	rules := f.Follow("rules", Required, f.Last())
	defer rules.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewFeedCollector(f, func() time.Time { return now }))
	get := func(name, consumer string) (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "consumer" && l.GetValue() == consumer {
						return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	if v, ok := get("twin_feed_consumer_lag_changes", "rules"); !ok || v != 0 {
		t.Fatalf("lag before any change: %v, %v", v, ok)
	}
	for i := 0; i < 3; i++ {
		if _, err := tw.Put(&Feature{ID: NewID(Buildings, fmt.Sprint("b", i))}); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(90 * time.Second)
	if v, _ := get("twin_feed_consumer_lag_changes", "rules"); v != 3 {
		t.Fatalf("lag = %v changes, want 3", v)
	}
	if v, _ := get("twin_feed_consumer_lag_seconds", "rules"); v != 90 {
		t.Fatalf("lag = %v s, want 90", v)
	}
	rules.Done(f.Last())
	if v, _ := get("twin_feed_consumer_lag_seconds", "rules"); v != 0 {
		t.Fatalf("lag when caught up = %v s", v)
	}
}

// fakeNow is a clock.Clock reading *t.
type fakeNow struct{ t *time.Time }

func (c fakeNow) Now() time.Time { return *c.t }

// BenchmarkApplySample measures the telemetry hot path with and without two
// required consumers that keep up (the rules engine and the writer in a
// server): the cost of the seq and room gates and of tracking positions.
func BenchmarkApplySample(b *testing.B) {
	for _, consumers := range []int{0, 2} {
		b.Run(fmt.Sprintf("required=%d", consumers), func(b *testing.B) {
			tw := New(Options{FeedSize: 1 << 16})
			f := tw.Feed()
			f.SetLimit(1<<62, 1<<20)
			const vehicles = 1000
			for i := 0; i < vehicles; i++ {
				if _, err := tw.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106, 29}}); err != nil {
					b.Fatal(err)
				}
			}
			stop := make(chan struct{})
			done := make(chan struct{}, consumers)
			for c := 0; c < consumers; c++ {
				cur := f.Follow(fmt.Sprint("c", c), Required, f.Last())
				go func() {
					defer func() { cur.Close(); done <- struct{}{} }()
					pos := cur.pos
					for {
						select {
						case <-stop:
							return
						case <-cur.C():
						}
						for {
							cs, _ := f.Since(pos, 4096)
							if len(cs) == 0 {
								break
							}
							pos = cs[len(cs)-1].Seq
							cur.Done(pos)
						}
					}
				}()
			}
			t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := tw.ApplySample(Sample{ID: NewID(Vehicles, fmt.Sprint("v", i%vehicles)), Time: t0.Add(time.Duration(i) * time.Millisecond),
					HasPos: true, Pos: orb.Point{106 + float64(i%100)*1e-5, 29}}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			for c := 0; c < consumers; c++ {
				<-done
			}
		})
	}
}

// TestSampleSize: a Sample stays in the 112-B size class (its flags
// together after the fields, not each padded to 8 B).
func TestSampleSize(t *testing.T) {
	if s := unsafe.Sizeof(Sample{}); s > 112 {
		t.Fatalf("Sample %d B, over the 112-B size class", s)
	}
}

// TestUrgentCursorSignalledLast: at every append the urgent cursor's
// wake-up comes after every other consumer's (so on a busy core the Go
// scheduler runs it first), whatever the map order; every cursor is
// still signalled once per wake, and what each reads is the same.
func TestUrgentCursorSignalledLast(t *testing.T) {
	tw := New(Options{FeedSize: 64})
	f := tw.Feed()
	var others []*Cursor
	for i := range 12 {
		others = append(others, f.Follow(fmt.Sprint("c", i), Mode(i%2), f.Last()))
	}
	urgent := f.Follow("router", BestEffort, f.Last())
	urgent.Urgent()
	anon := f.Subscribe()
	var order []*Cursor
	f.signalled = func(c *Cursor) { order = append(order, c) } // under f.mu
	for i := range 20 {
		order = order[:0]
		if _, err := tw.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106, 29}}); err != nil {
			t.Fatal(err)
		}
		if len(order) != len(others)+2 || order[len(order)-1] != urgent {
			t.Fatalf("append %d: %d wake-ups, the urgent cursor's at %d", i, len(order), slices.Index(order, urgent))
		}
		seen := map[*Cursor]bool{}
		for _, c := range order {
			if seen[c] {
				t.Fatalf("append %d: a cursor woken twice", i)
			}
			seen[c] = true
		}
		if !seen[anon] {
			t.Fatalf("append %d: the anonymous cursor was not woken", i)
		}
	}
	for _, c := range append(others, urgent, anon) {
		select {
		case <-c.C():
		default:
			t.Fatal("a cursor has no wake-up pending")
		}
	}
	if cs, err := f.Since(0, 0); err != nil || len(cs) != 20 {
		t.Fatalf("read %d changes, %v", len(cs), err)
	}
}
