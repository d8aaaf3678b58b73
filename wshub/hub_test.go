package wshub

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func randIn(r *rand.Rand, b orb.Bound) orb.Point {
	return orb.Point{b.Min[0] + r.Float64()*(b.Max[0]-b.Min[0]), b.Min[1] + r.Float64()*(b.Max[1]-b.Min[1])}
}

// view is a viewport in the middle of the city; objects move in and out of it.
var view = orb.Bound{Min: orb.Point{106.45, 29.55}, Max: orb.Point{106.60, 29.65}}

func TestSnapshotAndDeltasEqualTwin(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 300
	for i := range n {
		e.put(fmt.Sprintf("v%d", i), randIn(r, city))
	}
	c := dial(t, e)
	c.subscribe(view, nil)
	snap := c.untilSnapshot()
	if got, want := c.versions(), e.want(view, auth.Principal{}); diff(got, want) != "" {
		t.Fatalf("snapshot differs from twin: %s", diff(got, want))
	}
	if snap.Seq != e.tw.Feed().Last() {
		t.Errorf("snapshot seq %d, feed last %d", snap.Seq, e.tw.Feed().Last())
	}
	// Concurrent ingest: moves in/out of view, re-puts, deletes, history.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5000 {
			name := fmt.Sprintf("v%d", r.IntN(n))
			switch {
			case i%97 == 0:
				_, _ = e.tw.Delete(twin.NewID(twin.Vehicles, name))
			case i%31 == 0:
				e.put(fmt.Sprintf("new%d", i), randIn(r, city))
			default:
				if _, ok := e.tw.Get(twin.NewID(twin.Vehicles, name)); ok {
					e.move(name, randIn(r, city))
				}
			}
		}
	}()
	<-done
	// An old sample: a History change, which must not reach the client.
	_, _, _ = e.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, "v1"), Time: e.clk.Now().Add(-time.Hour), HasPos: true, Pos: view.Center()})
	id, v := e.sentinel(view.Center())
	c.untilUpsert(id, v)
	if d := diff(c.versions(), e.want(view, auth.Principal{})); d != "" {
		t.Fatalf("client state differs from twin: %s", d)
	}
	if c.counts["deltaremove"] == 0 || c.counts["deltaupsert"] == 0 {
		t.Errorf("expected upserts and removes, got %v", c.counts)
	}
	// The features carry the GeoJSON form with twin metadata.
	f := c.state[id]
	if f.Layer != "vehicles" || len(f.Geom.Coordinates) != 2 || len(f.Region) == 0 {
		t.Errorf("sentinel feature %+v", f)
	}
	// Each round of writes timed its oldest delta.
	var m dto.Metric
	if err := e.hub.m.flushAge.Write(&m); err != nil || m.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("twin_ws_flush_age_seconds observed no round (%v)", err)
	}
}

func TestPanChangesWhatArrives(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	a := orb.Bound{Min: orb.Point{106.40, 29.50}, Max: orb.Point{106.45, 29.55}}
	b := orb.Bound{Min: orb.Point{106.60, 29.60}, Max: orb.Point{106.65, 29.65}}
	e.put("inA", a.Center())
	e.put("inB", b.Center())
	c := dial(t, e)
	c.subscribe(a, nil)
	c.untilSnapshot()
	if d := diff(c.versions(), map[string]uint64{"vehicles/inA": 1}); d != "" {
		t.Fatalf("view A: %s", d)
	}
	c.subscribe(b, nil) // pan: a snapshot of the new view replaces the state
	c.untilSnapshot()
	if d := diff(c.versions(), map[string]uint64{"vehicles/inB": 1}); d != "" {
		t.Fatalf("view B: %s", d)
	}
	e.move("inA", orb.Point{106.41, 29.51}) // stays in A: must not arrive
	e.move("inB", orb.Point{106.61, 29.61})
	e.move("inB", orb.Point{106.70, 29.70}) // leaves B: a remove
	id, v := e.sentinel(b.Center())
	seen := map[string]int{}
	c.until("sentinel", func(m msg) bool {
		if m.Op == "delta" {
			seen[m.Kind+" "+m.Feature.ID]++
		}
		return m.Op == "delta" && m.Feature.ID == id && m.Feature.Version == v
	})
	if seen["upsert vehicles/inA"] != 0 {
		t.Errorf("got a delta for an object outside the view: %v", seen)
	}
	// The upsert may have been coalesced into the remove if still pending.
	if seen["upsert vehicles/inB"] > 1 || seen["remove vehicles/inB"] != 1 {
		t.Errorf("want at most one upsert and one remove of inB, got %v", seen)
	}
	if d := diff(c.versions(), e.want(b, auth.Principal{})); d != "" {
		t.Fatalf("after pan: %s", d)
	}
}

