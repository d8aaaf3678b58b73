package changelog_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/internal/tcpproxy"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/changelog"
)

// TestStalePublishesCannotInterleave: a deposed leader's publishes that
// reach JetStream late (its link stalled, or its client flushed them
// after a reconnect) never land between the new leader's records. Each
// record used to name only the stream seq it expected to follow, so once
// the new leader's records brought the log to that seq, the stale record
// matched and was stored: the log then held changes computed on a state
// the new leader never had (in acceptance TestNATSClusterNodeRestart, a
// follower died on a seq gap, and history rows went missing).
func TestStalePublishesCannotInterleave(t *testing.T) {
	url := natstest.Start(t)
	px := tcpproxy.New(t, strings.TrimPrefix(url, "nats://"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	run := func(m *member) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.node.Run(ctx); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	a := join(t, ctx, "nats://"+px.Addr(), "a")
	run(a)
	eventually(t, "a leads", a.isLeading)
	b := join(t, ctx, url, "b")
	run(b)
	defer func() { cancel(); px.SetHeld(false); wg.Wait() }()

	id := twin.NewID(twin.Vehicles, "shared")
	put := func(m *member, lon float64) error {
		_, err := m.tw.Put(&twin.Feature{ID: id, Geometry: orb.Point{lon, 29}})
		return err
	}
	if err := put(a, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.node.Committed(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.node.Reached(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// A's link stalls. A does not know yet: it takes writes, one record
	// each, queued on the link, until its lease runs out.
	px.SetHeld(true)
	for i := 0; i < 40; i++ {
		if err := put(a, 200+float64(i)); err != nil {
			if !errors.Is(err, twin.ErrNotLeader) {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(5 * time.Millisecond) // the publisher sends what is tentative now: a record per write
	}
	eventually(t, "b leads", b.isLeading)
	for i := 0; i < 3; i++ {
		if err := put(b, 100+float64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.node.Committed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A's queued records reach JetStream now, after B's.
	px.SetHeld(false)
	eventually(t, "a follows b", func() bool { return !a.isLeading() && a.tw.Feed().Last() >= 4 })
	if err := put(b, 103); err != nil && !errors.Is(err, twin.ErrNotLeader) {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let late records in, if the log would take them

	// Every change in the log after A's last committed one is B's.
	js, err := jetstream.New(b.sp.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, spine.ChangeStream)
	if err != nil {
		t.Fatal(err)
	}
	first, last, err := b.sp.ChangeLogState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	for s := first; s <= last; s++ {
		m, err := st.GetMsg(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(changelog.BaseHeader) != "" {
			continue
		}
		cs, err := changelog.DecodeRecord(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Seq != next {
				t.Errorf("record %d: change %d, want %d: the log forked", s, c.Seq, next)
			}
			next = c.Seq + 1
			if p, ok := c.New.Geometry.(orb.Point); ok && p[0] >= 200 {
				t.Errorf("record %d: change %d is a write the deposed leader took back (lon %v)", s, c.Seq, p[0])
			}
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("a server stopped: %v", err)
	default:
	}
}
