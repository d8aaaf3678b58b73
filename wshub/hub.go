// Package wshub pushes the twin's changes to websocket clients (CONTRACT
// §6): each client subscribes to layers in a bbox, gets a snapshot and then
// deltas in feed order, may resume after a reconnect with `since`, and sees
// only what its principal may see. One router goroutine reads the twin's
// feed once and routes each change through a tile-bucket index to the few
// subscriptions near it; each client has a bounded, coalescing queue. One
// flusher goroutine writes the queued deltas of every client without ever
// waiting on a socket, and each client's own writer goroutine writes its
// snapshots and whatever the flusher could not (a full socket), so no
// client can stall the router, the flusher or ingest. See protocol.go for
// the messages.
package wshub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
)

// routeBatch is how many feed changes the router reads per Since call.
const routeBatch = 1024

// hopelessCheckEvery throttles the scan for hopeless clients (Clock time).
const hopelessCheckEvery = 100 * time.Millisecond

// Hub serves GET /ws. Create it with New, start Run, mount it as a handler.
// All methods are safe for concurrent use.
type Hub struct {
	tw       *twin.Twin
	opts     Options
	log      *slog.Logger
	m        *metrics
	upgrader websocket.Upgrader

	// mu guards the index, the clients and every sub: the router holds it
	// for reading while it routes a batch; subscribe holds it for writing
	// while it takes the snapshot, so a snapshot at seq S and the deltas
	// with Seq > S neither overlap nor leave a gap.
	mu      sync.RWMutex
	ix      *index
	clients map[*client]struct{}
	stopped bool
	// Websockets admitted (upgrading or open) in all, per remote IP and
	// per token subject, for the caps of Options.
	// all mirrors clients under its own lock, for the queued-bytes gauge:
	// a scrape must not wait on mu.
	allMu sync.Mutex
	all   map[*client]struct{}

	admitted   int
	perIP      map[string]int
	perSubject map[string]int
	wg         sync.WaitGroup // connection handlers

	pos       uint64    // last routed seq: written by the router under mu (read), read by it freely or by others under mu (write)
	lastCheck time.Time // router: last hopeless scan

	// scratch is the router's encoding buffer; msgs recycles the routed
	// deltas' encodings (sharedMsg), copied from it.
	scratch []byte
	msgs    msgPool
	// batch is the router's feed batch, read into the same slice each
	// step (Feed.SinceAppend) instead of a fresh one per step.
	batch []twin.Change
	// routed lists the clients the router queued deltas for in this step
	// (client.enqueueDelta; router goroutine only); the step hands them
	// to the flusher.
	routed []*client
	// stepOldest is the server time of the first change this step queued
	// for a client (router goroutine only; 0 when none); handOff folds it
	// into pendingSince.
	stepOldest int64
	// flushing is what waits for the flusher's next round (under
	// flushMu); flushC (capacity 1) wakes the flusher.
	flushMu  sync.Mutex
	flushing []*client
	// pendingSince is the server time (Unix ns) of the oldest change
	// queued for the flusher's next round (under flushMu; 0 when none).
	pendingSince int64
	flushC       chan struct{}
	// flushDue is when the flusher's pause ends (Unix ns; 0 while it is
	// not pausing), flushLeast the earliest it may end for deltas that
	// have waited flushTarget; dueC (capacity 1) ends it (handOff).
	// flushLeast is stored before flushDue, so a router that reads a
	// pause's due reads its least or a later one.
	flushDue   atomic.Int64
	flushLeast atomic.Int64
	dueC       chan struct{}
}

// encodeRouted is encodeDelta for the router goroutine, into a shared
// message whose one reference is the router's (route lets go of it). It
// encodes into the router's scratch and copies into a recycled message
// when that has room, else into one of the exact size: a message grown
// by appending from nothing took four or five allocations.
func (h *Hub) encodeRouted(seq uint64, kind twin.ChangeKind, f *twin.Feature) (*sharedMsg, error) {
	b, err := appendDelta(h.scratch[:0], seq, kind, f)
	if err != nil {
		return nil, err
	}
	h.scratch = b
	m := h.msgs.get()
	if cap(m.b) >= len(b) {
		m.b = append(m.b[:0], b...)
	} else {
		m.b = bytes.Clone(b)
	}
	return m, nil
}