func TestResumeWithSince(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	r := rand.New(rand.NewPCG(3, 4))
	const n = 100
	for i := range n {
		e.put(fmt.Sprintf("v%d", i), randIn(r, city))
	}
	c := dial(t, e)
	c.subscribe(view, nil)
	c.untilSnapshot()
	churn := func(k int) {
		for range k {
			e.move(fmt.Sprintf("v%d", r.IntN(n)), randIn(r, city))
		}
	}
	churn(500)
	id, v := e.sentinel(view.Center())
	c.untilUpsert(id, v)
	c.conn.Close()
	t.Logf("reader after close: %v", <-c.errc)

	churn(1000) // while disconnected
	_, _ = e.tw.Delete(twin.NewID(twin.Vehicles, "sentinel"))
	c2 := dialWith(t, e, nil, nil, c)
	since := c.lastSeq
	c2.subscribe(view, &since)
	churn(200)
	e.put("sentinel2", view.Center())
	c2.untilUpsert("vehicles/sentinel2", 1)
	if c2.counts["snapshot"] != 0 || c2.counts["resync"] != 0 {
		t.Errorf("resume within the window should send deltas only, got %v", c2.counts)
	}
	if d := diff(c2.versions(), e.want(view, auth.Principal{})); d != "" {
		t.Fatalf("after resume: %s", d)
	}
}

func TestResumeTooOldResyncs(t *testing.T) {
	e := newEnv(t, Options{}, 16) // a tiny feed window
	e.put("a", view.Center())
	c := dial(t, e)
	c.subscribe(view, nil)
	c.untilSnapshot()
	since := c.lastSeq
	c.conn.Close()
	t.Logf("reader after close: %v", <-c.errc)
	for i := range 40 {
		e.move("a", orb.Point{106.5 + float64(i)*1e-4, 29.6})
	}
	c2 := dialWith(t, e, nil, nil, c)
	c2.subscribe(view, &since)
	c2.until("resync", func(m msg) bool { return m.Op == "resync" })
	c2.untilSnapshot()
	if d := diff(c2.versions(), e.want(view, auth.Principal{})); d != "" {
		t.Fatalf("after resync: %s", d)
	}
}

func TestMalformedMessagesGetErrors(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	e.put("a", view.Center())
	c := dial(t, e)
	for _, bad := range []string{
		`not json`,
		`{"op":"unsubscribe"}`,
		`{"op":"subscribe","layers":[],"bbox":[106,29,107,30]}`,
		`{"op":"subscribe","layers":["dragons"],"bbox":[106,29,107,30]}`,
		`{"op":"subscribe","layers":["vehicles"],"bbox":[107,29,106,30]}`,
		`{"op":"subscribe","layers":["vehicles"],"bbox":[106,29,107]}`,
		`{"op":"subscribe","layers":["vehicles"],"bbox":[106,29,107,30],"since":-3}`,
	} {
		c.send(bad)
		m := c.until("error", func(m msg) bool { return true })
		if m.Op != "error" || m.Error == "" {
			t.Errorf("%s: got %+v, want an error", bad, m)
		}
	}
	c.subscribe(view, nil) // the link survived
	c.untilSnapshot()
	if len(c.state) != 1 {
		t.Errorf("state %v", c.versions())
	}
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	_, resp, err := dialOpts(t, e, http.Header{"Origin": {"https://evil.example"}}, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v; want 403", err, resp)
	}
	conn, _, err := dialOpts(t, e, http.Header{"Origin": {e.srv.URL}}, nil) // same origin
	if err != nil {
		t.Fatalf("same origin rejected: %v", err)
	}
	conn.Close()

	e2 := newEnv(t, Options{AllowedOrigins: []string{"https://ops.example"}}, 0)
	if _, resp, _ := dialOpts(t, e2, http.Header{"Origin": {e2.srv.URL}}, nil); resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("origin outside the allow list should be 403, got %v", resp)
	}
	conn, _, err = dialOpts(t, e2, http.Header{"Origin": {"https://ops.example"}}, nil)
	if err != nil {
		t.Fatalf("allowed origin rejected: %v", err)
	}
	conn.Close()
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, Options{Authorize: func(r *http.Request) (auth.Principal, error) {
		return auth.Principal{}, auth.ErrNoToken
	}}, 0)
	_, resp, err := dialOpts(t, e, nil, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("want 401, got %v %v", err, resp)
	}
}

