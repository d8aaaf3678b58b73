package wshub

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
)

// CloseTooSlow is the close code sent to a client that stayed behind for
// Options.HopelessAfter. It is in the 4000-4999 range private to this
// application; 4008 mirrors HTTP 408 and RFC 6455's 1008 (policy violation).
const CloseTooSlow = 4008

// sub is a client's one subscription: layers, bbox and scope. Its fields are
// written under Hub.mu's write lock and read under its read lock.
type sub struct {
	c      *client
	layers []twin.Layer
	bbox   orb.Bound
	p      auth.Principal
	// base is the feed seq of the snapshot (or resume point): deltas with
	// Seq <= base are already reflected in what the client got.
	base   uint64
	global bool   // in the layers' global buckets
	mark   uint64 // index.candidates dedup; router goroutine only
}

// visible reports whether f is in the subscription's view and scope.
func (s *sub) visible(f *twin.Feature) bool {
	if f == nil || f.Geometry == nil {
		return false
	}
	b := f.Geometry.Bound()
	return s.sees(f, &b)
}

// sees is visible with f's bound precomputed (nil when f has no geometry).
// Cheapest test first: the bbox rejects most candidates.
func (s *sub) sees(f *twin.Feature, b *orb.Bound) bool {
	if f == nil || b == nil || !intersects(s.bbox, *b) {
		return false
	}
	found := false
	for _, l := range s.layers {
		if l == f.ID.Layer {
			found = true
			break
		}
	}
	return found && s.p.Sees(f)
}

// intersects reports whether two bounds meet, edges included (as the
// twin's R-tree search does, so snapshots and deltas agree).
func intersects(a, b orb.Bound) bool {
	return a.Min[0] <= b.Max[0] && a.Max[0] >= b.Min[0] && a.Min[1] <= b.Max[1] && a.Max[1] >= b.Min[1]
}

// client is one websocket connection. The router only ever appends to its
// queue under mu; the hub's flusher (flushTurn) or, for what it cannot
// write without waiting, the client's own writer goroutine (writeLoop)
// drains it to the socket, so a slow socket never blocks the router.
type client struct {
	h      *Hub
	conn   *websocket.Conn // nil for routing benchmarks
	bc     *batchConn      // conn's socket; nil for routing benchmarks
	p      auth.Principal
	remote string
	sub    *sub // guarded by Hub.mu

	mu     sync.Mutex
	q      queue
	resync bool // queue overflowed: deltas are ignored until re-snapshot
	// pendingSub is the latest subscribe not yet served (older ones are
	// dropped: coalescing); needSnap asks for a fresh snapshot of the
	// current subscription (after a resync was written). The writer serves
	// both, at most Options.SnapshotRate a second (snaps).
	pendingSub *subscription
	needSnap   bool
	snaps      bucket
	// laggingSince is when the queue first overflowed since the writer last
	// emptied it (zero when caught up), on Options.Clock.
	laggingSince time.Time
	closed       bool
	// listed: the client waits in the flusher's next round (Hub.flushLoop)
	// since deltas were queued; cleared when the flusher takes it up.
	listed bool

	// wmu is held by whoever writes the queue to the socket: the client's
	// writer for a whole drain, or the flusher (TryLock) for its turn, so
	// the two never interleave frames.
	wmu sync.Mutex

	playState // the replay, when one runs (replay.go)

	// Writer goroutine only: the messages and bytes written since the
	// metrics were last updated, the write deadline of the deltas (see
	// refreshDeadline) and the run of delta payloads being framed.
	sentN, sentSize int
	deadline        time.Time
	frames          [][]byte
	taken           []item

	wake       chan struct{} // capacity 1: coalesced wake-ups for the writer
	done       chan struct{} // closed by close
	closeOnce  sync.Once
	closerDone chan struct{} // closed when the close frame is sent and the socket closed
}

