package twin

import (
	"errors"
	"fmt"
	"math/rand/v2"
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
	widest := 0
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
		widest = max(widest, f.Stats().Window)
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
	if st := f.Stats(); st.RoomWaits == 0 || widest > 2*lagWindows*window || widest < lagWindows*window {
		t.Fatalf("stats %+v, widest window %d: want producers to have waited at %d behind and the window bounded", st, widest, lagWindows*window)
	}
	// Caught up, the ring lets go of what is older than the window.
	if st := f.Stats(); st.Window > window || len(f.buf) != window {
		t.Fatalf("after catching up: window %d, ring %d; want both %d", st.Window, len(f.buf), window)
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
// twice the lag producers wait at while a required consumer does not read:
// the window stops at that hard cap, the consumer is cut loose once
// (counted) and gets ErrTooOld, and producers are not held for it any more.
func TestRequiredConsumerCutAtHardCap(t *testing.T) {
	const window = 64
	tw := New(Options{FeedSize: window})
	f := tw.Feed()
	stuck := f.Follow("writer", Required, f.Last())
	defer stuck.Close()
	widest := 0
	for i := 0; i < 2*lagWindows*window+window; i++ {
		if _, err := tw.Put(&Feature{ID: NewID(Buildings, fmt.Sprint("b", i%5))}); err != nil {
			t.Fatal(err)
		}
		widest = max(widest, f.Stats().Window)
	}
	if widest != 2*lagWindows*window {
		t.Fatalf("widest window %d, want the hard cap %d", widest, 2*lagWindows*window)
	}
	// Cut loose, it holds nothing: the ring is back to the window.
	if st := f.Stats(); st.Window != window {
		t.Fatalf("window %d after the cut, want %d", st.Window, window)
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

// TestFeedTrimsAfterLag: a required consumer two and a half windows behind
// (short of the lag producers wait at) keeps every change it has not read;
// once it catches up, the ring lets go of what is older than the window,
// clears those slots (the features they held can be collected) and is
// back to the window's size, and a best-effort reader of a dropped change
// gets ErrTooOld.
func TestFeedTrimsAfterLag(t *testing.T) {
	const window = 64
	f := NewFeed(window)
	slow := f.Follow("writer", Required, 0)
	defer slow.Close()
	feature := func(i int) *Feature { return &Feature{ID: NewID(Buildings, fmt.Sprint("b", i))} }
	n := 5 * window / 2
	for i := 1; i <= n; i++ {
		f.append(&Change{Kind: Upsert, New: feature(i)})
	}
	cs, err := f.Since(0, 0)
	if err != nil || len(cs) != n || cs[0].Seq != 1 {
		t.Fatalf("lagging required consumer reads %d changes from 1, %v; want %d", len(cs), err, n)
	}
	if len(f.buf) <= window {
		t.Fatalf("ring %d: did not grow past the window for a lagging consumer", len(f.buf))
	}
	grown := f.buf
	slow.Done(uint64(n))
	if st := f.Stats(); st.Window != window || len(f.buf) != window {
		t.Fatalf("after catching up: window %d, ring %d; want both %d", st.Window, len(f.buf), window)
	}
	for s := uint64(1); s < f.start; s++ {
		if c := grown[s%uint64(len(grown))]; c.New != nil {
			t.Fatalf("seq %d fell off the window but its slot still holds %v", s, c.New.ID)
		}
	}
	f.append(&Change{Kind: Upsert, New: feature(n + 1)})
	if st := f.Stats(); st.Window != window || len(f.buf) != window {
		t.Fatalf("next append: window %d, ring %d; want both %d", st.Window, len(f.buf), window)
	}
	if _, err := f.Since(f.start-2, 0); !errors.Is(err, ErrTooOld) {
		t.Fatalf("reading a dropped change: %v, want ErrTooOld", err)
	}
	cs, err = f.Since(uint64(n+1-window), 0)
	if err != nil || len(cs) != window || cs[window-1].Seq != uint64(n+1) {
		t.Fatalf("the window: %d changes, %v", len(cs), err)
	}
	for i, c := range cs {
		if want := fmt.Sprint("b", n+2-window+i); c.New.ID.Name != want {
			t.Fatalf("change %d is %v, want %s", c.Seq, c.New.ID, want)
		}
	}
}

// TestFeedTrimRandom: appends in bursts while three required consumers
// read at their own random paces (never far enough behind to be cut
// loose), with the seed printed. Each must read every change exactly once
// and in order, the ring must stay within the hard cap, and once all have
// caught up only the window is kept.
func TestFeedTrimRandom(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	const window = 32
	f := NewFeed(window)
	type reader struct {
		cur *Cursor
		pos uint64
	}
	rs := make([]*reader, 3)
	for i := range rs {
		rs[i] = &reader{cur: f.Follow(fmt.Sprint("r", i), Required, 0)}
		defer rs[i].cur.Close()
	}
	read := func(r *reader, max int) {
		cs, err := f.Since(r.pos, max)
		if err != nil {
			t.Fatalf("seed %d: reader at %d: %v (window from %d)", seed, r.pos, err, f.start)
		}
		for _, c := range cs {
			if c.Seq != r.pos+1 || c.New == nil || c.New.ID.Name != fmt.Sprint(c.Seq) {
				t.Fatalf("seed %d: reader at %d got seq %d (%v)", seed, r.pos, c.Seq, c.New)
			}
			r.pos = c.Seq
		}
		r.cur.Done(r.pos)
	}
	var seq uint64
	widest := 0
	for step := 0; step < 2000; step++ {
		for n := rng.IntN(40); n > 0; n-- {
			// Stay short of the lag producers wait at (this test has
			// no producer that waits): read enough first.
			for _, r := range rs {
				if seq+1-r.pos >= uint64(f.lag) {
					read(r, 0)
				}
			}
			seq++
			f.append(&Change{Kind: Upsert, New: &Feature{ID: NewID(Buildings, fmt.Sprint(seq))}})
			if len(f.buf) > 2*f.lag {
				t.Fatalf("seed %d: ring %d over the hard cap %d", seed, len(f.buf), 2*f.lag)
			}
			widest = max(widest, len(f.buf))
		}
		for _, r := range rs {
			if rng.IntN(3) == 0 {
				read(r, rng.IntN(3*window)+1)
			}
		}
	}
	if widest < 4*window {
		t.Fatalf("seed %d: the ring grew to %d only: the readers never lagged", seed, widest)
	}
	for _, r := range rs {
		read(r, 0)
		if r.pos != seq {
			t.Fatalf("seed %d: reader ends at %d, want %d", seed, r.pos, seq)
		}
	}
	for i := 0; i < 2*window; i++ { // what is left to trim goes trimStep an append
		seq++
		f.append(&Change{Kind: Upsert, New: &Feature{ID: NewID(Buildings, fmt.Sprint(seq))}})
		for _, r := range rs {
			read(r, 0)
		}
	}
	if st := f.Stats(); st.Window != window || len(f.buf) != window {
		t.Fatalf("seed %d: caught up: window %d, ring %d; want %d", seed, st.Window, len(f.buf), window)
	}
}