var _ http.Handler = (*Hub)(nil)

// New makes a hub over the twin's feed. It starts routing from the feed's
// current end, so subscriptions made before Run starts miss nothing.
func New(tw *twin.Twin, opts Options) *Hub {
	opts = opts.withDefaults()
	h := &Hub{tw: tw, opts: opts, log: opts.Logger, m: newMetrics(opts.Registerer),
		ix: newIndex(), clients: map[*client]struct{}{}, pos: tw.Feed().Last(),
		perIP: map[string]int{}, perSubject: map[string]int{}, all: map[*client]struct{}{},
		flushC: make(chan struct{}, 1), dueC: make(chan struct{}, 1)}
	h.m.queued(h.queuedBytes)
	// The origin is checked in ServeHTTP to answer with a JSON error.
	h.upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true },
		HandshakeTimeout: 10 * time.Second}
	return h
}

// Run routes the feed to clients until ctx ends, then closes every client
// with 1001 (going away) and waits for their handlers. It returns nil on a
// cancelled ctx. Call it once.
func (h *Hub) Run(ctx context.Context) error {
	// Best effort: a router out of the window resyncs every client. The
	// cursor reports the router's position for the lag metrics.
	cur := h.tw.Feed().Follow("wshub", twin.BestEffort, h.pos)
	cur.Urgent()
	defer cur.Close()
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		h.flushLoop(ctx)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		if h.step() > 0 {
			cur.Done(h.pos)
			continue
		}
		select {
		case <-ctx.Done():
		case <-cur.C():
		case <-tick.C:
			h.checkHopeless(true)
		}
	}
	<-flushDone
	h.shutdown()
	return nil
}

// flushLoop writes the clients' queued deltas to their sockets, one round
// over the clients the router queued for since the last round, then
// waits before the next (flushPause: Options.FlushInterval, longer after
// a long round), so what is routed meanwhile goes out in one write per
// client; an idle hub's first delta goes out at once. One goroutine writes for every client, by descriptor
// and never waiting on a socket (client.flushTurn): with 200 busy clients
// a writer goroutine per client woken on its own timer every interval
// (20,000 wake-ups, timers and selects a second at 10 ms) was a fifth of
// the hub's CPU beside the writes, and 200 runnable goroutines queued
// ahead of ingest on a busy core. A client the flusher cannot finish
// goes to its own writer, which writes with a deadline.
func (h *Hub) flushLoop(ctx context.Context) {
	var pause *time.Timer
	if h.opts.FlushInterval > 0 {
		pause = time.NewTimer(time.Hour)
		pause.Stop()
		defer pause.Stop()
	}
	var round []*client
	var sc flushScratch
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.flushC:
		}
		h.flushMu.Lock()
		round = append(round[:0], h.flushing...)
		clear(h.flushing)
		h.flushing = h.flushing[:0]
		since := h.pendingSince
		h.pendingSince = 0
		h.flushMu.Unlock()
		if since != 0 {
			h.m.flushAge.Observe(max(0, float64(h.opts.Clock.Now().UnixNano()-since)/1e9))
		}
		start := time.Now()
		sent, size := 0, 0
		for _, c := range round {
			n, b := c.flushTurn(&sc)
			sent += n
			size += b
		}
		clear(round)
		if sent > 0 {
			h.m.sent.Add(float64(sent))
			h.m.sentBytes.Add(float64(size))
		}
		if pause != nil {
			least, d := flushPause(h.opts.FlushInterval, time.Since(start))
			select { // a token left from the last pause would cut this one short
			case <-h.dueC:
			default:
			}
			now := time.Now()
			h.flushLeast.Store(now.Add(least).UnixNano())
			h.flushDue.Store(now.Add(d).UnixNano())
			pause.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-pause.C:
			case <-h.dueC: // the router saw the pause over first
				pause.Stop()
			}
			h.flushDue.Store(0)
		}
	}
}

