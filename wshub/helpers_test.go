package wshub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
)

// The demo city's bbox (Chongqing core).
var city = orb.Bound{Min: orb.Point{106.35, 29.45}, Max: orb.Point{106.75, 29.75}}

// westEast assigns regions by longitude: a stand-in for twin/locate.
type westEast struct{}

func (westEast) Locate(g orb.Geometry) ([]uint64, *twin.Place) {
	if g.Bound().Center()[0] < 106.55 {
		return nil, twin.NewPlace([]string{"500000", "500103"}, "")
	}
	return nil, twin.NewPlace([]string{"500000", "500105"}, "")
}

type env struct {
	t     *testing.T
	tw    *twin.Twin
	hub   *Hub
	srv   *httptest.Server
	clk   *clock.Fake
	reg   *prometheus.Registry
	ts    time.Time // next telemetry ts
	mu    sync.Mutex
	stop  context.CancelFunc
	runed chan error
}

func newEnv(t *testing.T, opts Options, feedSize int) *env {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
	tw := twin.New(twin.Options{FeedSize: feedSize, Clock: clk, Enricher: westEast{}})
	reg := prometheus.NewRegistry()
	if opts.Clock == nil {
		opts.Clock = clk
	}
	opts.Registerer = reg
	h := New(tw, opts)
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, tw: tw, hub: h, clk: clk, reg: reg, ts: clk.Now(), stop: cancel, runed: make(chan error, 1)}
	go func() { e.runed <- h.Run(ctx) }()
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		cancel()
		if err := <-e.runed; err != nil {
			t.Errorf("Run: %v", err)
		}
		e.srv.Close()
	})
	return e
}

func (e *env) put(name string, p orb.Point) {
	e.t.Helper()
	if _, err := e.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, name), Geometry: p,
		Props: twin.NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
		e.t.Fatalf("put %s: %v", name, err)
	}
}

func (e *env) putProps(name string, p orb.Point, props map[string]any) {
	e.t.Helper()
	if _, err := e.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, name), Geometry: p, Props: twin.NewProps(props)}); err != nil {
		e.t.Fatalf("put %s: %v", name, err)
	}
}

func (e *env) move(name string, p orb.Point) {
	e.t.Helper()
	e.mu.Lock()
	e.ts = e.ts.Add(time.Millisecond)
	ts := e.ts
	e.mu.Unlock()
	if _, _, err := e.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, name), Time: ts,
		HasPos: true, Pos: p, HasSpeed: true, SpeedKmh: 30}); err != nil {
		e.t.Fatalf("move %s: %v", name, err)
	}
}

// want returns what a subscription to vehicles in b for p should hold.
func (e *env) want(b orb.Bound, p auth.Principal) map[string]uint64 {
	out := map[string]uint64{}
	e.tw.Search(twin.Vehicles, b, func(f *twin.Feature) bool {
		if p.Sees(f) {
			out[f.ID.String()] = f.Version
		}
		return true
	})
	return out
}

// msg is a decoded server message.
type msg struct {
	Op       string  `json:"op"`
	Seq      uint64  `json:"seq"`
	Kind     string  `json:"kind"`
	Feature  *wfeat  `json:"feature"`
	Features []wfeat `json:"features"`
	Error    string  `json:"error"`
}

type wfeat struct {
	ID      string         `json:"id"`
	Layer   string         `json:"layer"`
	Version uint64         `json:"version"`
	Region  []string       `json:"region"`
	Props   map[string]any `json:"properties"`
	Geom    struct {
		Coordinates []float64 `json:"coordinates"`
	} `json:"geometry"`
}

// tclient is a real websocket client that keeps the state the protocol
// builds and checks its invariants as it applies messages.
type tclient struct {
	t     *testing.T
	conn  *websocket.Conn
	in    chan msg
	errc  chan error // read error when the link ends
	state map[string]wfeat
	// maxVer is the highest version ever applied per object (across
	// reconnects): versions may only grow.
	maxVer  map[string]uint64
	lastSeq uint64
	counts  map[string]int
}

func dialOpts(t *testing.T, e *env, hdr http.Header, d *websocket.Dialer) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	return d.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http"), hdr)
}

func dial(t *testing.T, e *env) *tclient {
	t.Helper()
	return dialWith(t, e, nil, nil, nil)
}

// dialWith connects; prev carries state over a reconnect.
func dialWith(t *testing.T, e *env, hdr http.Header, d *websocket.Dialer, prev *tclient) *tclient {
	t.Helper()
	conn, _, err := dialOpts(t, e, hdr, d)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &tclient{t: t, conn: conn, in: make(chan msg, 1<<16), errc: make(chan error, 1),
		state: map[string]wfeat{}, maxVer: map[string]uint64{}, counts: map[string]int{}}
	if prev != nil {
		c.state, c.maxVer, c.lastSeq = prev.state, prev.maxVer, prev.lastSeq
	}
	go func() {
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				c.errc <- err
				close(c.in)
				return
			}
			var m msg
			if err := json.Unmarshal(data, &m); err != nil {
				c.errc <- fmt.Errorf("bad server json %q: %w", data, err)
				close(c.in)
				return
			}
			c.in <- m
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *tclient) send(v string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *tclient) subscribe(b orb.Bound, since *uint64) {
	c.t.Helper()
	s := fmt.Sprintf(`{"op":"subscribe","layers":["vehicles"],"bbox":[%g,%g,%g,%g]`, b.Min[0], b.Min[1], b.Max[0], b.Max[1])
	if since != nil {
		s += fmt.Sprintf(`,"since":%d`, *since)
	}
	c.send(s + "}")
}