func newClient(h *Hub, conn *websocket.Conn, p auth.Principal, remote string) *client {
	return &client{h: h, conn: conn, p: p, remote: remote,
		snaps: newBucket(h.opts.SnapshotRate, h.opts.SnapshotBurst),
		wake:  make(chan struct{}, 1), done: make(chan struct{}), closerDone: make(chan struct{})}
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueueDelta queues a delta without ever blocking: a delta for an object
// already pending replaces it (coalescing); when the pending bytes go over
// Options.QueueBytes the queue is cleared and replaced by a resync, and the
// client counts as lagging. The client's writer is not woken: the client
// goes on the router's list for the flusher's next round (Hub.routed).
// Called by the router under Hub.mu (read).
func (c *client) enqueueDelta(it *item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.resync {
		return
	}
	n := c.q.push(it)
	if c.q.bytes > c.h.opts.QueueBytes && c.q.n > 1 {
		// Over budget: drop the superseded deltas first.
		n += c.q.coalesce()
		if c.q.bytes > c.h.opts.QueueBytes && c.q.n > 1 {
			c.overflowLocked(true)
		}
	}
	if n > 0 {
		c.h.m.coalesced.Add(float64(n))
	}
	if !c.listed {
		c.listed = true
		c.h.routed = append(c.h.routed, c)
	}
}

// overflowLocked drops the pending messages for a resync; lagging marks the
// client as behind (false when the hub itself fell out of the feed window).
func (c *client) overflowLocked(lagging bool) {
	c.q.reset()
	c.resync = true
	if lagging && c.laggingSince.IsZero() {
		c.laggingSince = c.h.opts.Clock.Now()
	}
	c.q.push(&item{resync: true})
	c.h.m.resyncs.Inc()
	c.signal()
}

// enqueueControl queues an error or other control message; it is dropped
// when it would go over Options.QueueBytes (the client is not reading).
func (c *client) enqueueControl(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.q.n > 0 && c.q.bytes+itemOverhead+len(msg) > c.h.opts.QueueBytes {
		return
	}
	c.q.push(&item{msg: msg})
	c.signal()
}

// requestSubscribe records req as the subscription to serve next,
// replacing one not yet served, and wakes the writer.
func (c *client) requestSubscribe(req subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pendingSub != nil {
		c.h.m.subscribesCoalesced.Inc()
	}
	c.pendingSub = &req
	c.signal()
}

// nextSubscribe takes what the writer should serve now: a pending
// subscribe, or a re-snapshot of the current subscription. It returns
// nothing when neither is waiting, or the wait for the next snapshot token.
func (c *client) nextSubscribe() (req *subscription, resnap bool, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.pendingSub == nil && !c.needSnap {
		return nil, false, 0
	}
	if ok, wait := c.snaps.take(c.h.opts.Clock.Now()); !ok {
		return nil, false, max(wait, 5*time.Millisecond)
	}
	req, resnap = c.pendingSub, c.pendingSub == nil
	c.pendingSub, c.needSnap = nil, false
	return req, resnap, 0
}

// replaceQueue drops what is pending and queues items (a new subscription's
// snapshot or resume). Called under Hub.mu (write).
func (c *client) replaceQueue(items ...*item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.q.reset()
	c.resync = false
	if len(items) > 1 {
		// A catch-up: only the latest delta per object is worth sending.
		c.q.coalesce()
	}
	for _, it := range items {
		c.q.push(it)
	}
	c.signal()
}

// lagging reports how long the client has been behind (0 when not).
func (c *client) lagging(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.laggingSince.IsZero() {
		return 0
	}
	return now.Sub(c.laggingSince)
}

// close ends the connection once: the close frame (code, reason) is sent
// best effort within a second, then the socket is closed, which ends the
// reader and writer. Safe to call from any goroutine, several times.
func (c *client) close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.laggingSince = time.Time{} // closed: no longer counts as lagging
		c.q.reset()
		c.mu.Unlock()
		close(c.done)
		if c.conn == nil {
			close(c.closerDone)
			return
		}
		if c.bc != nil && code != 0 {
			c.bc.closing.Store(true)
		}
		go func() {
			defer close(c.closerDone)
			if code != 0 {
				_ = c.conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
			}
			_ = c.conn.Close()
		}()
	})
}