// The flusher's pause after a round is flushDuty times what the round
// took, at least Options.FlushInterval and at most flushStretch times it;
// it ends sooner, though never before the interval nor flushFloor times
// the round, once the oldest delta waiting for the next round was
// committed flushTarget ago (the router sees that: pauseOver).
// A round costs a write syscall per client with deltas, whatever the
// pause (about 8 µs each over loopback, the kernel's delivery to the
// reader included: BenchmarkRouteFlush, 200 clients, ~7 deltas a client a
// round: 10-14 cpu-µs per move at 200 moves a round, 7 at 500), so at
// 200 busy clients and 10 ms the writes alone took a sixth of a core; a
// round that long (~2 ms) now waits ~16 ms instead, and the fewer, larger
// writes leave that CPU to ingest, whose queueing is what makes the
// latency on a full core. A light load (few clients a round, a short
// round) keeps the interval, and its latency.
//
// The long pause was the largest share of a delta's latency, though
// (issue 16 goal 6: a round every 25-30 ms at 20,000 moves a second),
// and it hit hardest the deltas already late from the router (a busy
// core, the change log's round trip), which make the p99. Measured
// from the commit instead, the pause ends for them: at 20,000 moves a
// second to 200 clients, alternating six runs each, the p99 fell from
// 35.5-87.9 ms (median 45.5) to 32.3-47.3 (median 35.1) for about the
// same CPU (README, goal 6). The floor keeps the writes under about a
// third of the core whatever the clients.
const (
	flushDuty    = 8
	flushStretch = 3
	flushFloor   = 2
)

// flushTarget is the age, from its commit in the twin, at which a
// waiting delta ends the flusher's pause, for the interval fi.
func flushTarget(fi time.Duration) time.Duration { return fi + fi/2 }

// flushPause is the wait after a round that took took, for the interval
// fi: due after full, and over from least on for a delta flushTarget old.
func flushPause(fi, took time.Duration) (least, full time.Duration) {
	full = min(max(fi, flushDuty*took), flushStretch*fi)
	return min(max(fi, flushFloor*took), full), full
}

// pauseOver reports whether the flusher's pause (over from least for old
// deltas, due at due; Unix ns) is over at now when the oldest delta
// waiting was committed age ago (negative: none waits).
func pauseOver(now, least, due int64, age, target time.Duration) bool {
	return now >= due || age >= target && now >= least
}

// handOff gives the clients the router queued for to the flusher.
func (h *Hub) handOff() {
	oldest := h.stepOldest
	h.stepOldest = 0
	if len(h.routed) == 0 {
		return
	}
	h.flushMu.Lock()
	h.flushing = append(h.flushing, h.routed...)
	if oldest != 0 && (h.pendingSince == 0 || oldest < h.pendingSince) {
		h.pendingSince = oldest
	}
	age := time.Duration(-1)
	if h.pendingSince != 0 {
		// On the twin's clock (Options.Clock): a change's time is its
		// server's, the leader's on a follower; a follower whose clock
		// runs ahead just pauses for the least.
		age = time.Duration(h.opts.Clock.Now().UnixNano() - h.pendingSince)
	}
	h.flushMu.Unlock()
	clear(h.routed)
	h.routed = h.routed[:0]
	select {
	case h.flushC <- struct{}{}:
	default:
	}
	// The flusher's pause is a timer, and a timer is late when the core
	// is held by a goroutine that runs on (a store commit, an idle GC
	// mark worker, which gives way to runnable goroutines and network
	// input but not to timers: golang/go#38860, #45632): up to the
	// scheduler's 10 ms quantum on one core, at every round. The router
	// runs at every commit, woken by a channel, so it ends a pause that
	// is over itself, and one the oldest waiting delta has outlasted.
	if due := h.flushDue.Load(); due != 0 && pauseOver(time.Now().UnixNano(), h.flushLeast.Load(), due, age, flushTarget(h.opts.FlushInterval)) {
		select {
		case h.dueC <- struct{}{}:
		default:
		}
	}
}

