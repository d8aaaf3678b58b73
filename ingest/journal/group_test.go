package journal_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/twin"
)

// lastSeq is the telemetry stream's last sequence: how many log messages
// were ever stored in it.
func (r *rig) lastSeq(t *testing.T) uint64 { return r.logState(t).LastSeq }

// runCommitter runs c until the returned stop is called; stop returns
// once Run has.
func runCommitter(c *journal.Committer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// putSenders puts one vehicle per sender, named by name.
func (r *rig) putSenders(t *testing.T, senders int, name func(int) string) {
	t.Helper()
	for s := range senders {
		if _, err := r.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, name(s)), Geometry: orb.Point{106.5, 29.5}}); err != nil {
			t.Fatal(err)
		}
	}
}

// allApplied waits until each sender's vehicle shows its last sample (the
// i-th entry is timed t0 + i s) and requires one version per entry: every
// entry applied once, in its sender's order.
func (r *rig) allApplied(t *testing.T, senders, each int, name func(int) string, t0 time.Time) {
	t.Helper()
	for s := range senders {
		id := twin.NewID(twin.Vehicles, name(s))
		eventually(t, name(s)+"'s entries applied", func() bool {
			f, _ := r.tw.Get(id)
			return f.Observed.Time().Equal(t0.Add(time.Duration(each-1) * time.Second))
		})
		if f, _ := r.tw.Get(id); f.Version != uint64(each)+1 {
			t.Fatalf("%s version %d, want %d (one per entry, once each, in order)", name(s), f.Version, each+1)
		}
	}
}

// TestCommitterGroupsSenders: what several senders add while no group can
// go (here: before Run) goes as one log message per MaxBatch entries, the
// spans say which group holds each sender's entries, in order, and every
// entry is applied exactly once and in its sender's order (each sender
// drives its own vehicle with ever newer samples, so each entry applied
// is one new version).
func TestCommitterGroupsSenders(t *testing.T) {
	r := start(t)
	c := journal.NewCommitter(r.j, 1)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	const senders, each = 4, 100 // 400 entries: two groups of MaxBatch (256) and the rest
	name := func(s int) string { return fmt.Sprintf("s%d", s) }
	r.putSenders(t, senders, name)
	spans := make([][]journal.Span, senders)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < each; k += 10 {
				var es []journal.Entry
				for i := k; i < k+10; i++ {
					es = append(es, entry(name(s), t0.Add(time.Duration(i)*time.Second), 106.5+float64(i)*1e-5))
				}
				spans[s] = c.Add(es, spans[s])
			}
		}()
	}
	wg.Wait()
	before := r.lastSeq(t)
	defer runCommitter(c)()
	groups := map[*journal.Group]int{}
	for s := range senders {
		n := 0
		for _, sp := range spans[s] {
			select {
			case <-sp.G.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("a group was never confirmed")
			}
			if err := sp.G.Err(); err != nil {
				t.Fatalf("group failed: %v", err)
			}
			groups[sp.G] += sp.N
			n += sp.N
		}
		if n != each {
			t.Fatalf("sender %d: spans cover %d entries, want %d", s, n, each)
		}
	}
	if len(groups) != 2 {
		t.Fatalf("%d groups, want 2 (256 entries, then 144)", len(groups))
	}
	for g, n := range groups {
		if n != journal.MaxBatch && n != senders*each-journal.MaxBatch {
			t.Fatalf("group %p holds %d entries", g, n)
		}
	}
	if got := r.lastSeq(t) - before; got != 2 {
		t.Fatalf("%d log messages, want 2", got)
	}
	r.allApplied(t, senders, each, name, t0)
}

// TestCommitterLoneEntryGoesAtOnce: on an idle log an entry is published
// without waiting for company, and once Run has ended every group not
// confirmed and every later Add fails, so no sender waits forever.
func TestCommitterLoneEntryGoesAtOnce(t *testing.T) {
	r := start(t)
	c := journal.NewCommitter(r.j, 0)
	stop := runCommitter(c)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	sp := c.Add([]journal.Entry{entry("v1", t0, 106.6)}, nil)
	if len(sp) != 1 || sp[0].N != 1 {
		t.Fatalf("spans %+v", sp)
	}
	select {
	case <-sp[0].G.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("a lone entry waited for company")
	}
	if err := sp[0].G.Err(); err != nil {
		t.Fatal(err)
	}
	stop()
	late := c.Add([]journal.Entry{entry("v1", t0.Add(time.Second), 106.7)}, nil)
	select {
	case <-late[0].G.Done():
	default:
		t.Fatal("an Add after Run ended waits")
	}
	if err := late[0].G.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("late Add: %v, want context.Canceled", err)
	}
}

// TestCommitterReusesGroupsSafely: senders adding while groups are being
// confirmed get confirmed groups' entry slices for new groups; every entry
// is still applied exactly once and in its sender's order (a slice reused
// while its group was still being published or retried would lose or mix
// entries, and -race would see it).
func TestCommitterReusesGroupsSafely(t *testing.T) {
	r := start(t)
	c := journal.NewCommitter(r.j, 1)
	defer runCommitter(c)()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	const senders, each = 4, 300
	name := func(s int) string { return fmt.Sprintf("r%d", s) }
	r.putSenders(t, senders, name)
	before := r.lastSeq(t)
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			var spans []journal.Span
			for k := 0; k < each; k += 5 {
				var es []journal.Entry
				for i := k; i < k+5; i++ {
					es = append(es, entry(name(s), t0.Add(time.Duration(i)*time.Second), 106.5+float64(i)*1e-5))
				}
				spans = c.Add(es, spans[:0])
				for _, sp := range spans { // a sender that waits, as a link's acker does
					select {
					case <-sp.G.Done():
					case <-time.After(30 * time.Second):
						errs <- errors.New("a group was never confirmed")
						return
					}
					if err := sp.G.Err(); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.lastSeq(t) - before; n < 2 {
		t.Fatalf("%d log messages: no group was confirmed before another opened, nothing to reuse", n)
	}
	r.allApplied(t, senders, each, name, t0)
}