// readLoop reads subscribe requests until the link fails. A link silent for
// two ping intervals (no message, no pong) is considered dead.
func (c *client) readLoop() {
	idle := 2 * c.h.opts.PingInterval
	c.conn.SetReadLimit(c.h.opts.MaxMessageBytes)
	_ = c.conn.SetReadDeadline(time.Now().Add(idle))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(idle))
	})
	// gorilla's default reply to the peer's close frame, after telling
	// the batch that no data frame may follow it.
	c.conn.SetCloseHandler(func(code int, _ string) error {
		if c.bc != nil {
			c.bc.closing.Store(true)
		}
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		return nil
	})
	msgs := newBucket(c.h.opts.MessageRate, c.h.opts.MessageBurst)
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if ok, _ := msgs.take(c.h.opts.Clock.Now()); !ok {
			c.h.log.Info("closing websocket client sending too many messages", "remote", c.remote, "subject", c.p.Subject)
			c.h.m.dropped.WithLabelValues("too_many_messages").Inc()
			c.close(websocket.ClosePolicyViolation, "too many messages")
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(idle))
		if typ != websocket.TextMessage {
			c.enqueueControl(encodeError("want JSON text messages"))
			continue
		}
		if rreq, ok, err := parseReplay(data); ok {
			if err != nil {
				c.enqueueControl(encodeError(err.Error()))
			} else {
				c.replayOp(rreq)
			}
			continue
		}
		req, err := parseRequest(data)
		if err == nil {
			c.stopReplay() // back to live
		}
		if err != nil {
			c.enqueueControl(encodeError(err.Error()))
			continue
		}
		c.requestSubscribe(req)
	}
}

// writeLoop serves subscribes, snapshots, resyncs and control messages,
// drains the queue to the socket when the flusher hands the client over
// (a socket that was full, a connection it cannot write to without
// blocking) and pings the link. A write that makes no progress for
// HopelessAfter (wall clock) ends the link. Deltas do not wake it: the
// flusher writes them, every client's in turn, once per
// Options.FlushInterval.
func (c *client) writeLoop() {
	ping := time.NewTicker(c.h.opts.PingInterval)
	defer ping.Stop()
	var retry <-chan time.Time // the next snapshot token
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.opts.HopelessAfter)); err != nil {
				c.fail(err)
				return
			}
			continue
		case <-c.wake:
		case <-retry:
		}
		_, wait, err := c.drain()
		if err != nil {
			c.fail(err)
			return
		}
		retry = nil
		if wait > 0 {
			retry = time.After(wait)
		}
	}
}

// drain serves a waiting subscribe (when a snapshot token is there) and
// writes everything queued, as one batch of frames on the socket. It
// returns how long until the next token when a subscribe must wait; the
// queue (deltas of the view the client still shows) is written meanwhile.
// It takes the queue a socket batch at a time under one lock and frames
// runs of deltas under one round of the socket's locks: per delta it
// costs a copy into the batch, no lock.
func (c *client) drain() (wrote bool, wait time.Duration, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.bc != nil {
		c.bc.begin()
	}
	defer c.countSent()
	c.refreshDeadline()
	if c.bc != nil {
		c.bc.extendDeadline(c.deadline)
	}
	for {
		var req *subscription
		var resnap bool
		if req, resnap, wait = c.nextSubscribe(); req != nil {
			c.h.subscribe(c, *req)
		} else if resnap {
			c.h.resnapshot(c)
		}
		c.mu.Lock()
		c.taken = c.q.take(c.taken[:0], batchMax)
		if len(c.taken) == 0 && !c.resync {
			c.laggingSince = time.Time{}
		}
		c.mu.Unlock()
		if len(c.taken) == 0 {
			break
		}
		wrote = true
		err := c.writeItems(c.taken)
		if err == nil { // written (copied into the socket's batch); on an error some may be left in c.frames
			for k := range c.taken {
				c.h.msgs.release(c.taken[k].shared)
			}
		}
		clear(c.taken) // no message kept alive until the next drain
		if err != nil {
			return wrote, 0, err
		}
	}
	if c.bc != nil {
		if err := c.bc.flush(); err != nil {
			return wrote, 0, fmt.Errorf("write: %w", err)
		}
	}
	return wrote, wait, nil
}