// step routes one batch of changes; it returns how many it read.
func (h *Hub) step() int {
	feed := h.tw.Feed()
	batch, err := feed.SinceAppend(h.batch[:0], h.pos, routeBatch)
	h.batch = batch
	defer clear(batch) // the routed changes' features are not kept alive until the next step
	if errors.Is(err, twin.ErrTooOld) {
		// The router itself fell out of the window (it cannot, short of a
		// stalled process): every client re-snapshots.
		h.log.Warn("websocket hub fell behind the feed window; resyncing every client", "pos", h.pos)
		h.mu.Lock()
		h.pos = feed.Last()
		h.mu.Unlock()
		h.resyncAll()
		return 1
	}
	if len(batch) == 0 {
		return 0
	}
	h.mu.RLock()
	for i := range batch {
		h.route(&batch[i])
	}
	// Under the lock: a subscriber reads pos under the write lock to
	// know what was routed before its subscription joined the index.
	h.pos = batch[len(batch)-1].Seq
	h.mu.RUnlock()
	h.handOff()
	h.checkHopeless(false)
	return len(batch)
}

// route delivers one change to the subscriptions whose view holds its old or
// new state. Caller holds h.mu for reading; only the router calls it.
func (h *Hub) route(c *twin.Change) {
	if c.Kind == twin.History || c.Old == c.New {
		return
	}
	var ob, nb *orb.Bound
	if c.Old != nil && c.Old.Geometry != nil {
		b := c.Old.Geometry.Bound()
		ob = &b
	}
	if c.New != nil && c.New.Geometry != nil {
		b := c.New.Geometry.Bound()
		nb = &b
	}
	if ob == nil && nb == nil {
		return
	}
	id := c.ID()
	var up, rm *sharedMsg
	defer func() { h.msgs.release(up); h.msgs.release(rm) }() // the router's references
	h.ix.candidates(id.Layer, ob, nb, func(s *sub) {
		if c.Seq <= s.base {
			return
		}
		if h.stepOldest == 0 && !c.Time.IsZero() {
			h.stepOldest = c.Time.UnixNano()
		}
		var err error
		switch {
		case s.sees(c.New, nb):
			if up == nil {
				if up, err = h.encodeRouted(c.Seq, twin.Upsert, c.New); err != nil {
					h.log.Error("websocket delta", "err", err)
					return
				}
			}
			up.hold()
			s.c.enqueueDelta(&item{id: id, seq: c.Seq, msg: up.b, shared: up})
		case s.sees(c.Old, ob):
			if rm == nil {
				if rm, err = h.encodeRouted(c.Seq, twin.Remove, c.Old); err != nil {
					h.log.Error("websocket delta", "err", err)
					return
				}
			}
			rm.hold()
			s.c.enqueueDelta(&item{id: id, seq: c.Seq, msg: rm.b, shared: rm})
		}
	})
}