// apply folds one message into the state, checking order and versions.
func (c *tclient) apply(m msg) {
	c.t.Helper()
	c.counts[m.Op+m.Kind]++
	switch m.Op {
	case "snapshot":
		if m.Seq < c.lastSeq {
			c.t.Errorf("snapshot seq %d < last seq %d", m.Seq, c.lastSeq)
		}
		c.lastSeq = m.Seq
		c.state = map[string]wfeat{}
		for _, f := range m.Features {
			c.upsert(f)
		}
	case "delta":
		if m.Seq <= c.lastSeq {
			c.t.Errorf("delta seq %d <= last seq %d (duplicate or out of order)", m.Seq, c.lastSeq)
		}
		c.lastSeq = m.Seq
		if m.Feature == nil || m.Feature.ID == "" {
			c.t.Fatalf("delta without feature id: %+v", m)
		}
		switch m.Kind {
		case "upsert":
			if m.Feature.Version <= c.maxVer[m.Feature.ID] {
				c.t.Errorf("%s: version %d after %d (regression or duplicate)", m.Feature.ID, m.Feature.Version, c.maxVer[m.Feature.ID])
			}
			c.upsert(*m.Feature)
		case "remove":
			delete(c.state, m.Feature.ID)
		default:
			c.t.Errorf("delta kind %q", m.Kind)
		}
	case "resync":
		c.state = map[string]wfeat{}
	}
}

func (c *tclient) upsert(f wfeat) {
	if f.Version < c.maxVer[f.ID] {
		c.t.Errorf("%s: version %d after %d", f.ID, f.Version, c.maxVer[f.ID])
	}
	c.maxVer[f.ID] = max(c.maxVer[f.ID], f.Version)
	c.state[f.ID] = f
}

// until applies messages until pred holds for one of them.
func (c *tclient) until(what string, pred func(msg) bool) msg {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("waiting for %s: link ended: %v", what, <-c.errc)
			}
			c.apply(m)
			if pred(m) {
				return m
			}
		case <-timeout:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (c *tclient) untilSnapshot() msg {
	c.t.Helper()
	return c.until("snapshot", func(m msg) bool { return m.Op == "snapshot" })
}

// untilUpsert waits until the state holds id at version v or later.
func (c *tclient) untilUpsert(id string, v uint64) {
	c.t.Helper()
	// After a resync the object may arrive in a snapshot instead.
	c.until(fmt.Sprintf("%s v%d", id, v), func(m msg) bool {
		return (m.Op == "delta" || m.Op == "snapshot") && c.state[id].Version >= v
	})
}

func (c *tclient) versions() map[string]uint64 {
	out := map[string]uint64{}
	for id, f := range c.state {
		out[id] = f.Version
	}
	return out
}

func diff(got, want map[string]uint64) string {
	var b strings.Builder
	for id, v := range want {
		if got[id] != v {
			fmt.Fprintf(&b, "%s: got v%d want v%d; ", id, got[id], v)
		}
	}
	for id, v := range got {
		if _, ok := want[id]; !ok {
			fmt.Fprintf(&b, "%s: v%d should not be there; ", id, v)
		}
	}
	return b.String()
}

// sentinel puts a marker object at p and returns its id and version: once a
// client has its delta, it has every earlier delta too (seq order).
func (e *env) sentinel(p orb.Point) (string, uint64) {
	e.t.Helper()
	e.put("sentinel", p)
	f, _ := e.tw.Get(twin.NewID(twin.Vehicles, "sentinel"))
	return f.ID.String(), f.Version
}

// waitFor polls cond (network progress, not fake time) for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// closeCode returns the websocket close code of a read error (or -1).
func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// smallBufDialer shrinks the client's socket receive buffer so a client that
// stops reading backs up the server's writer quickly.
func smallBufDialer() *websocket.Dialer {
	return &websocket.Dialer{
		NetDial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
				})
				return errors.Join(err, serr)
			}}
			return d.Dial(network, addr)
		},
		ReadBufferSize: 1024,
	}
}

// clientAt finds the hub's client for a remote address.
func (e *env) clientAt(remote string) *client {
	e.t.Helper()
	var found *client
	waitFor(e.t, "client "+remote, func() bool {
		e.hub.mu.RLock()
		defer e.hub.mu.RUnlock()
		for c := range e.hub.clients {
			if c.remote == remote {
				found = c
			}
		}
		return found != nil
	})
	return found
}

// laggingClients counts clients currently behind.
func (e *env) laggingClients() int {
	e.hub.mu.RLock()
	defer e.hub.mu.RUnlock()
	n := 0
	for c := range e.hub.clients {
		if c.laggingSinceSet() {
			n++
		}
	}
	return n
}

func (c *client) laggingSinceSet() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.laggingSince.IsZero()
}