// deadlineSlack is the fraction of HopelessAfter by which the writes'
// deadline may lag behind now+HopelessAfter before it is moved: setting a
// socket's deadline costs a timer update in the poller, which per drain
// (100 a second per busy client) was a sixth of what the write syscalls
// cost.
const deadlineSlack = 8

// refreshDeadline moves the deadline of the writes to come to
// HopelessAfter from now, once it is closer than HopelessAfter less an
// eighth: a write is cut after 7/8 to 8/8 of HopelessAfter without
// progress.
func (c *client) refreshDeadline() {
	hop := c.h.opts.HopelessAfter
	if now := time.Now(); c.deadline.Sub(now) < hop-hop/deadlineSlack {
		c.deadline = now.Add(hop)
	}
}

// writeItems writes the taken items in order. Runs of plain messages are
// framed into the socket's batch together.
func (c *client) writeItems(items []item) error {
	for k := range items {
		it := &items[k]
		if c.bc != nil && it.plain() {
			c.frames = append(c.frames, it.msg)
			c.sentN++
			c.sentSize += len(it.msg)
		} else {
			if err := c.writeFrames(); err != nil {
				return err
			}
			if err := c.write(it); err != nil {
				return err
			}
		}
		if (k+1)%256 == 0 { // a long queue, maybe on a slow link
			if err := c.writeFrames(); err != nil {
				return err
			}
			c.refreshDeadline()
		}
	}
	return c.writeFrames()
}