func TestScopedPrincipalSeesOnlyItsRegion(t *testing.T) {
	district := auth.Principal{Subject: "op1", Role: auth.Operator, Region: "500105"} // east of 106.55
	e := newEnv(t, Options{Authorize: func(r *http.Request) (auth.Principal, error) { return district, nil }}, 0)
	r := rand.New(rand.NewPCG(5, 6))
	const n = 100
	for i := range n {
		e.put(fmt.Sprintf("v%d", i), randIn(r, city))
	}
	c := dial(t, e)
	c.subscribe(city, nil)
	c.untilSnapshot()
	check := func(when string) {
		for id, f := range c.state {
			if len(f.Region) < 2 || f.Region[1] != "500105" {
				t.Fatalf("%s: %s in %v is outside the principal's region", when, id, f.Region)
			}
		}
		if d := diff(c.versions(), e.want(city, district)); d != "" {
			t.Fatalf("%s: %s", when, d)
		}
	}
	check("snapshot")
	for range 2000 {
		e.move(fmt.Sprintf("v%d", r.IntN(n)), randIn(r, city)) // crosses the district line
	}
	id, v := e.sentinel(orb.Point{106.7, 29.6})
	c.untilUpsert(id, v)
	check("deltas")
	if c.counts["deltaremove"] == 0 {
		t.Errorf("objects leaving scope should yield removes: %v", c.counts)
	}
}

