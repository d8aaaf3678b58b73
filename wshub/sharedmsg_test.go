package wshub

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/testseed"
)

// TestSharedDeltasArriveIntact: routed deltas are encoded once, shared by
// every client they are queued for and reused once all of them have
// written them (sharedMsg). Eight clients, some over the whole city and
// some over a district, one reading slowly, take a burst of moves while
// they read; every delta each receives must be the feed's change at its
// seq (object, version and position), and each client's state must end
// equal to the twin. A message reused while a client still held it would
// reach that client as another change's (a seq twice, or an object or
// position the feed did not have at that seq) or as broken JSON.
func TestSharedDeltasArriveIntact(t *testing.T) {
	seed := testseed.Seed(t, "TWIN_TEST_SEED")
	r := rand.New(rand.NewPCG(seed, 11))
	e := newEnv(t, Options{}, 1<<20)
	const n = 200
	for i := range n {
		e.put(fmt.Sprintf("v%d", i), randIn(r, city))
	}
	views := []orb.Bound{city, city, city, view, view, view, city, view}
	cs := make([]*tclient, len(views))
	for i, b := range views {
		var d *websocket.Dialer // the default
		if i == len(views)-1 {
			d = smallBufDialer() // a slow reader: its writer, not the flusher, writes to it
		}
		cs[i] = dialWith(t, e, nil, d, nil)
		cs[i].subscribe(b, nil)
		cs[i].untilSnapshot()
	}
	type state struct {
		id  string
		ver uint64
		at  orb.Point
	}
	moves := map[uint64]state{} // seq -> what the feed says it was
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 4000 {
			name := fmt.Sprintf("v%d", r.IntN(n))
			e.move(name, randIn(r, city))
		}
	}()
	<-done
	changes, err := e.tw.Feed().Since(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.New != nil {
			moves[c.Seq] = state{c.ID().String(), c.New.Version, c.New.Geometry.(orb.Point)}
		}
	}
	id, v := e.sentinel(view.Center())
	for i, c := range cs {
		var deltas []msg
		c.until(fmt.Sprintf("client %d: sentinel", i), func(m msg) bool {
			if m.Op == "delta" && m.Kind == "upsert" {
				deltas = append(deltas, m)
			}
			return c.state[id].Version >= v
		})
		for _, m := range deltas {
			want, ok := moves[m.Seq]
			if !ok {
				if m.Feature.ID == id {
					continue
				}
				t.Fatalf("client %d: delta at seq %d, which the feed has no upsert at", i, m.Seq)
			}
			got := state{m.Feature.ID, m.Feature.Version, orb.Point{m.Feature.Geom.Coordinates[0], m.Feature.Geom.Coordinates[1]}}
			// The wire rounds coordinates to 7 decimals (~1 cm).
			near := math.Abs(got.at[0]-want.at[0]) < 1e-6 && math.Abs(got.at[1]-want.at[1]) < 1e-6
			if got.id != want.id || got.ver != want.ver || !near {
				t.Fatalf("client %d: seq %d is %+v, the feed's change there %+v", i, m.Seq, got, want)
			}
		}
		if d := diff(c.versions(), e.want(views[i], auth.Principal{})); d != "" {
			t.Fatalf("client %d: state differs from the twin: %s", i, d)
		}
	}
}

// TestHandOffEndsAnOverduePause: the router ends the flusher's pause
// once it is over (the flusher's timer may be late on a busy core), or
// once the oldest delta waiting was committed flushTarget ago and the
// pause has lasted its least, and only then.
func TestHandOffEndsAnOverduePause(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	const fi = 10 * time.Millisecond
	h := New(e.tw, Options{FlushInterval: fi, Clock: e.clk})
	now := time.Now()
	ns := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	old := flushTarget(fi) + time.Millisecond
	for _, tc := range []struct {
		name       string
		least, due int64
		since      time.Duration // how long before the hub's clock the oldest waiting change was committed; 0: none
		want       bool
	}{
		{"not pausing", 0, 0, 0, false},
		{"pausing", ns(-time.Hour), ns(time.Hour), 0, false},
		{"overdue", ns(-time.Hour), ns(-time.Millisecond), 0, true},
		{"fresh delta", ns(-time.Hour), ns(time.Hour), flushTarget(fi) / 2, false},
		{"old delta", ns(-time.Hour), ns(time.Hour), old, true},
		{"old delta, pause short of its least", ns(time.Hour), ns(2 * time.Hour), old, false},
	} {
		h.flushLeast.Store(tc.least)
		h.flushDue.Store(tc.due)
		h.pendingSince = 0
		h.stepOldest = 0
		if tc.since != 0 {
			h.stepOldest = e.clk.Now().Add(-tc.since).UnixNano()
		}
		h.routed = append(h.routed, &client{})
		h.handOff()
		select {
		case <-h.dueC:
			if !tc.want {
				t.Errorf("%s: pause ended early", tc.name)
			}
		default:
			if tc.want {
				t.Errorf("%s: an overdue pause was not ended", tc.name)
			}
		}
		select { // handOff also woke the flusher, which does not run here
		case <-h.flushC:
		default:
		}
	}
}