// subscribe replaces c's subscription and queues its snapshot or resume.
// Called by c's writer (client.drain), at most Options.SnapshotRate a
// second, which writes what it queued right away.
func (h *Hub) subscribe(c *client, req subscription) {
	s := &sub{c: c, layers: req.layers, bbox: req.bbox, p: c.p}
	if req.since == nil {
		h.attach(c, s)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var snap *snapshot
	var resume []pendingDelta
	h.tw.View(func(seq uint64, r twin.Reader) {
		s.base = seq
		var ok bool
		if resume, ok = h.resume(s, *req.since, seq, r); !ok {
			snap = takeSnapshot(s, seq, r)
		}
	})
	h.setSubLocked(c, s)
	if snap != nil {
		h.m.resyncs.Inc()
		c.replaceQueue(&item{msg: resyncMsg}, &item{snap: snap})
		return
	}
	msgs := make([][]byte, 0, len(resume))
	size := itemOverhead
	for _, d := range resume {
		b, err := encodeDelta(d.seq, d.kind, d.f)
		if err != nil {
			h.log.Error("websocket resume", "err", err)
			continue
		}
		if size += len(b); size > h.opts.QueueBytes {
			// More than a client may have pending: a snapshot is cheaper
			// to hold (it is encoded as it is written).
			h.m.resyncs.Inc()
			h.tw.View(func(seq uint64, r twin.Reader) {
				s.base = seq
				snap = takeSnapshot(s, seq, r)
			})
			c.replaceQueue(&item{msg: resyncMsg}, &item{snap: snap})
			return
		}
		msgs = append(msgs, b)
	}
	c.replaceQueue(&item{msgs: msgs})
}

// setSubLocked makes s c's subscription in the index. Caller holds h.mu.
func (h *Hub) setSubLocked(c *client, s *sub) {
	if c.sub != nil {
		h.ix.remove(c.sub)
	}
	c.sub = s
	h.ix.add(s)
}

// attach gives c the subscription s with a snapshot of its view. The
// snapshot is collected without the hub's lock (a view over a large city
// takes long, and the router and every other subscriber would wait); then,
// under the lock, s joins the index and the changes the router passed
// between the snapshot's seq and that moment are queued after it, so the
// client sees neither a gap nor an overlap.
func (h *Hub) attach(c *client, s *sub) {
	var snap *snapshot
	h.tw.View(func(seq uint64, r twin.Reader) { snap = takeSnapshot(s, seq, r) })
	h.join(c, s, snap)
}

// join is attach's second half, under the lock.
func (h *Hub) join(c *client, s *sub, snap *snapshot) {
	s.base = snap.seq
	h.mu.Lock()
	defer h.mu.Unlock()
	catchUp, ok := h.catchUpLocked(s)
	if !ok {
		// The feed no longer holds the snapshot's seq: take it again,
		// under the lock this time.
		h.tw.View(func(seq uint64, r twin.Reader) {
			s.base = seq
			snap = takeSnapshot(s, seq, r)
		})
	}
	h.setSubLocked(c, s)
	c.replaceQueue(append([]*item{{snap: snap}}, catchUp...)...)
}

// catchUpLocked returns the deltas for s of the changes after s.base that
// the router has already routed (up to h.pos), and sets s.base to h.pos
// when it is further on. ok is false when they left the feed window.
// Caller holds h.mu.
func (h *Hub) catchUpLocked(s *sub) (items []*item, ok bool) {
	if h.pos <= s.base {
		return nil, true
	}
	changes, err := h.tw.Feed().Since(s.base, int(min(h.pos-s.base, 1<<30)))
	if err != nil {
		return nil, false
	}
	for i := range changes {
		if it := deltaFor(s, &changes[i]); it != nil {
			items = append(items, it)
		}
	}
	s.base = h.pos
	return items, true
}

// deltaFor is the delta s should get for ch (nil for none), as route
// decides it for one subscription.
func deltaFor(s *sub, ch *twin.Change) *item {
	if ch.Kind == twin.History || ch.Old == ch.New {
		return nil
	}
	var f *twin.Feature
	kind := twin.Upsert
	switch {
	case s.visible(ch.New):
		f = ch.New
	case s.visible(ch.Old):
		f, kind = ch.Old, twin.Remove
	default:
		return nil
	}
	b, err := encodeDelta(ch.Seq, kind, f)
	if err != nil {
		return nil
	}
	return &item{id: ch.ID(), seq: ch.Seq, msg: b}
}

// resnapshot answers a resync: a fresh snapshot of c's subscription. Called
// by c's writer after it wrote {"op":"resync"}.
func (h *Hub) resnapshot(c *client) {
	h.mu.RLock()
	cur := c.sub
	h.mu.RUnlock()
	if cur == nil {
		c.replaceQueue()
		return
	}
	// A new sub with the same view: the old one keeps routing (its deltas
	// are dropped while the client awaits the snapshot) until swapped.
	h.attach(c, &sub{c: c, layers: cur.layers, bbox: cur.bbox, p: cur.p})
}

// takeSnapshot collects what s sees at seq. Runs inside twin.View.
func takeSnapshot(s *sub, seq uint64, r twin.Reader) *snapshot {
	snap := &snapshot{seq: seq}
	for _, l := range s.layers {
		r.Search(l, s.bbox, func(f *twin.Feature) bool {
			if s.p.Sees(f) {
				snap.features = append(snap.features, f)
			}
			return true
		})
	}
	return snap
}

// pendingDelta is one delta of a resume, before encoding.
type pendingDelta struct {
	seq  uint64
	kind twin.ChangeKind
	f    *twin.Feature
}

// resume computes the deltas after since for s's view, collapsed per object
// to its state at seq (the latest), in seq order: an upsert when the object
// is in view now, a remove (with the last state that was in view) when it
// was in view at some point after since and is not now. ok is false when
// since is out of the feed window or MaxResume. Runs inside twin.View: r
// answers at seq while writers go on, so the feed may already hold changes
// after seq; they are skipped (the client gets them as deltas).
func (h *Hub) resume(s *sub, since, seq uint64, r twin.Reader) (out []pendingDelta, ok bool) {
	if since > seq || seq-since > uint64(h.opts.MaxResume) {
		return nil, false
	}
	changes, err := h.tw.Feed().Since(since, 0)
	if err != nil {
		return nil, false
	}
	type acc struct {
		last uint64
		seen *twin.Feature // latest state that was in view
	}
	objs := map[twin.ID]*acc{}
	for i := range changes {
		ch := &changes[i]
		if ch.Seq > seq || ch.Kind == twin.History {
			continue
		}
		id := ch.ID()
		a := objs[id]
		if a == nil {
			a = &acc{}
			objs[id] = a
		}
		a.last = ch.Seq
		if s.visible(ch.New) {
			a.seen = ch.New
		} else if s.visible(ch.Old) {
			a.seen = ch.Old
		}
	}
	for id, a := range objs {
		if a.seen == nil {
			continue
		}
		if cur, _ := r.Get(id); s.visible(cur) {
			out = append(out, pendingDelta{a.last, twin.Upsert, cur})
		} else {
			out = append(out, pendingDelta{a.last, twin.Remove, a.seen})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, true
}

// resyncAll makes every subscribed client re-snapshot.
func (h *Hub) resyncAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if c.sub == nil {
			continue
		}
		c.mu.Lock()
		if !c.closed {
			c.overflowLocked(false)
		}
		c.mu.Unlock()
	}
}

// checkHopeless closes clients that have been behind for HopelessAfter.
// Unless force, it runs at most every hopelessCheckEvery of Clock time.
func (h *Hub) checkHopeless(force bool) {
	now := h.opts.Clock.Now()
	if !force && now.Sub(h.lastCheck) < hopelessCheckEvery {
		return
	}
	h.lastCheck = now
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if d := c.lagging(now); d >= h.opts.HopelessAfter {
			h.log.Info("closing slow websocket client", "remote", c.remote, "behind", d)
			h.m.dropped.WithLabelValues("too_slow").Inc()
			c.close(CloseTooSlow, "too slow")
		}
	}
}