func TestStalledClientCoalescedThenDropped(t *testing.T) {
	e := newEnv(t, Options{QueueBytes: 200 << 10, HopelessAfter: time.Minute}, 0)
	const hot = 8
	for i := range hot {
		e.put(fmt.Sprintf("hot%d", i), view.Center())
	}
	healthy := dial(t, e)
	healthy.subscribe(city, nil)
	healthy.untilSnapshot()

	// The stalled client reads its snapshot, then never reads again.
	sc, _, err := dialOpts(t, e, nil, smallBufDialer())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.WriteMessage(1, []byte(`{"op":"subscribe","layers":["vehicles"],"bbox":[106.35,29.45,106.75,29.75]}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sc.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	stalled := e.clientAt(sc.LocalAddr().String())
	pending := func() int {
		stalled.mu.Lock()
		defer stalled.mu.Unlock()
		return stalled.q.n
	}
	// Hammer a few objects with bulky props until the stalled client's
	// writer is blocked on its full socket: its queue keeps one delta per
	// object even when nothing new arrives for a while.
	bulk := strings.Repeat("x", 16<<10)
	blocked := func() bool {
		if pending() < hot {
			return false
		}
		time.Sleep(20 * time.Millisecond) // an unblocked writer drains 8 deltas in far less
		return pending() >= hot
	}
	for round := 0; !blocked(); round++ {
		if round > 2000 {
			t.Fatal("stalled client's writer never blocked")
		}
		for k := range hot {
			e.putProps(fmt.Sprintf("hot%d", k), view.Center(), map[string]any{"blob": bulk, "round": round})
		}
	}
	// Coalescing: thousands more updates of the same objects do not grow it.
	before := testutil.ToFloat64(e.hub.m.coalesced)
	for k := range 2000 {
		e.move(fmt.Sprintf("hot%d", k%hot), orb.Point{106.5 + float64(k%1000)*1e-5, 29.61})
	}
	waitFor(t, "coalescing", func() bool { return testutil.ToFloat64(e.hub.m.coalesced)-before >= 1000 })
	if n := pending(); n > hot {
		t.Fatalf("stalled queue holds %d messages for %d objects", n, hot)
	}
	// Many distinct objects overflow the stalled queue: it is now lagging.
	for k := range 2000 {
		e.put(fmt.Sprintf("cold%d", k), view.Center())
	}
	waitFor(t, "overflow", stalled.laggingSinceSet)
	stalled.mu.Lock()
	overflowed := !stalled.laggingSince.IsZero()
	stalled.mu.Unlock()
	if !overflowed {
		t.Fatal("stalled client did not overflow")
	}
	// Let the healthy client catch up before time jumps.
	id, v := e.sentinel(view.Center())
	healthy.untilUpsert(id, v)
	waitFor(t, "healthy caught up", func() bool {
		return e.laggingClients() == 1 && stalled.laggingSinceSet()
	})

	e.clk.Advance(61 * time.Second)
	e.move("hot0", view.Center()) // wakes the router, which finds the hopeless client
	waitFor(t, "drop", func() bool {
		return testutil.ToFloat64(e.hub.m.dropped.WithLabelValues("too_slow")) == 1
	})
	// The healthy client kept receiving and ends equal to the twin.
	e.move("hot1", view.Center())
	id, v = e.sentinel(city.Center())
	healthy.untilUpsert(id, v)
	if d := diff(healthy.versions(), e.want(city, auth.Principal{})); d != "" {
		t.Fatalf("healthy client: %s", d)
	}
	waitFor(t, "stalled client unregistered", func() bool { return testutil.ToFloat64(e.hub.m.clients) == 1 })
	// The stalled client's link ends (its socket was full, so the close
	// frame may not fit: 4008 or an abnormal closure).
	for {
		if _, _, err := sc.ReadMessage(); err != nil {
			if code := closeCode(err); code != CloseTooSlow && code != -1 && code != 1006 {
				t.Errorf("stalled client closed with %d", code)
			}
			break
		}
	}
}

func TestHopelessClientGetsCloseCode(t *testing.T) {
	e := newEnv(t, Options{}, 0)
	e.put("a", view.Center())
	c := dial(t, e)
	c.subscribe(view, nil)
	c.untilSnapshot()
	// Mark the (idle, writable) client as behind, as an overflow does, so
	// the close frame can be delivered and checked.
	e.hub.mu.RLock()
	for cl := range e.hub.clients {
		cl.mu.Lock()
		cl.laggingSince = e.clk.Now()
		cl.resync = true
		cl.mu.Unlock()
	}
	e.hub.mu.RUnlock()
	e.clk.Advance(10 * time.Second)
	e.move("a", view.Center())
	for range c.in {
	}
	if code := closeCode(<-c.errc); code != CloseTooSlow {
		t.Fatalf("close code %d, want %d", code, CloseTooSlow)
	}
}

// TestDeltasAfterSocketDeadlinePassed: the flusher writes without a
// deadline, but the socket keeps the last one set (the snapshot's, a
// ping's); once it has passed, the flusher's write fails and the client's
// writer takes over with a fresh deadline: the deltas still arrive and
// the client is not closed.
func TestDeltasAfterSocketDeadlinePassed(t *testing.T) {
	const hop = 200 * time.Millisecond
	e := newEnv(t, Options{HopelessAfter: hop}, 0)
	e.put("a", view.Center())
	c := dial(t, e)
	c.subscribe(view, nil)
	c.untilSnapshot()
	for i := range 3 {
		time.Sleep(2 * hop) // the snapshot's deadline (or the last drain's) has passed
		e.move("a", orb.Point{106.51 + float64(i)*0.001, 29.61})
		c.untilUpsert("vehicles/a", uint64(2+i))
	}
}