// writeFrames frames the gathered run of payloads into the socket's batch.
func (c *client) writeFrames() error {
	if len(c.frames) == 0 {
		return nil
	}
	err := c.bc.writeFrames(c.frames, c.deadline)
	clear(c.frames)
	c.frames = c.frames[:0]
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// countSent adds what the writer wrote since the last call to the metrics:
// once per drain, not per message (200 writers on the same counters).
func (c *client) countSent() {
	if c.sentN > 0 {
		c.h.m.sent.Add(float64(c.sentN))
		c.h.m.sentBytes.Add(float64(c.sentSize))
		c.sentN, c.sentSize = 0, 0
	}
}

// flushScratch is the flusher's reused memory for a client's turn.
type flushScratch struct {
	taken  []item
	frames [][]byte
}

// flushTurn is the flusher's turn at c (Hub.flushLoop): it writes the
// plain messages at the head of c's queue to the socket without blocking,
// a socket batch at a time, and returns how many messages and bytes it
// wrote. It hands c over to its writer (signal) for anything it cannot
// finish: a snapshot, resume or resync next in the queue, a socket that
// took less than it was given, a write error, a connection it cannot
// write to by descriptor, or a writer busy with c.
func (c *client) flushTurn(sc *flushScratch) (n, size int) {
	c.mu.Lock()
	c.listed = false
	c.mu.Unlock()
	if c.bc == nil || c.bc.raw == nil || !c.wmu.TryLock() {
		c.signal()
		return 0, 0
	}
	defer c.wmu.Unlock()
	if !c.bc.mu.TryLock() { // a control frame is being written, maybe blocked
		c.signal()
		return 0, 0
	}
	defer c.bc.mu.Unlock()
	if len(c.bc.buf) > 0 { // left by a write the socket did not take whole
		c.signal()
		return 0, 0
	}
	for {
		c.mu.Lock()
		sc.taken = c.q.takePlain(sc.taken[:0], batchMax)
		if len(sc.taken) == 0 {
			more := !c.q.empty()
			if !more && !c.resync {
				c.laggingSince = time.Time{}
			}
			c.mu.Unlock()
			if more {
				c.signal()
			}
			return n, size
		}
		c.mu.Unlock()
		for k := range sc.taken {
			sc.frames = append(sc.frames, sc.taken[k].msg)
			n++
			size += len(sc.taken[k].msg)
		}
		ok := c.bc.tryWriteFrames(sc.frames)
		clear(sc.frames)
		sc.frames = sc.frames[:0]
		// Copied into the socket's batch (or, closing, dropped): this
		// client is done with them.
		for k := range sc.taken {
			c.h.msgs.release(sc.taken[k].shared)
		}
		clear(sc.taken)
		if !ok {
			c.signal()
			return n, size
		}
	}
}

func (c *client) fail(err error) {
	select {
	case <-c.done: // closed on purpose; the write error is the consequence
	default:
		c.h.log.Debug("websocket write failed", "remote", c.remote, "err", err)
		c.h.m.dropped.WithLabelValues("write_error").Inc()
	}
	c.close(0, "")
}

func (c *client) write(it *item) error {
	switch {
	case it.resync:
		if err := c.writeMsg(resyncMsg); err != nil {
			return err
		}
		c.mu.Lock()
		c.needSnap = true
		c.mu.Unlock()
		return nil
	case it.snap != nil:
		return c.writeSnapshot(it.snap)
	case it.msgs != nil:
		for _, m := range it.msgs {
			if err := c.writeMsg(m); err != nil {
				return err
			}
		}
		return nil
	default:
		return c.writeMsg(it.msg)
	}
}

// writeMsg writes one text message: straight into the socket's batch
// (batchConn.writeFrame) under the drain's deadline, or through gorilla
// when there is no batchConn.
func (c *client) writeMsg(b []byte) error {
	if c.bc != nil {
		if err := c.bc.writeFrame(b, c.deadline); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	} else if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	c.sentN++
	c.sentSize += len(b)
	return nil
}

// writeSnapshot streams the snapshot, encoding one feature at a time.
func (c *client) writeSnapshot(s *snapshot) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.h.opts.HopelessAfter))
	w, err := c.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	n := 0
	put := func(b []byte) {
		if err == nil {
			var k int
			k, err = w.Write(b)
			n += k
		}
	}
	progress := time.Now()
	if s.at != "" {
		put(fmt.Appendf(nil, `{"op":"snapshot","seq":%d,"replay":true,"at":%q,"features":[`, s.seq, s.at))
	} else {
		put(fmt.Appendf(nil, `{"op":"snapshot","seq":%d,"features":[`, s.seq))
	}
	for i, f := range s.features {
		if err != nil {
			break // the link failed: encoding the rest would only burn CPU
		}
		if i > 0 {
			put([]byte{','})
		}
		if i%64 == 0 {
			select {
			case <-c.done:
				return errors.New("snapshot: client closed")
			default:
			}
			// The deadline is on progress, not on the whole snapshot, which
			// may take longer than HopelessAfter on a slow but reading link.
			if now := time.Now(); now.Sub(progress) > time.Second {
				progress = now
				_ = c.conn.SetWriteDeadline(now.Add(c.h.opts.HopelessAfter))
			}
		}
		b, merr := f.MarshalJSON()
		if merr != nil {
			return fmt.Errorf("snapshot %s: %w", f.ID, merr)
		}
		put(b)
	}
	put([]byte("]}"))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	c.sentN++
	c.sentSize += n
	return nil
}