func (h *Hub) shutdown() {
	h.mu.Lock()
	h.stopped = true
	for c := range h.clients {
		h.m.dropped.WithLabelValues("shutdown").Inc()
		c.close(websocket.CloseGoingAway, "server shutting down")
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// ServeHTTP upgrades GET /ws after the origin check and Options.Authorize,
// then serves the connection until it ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		httpx.Error(w, http.StatusMethodNotAllowed, "method not allowed", nil)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		httpx.Error(w, http.StatusBadRequest, "websocket upgrade required", nil)
		return
	}
	if !h.originAllowed(r) {
		httpx.Error(w, http.StatusForbidden, "origin not allowed", r.Header.Get("Origin"))
		return
	}
	p := auth.Principal{Subject: "anonymous", Role: auth.Planner, Region: auth.CityCode}
	if h.opts.Authorize != nil {
		var err error
		if p, err = h.opts.Authorize(r); err != nil {
			httpx.Error(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		}
	}
	ip, subject := remoteIP(r.RemoteAddr), p.Subject
	if subject == "anonymous" {
		subject = "" // anonymous clients are capped by IP only
	}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		httpx.Error(w, http.StatusServiceUnavailable, "shutting down", nil)
		return
	}
	if reason, detail := h.overCapLocked(ip, subject); reason != "" {
		h.mu.Unlock()
		h.m.rejected.WithLabelValues(reason).Inc()
		w.Header().Set("Retry-After", "10")
		httpx.Error(w, http.StatusTooManyRequests, "too many websockets", detail)
		return
	}
	h.admitted++
	h.perIP[ip]++
	if subject != "" {
		h.perSubject[subject]++
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	defer h.release(ip, subject)

	hj := &hijacker{ResponseWriter: w, sendBuffer: h.opts.SendBuffer}
	conn, err := h.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	c := newClient(h, conn, p, r.RemoteAddr)
	c.bc = hj.bc
	if !h.register(c) {
		c.close(websocket.CloseGoingAway, "server shutting down")
		<-c.closerDone
		return
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop() //nolint:contextcheck // a replay lives as long as the link; stopReplay below ends it
	c.stopReplay()
	c.close(websocket.CloseNormalClosure, "")
	<-writerDone
	<-c.closerDone
	h.unregister(c)
}

// overCapLocked checks the websocket caps of Options for one more client;
// it returns the metric reason and a detail for the client when over one.
// Caller holds h.mu.
func (h *Hub) overCapLocked(ip, subject string) (reason, detail string) {
	switch o := h.opts; {
	case o.MaxClients > 0 && h.admitted >= o.MaxClients:
		return "total", fmt.Sprintf("the server holds its maximum of %d websockets", o.MaxClients)
	case o.MaxPerIP > 0 && h.perIP[ip] >= o.MaxPerIP:
		return "ip", fmt.Sprintf("at most %d websockets per address", o.MaxPerIP)
	case o.MaxPerPrincipal > 0 && subject != "" && h.perSubject[subject] >= o.MaxPerPrincipal:
		return "principal", fmt.Sprintf("at most %d websockets per token subject", o.MaxPerPrincipal)
	}
	return "", ""
}

// release undoes the admission counts of one websocket.
func (h *Hub) release(ip, subject string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitted--
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
	if subject != "" {
		if h.perSubject[subject]--; h.perSubject[subject] <= 0 {
			delete(h.perSubject, subject)
		}
	}
}

// remoteIP is the address part of a RemoteAddr (the whole string when it
// has no port).
func remoteIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// queuedBytes sums what every client has pending (the twin_ws_queued_bytes
// gauge, computed when scraped).
func (h *Hub) queuedBytes() float64 {
	h.allMu.Lock()
	defer h.allMu.Unlock()
	n := 0
	for c := range h.all {
		c.mu.Lock()
		n += c.q.bytes
		c.mu.Unlock()
	}
	return float64(n)
}

func (h *Hub) register(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.clients[c] = struct{}{}
	h.allMu.Lock()
	h.all[c] = struct{}{}
	h.allMu.Unlock()
	h.m.clients.Inc()
	return true
}

func (h *Hub) unregister(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; !ok {
		return
	}
	delete(h.clients, c)
	h.allMu.Lock()
	delete(h.all, c)
	h.allMu.Unlock()
	if c.sub != nil {
		h.ix.remove(c.sub)
		c.sub = nil
	}
	h.m.clients.Dec()
}

// originAllowed applies Options.AllowedOrigins (see there).
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, a := range h.opts.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	if len(h.opts.AllowedOrigins) > 0 {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
