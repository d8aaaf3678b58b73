package twin

import (
	"slices"
	"sync/atomic"
	"time"
)

// Cursor is one consumer of the feed: a wake-up signal and, for a named
// consumer (Follow), its position, which the feed uses for the consumer's
// lag metrics and, for a required consumer, to keep the changes it has not
// read. The consumer reads with Feed.Since from its own position and
// reports progress with Done.
type Cursor struct {
	c        chan struct{}
	feed     *Feed
	name     string // "" for Subscribe
	required bool
	urgent   bool          // signalled after the others (see Feed.wake); guarded by feed.mu
	pos      uint64        // last seq the consumer is done with; guarded by feed.mu
	cuts     atomic.Uint64 // times a required consumer was cut loose (hard cap)
}

// Mode says whether the feed must keep a consumer's unread changes.
type Mode uint8

const (
	// BestEffort consumers (websocket hub, tile cache) resynchronise from a
	// snapshot when they fall out of the window (ErrTooOld).
	BestEffort Mode = iota
	// Required consumers (rules engine, store writer) see every change:
	// the feed keeps what they have not read and slows telemetry ingest
	// when one of them is a window behind.
	Required
)

// C is signalled after appends; several appends may give one signal.
func (c *Cursor) C() <-chan struct{} { return c.c }

// signal wakes the consumer unless a wake-up is already pending.
func (c *Cursor) signal() {
	select {
	case c.c <- struct{}{}:
	default:
	}
}

// Urgent marks the consumer as one a person waits on (the websocket
// router): on each new change it is signalled after every other consumer,
// which on a busy core makes it the first to run (see Feed.wake). Only
// the order of the signals changes, never what a consumer reads.
func (c *Cursor) Urgent() {
	c.feed.mu.Lock()
	c.urgent = true
	c.feed.mu.Unlock()
}

// Close unregisters the cursor; a required consumer's unread changes are
// no longer kept and producers waiting for it go on.
func (c *Cursor) Close() {
	f := c.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, c)
	if c.required {
		f.required = slices.DeleteFunc(f.required, func(x *Cursor) bool { return x == c })
		f.updateRoomOK()
	}
}

// Done tells the feed the consumer has processed every change up to seq
// (it may jump ahead after a resync). For a required consumer the feed may
// then drop those changes, and producers waiting for it may go on.
func (c *Cursor) Done(seq uint64) {
	f := c.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	c.pos = seq
	if c.required {
		f.updateRoomOK()
		f.trim()
	}
}

// Subscribe registers an anonymous best-effort wake-up cursor.
func (f *Feed) Subscribe() *Cursor {
	c := &Cursor{c: make(chan struct{}, 1), feed: f}
	f.mu.Lock()
	f.subs[c] = struct{}{}
	f.mu.Unlock()
	return c
}

// Follow registers a named consumer positioned after seq `after` (its
// position so far, usually Last() when it was created). A required
// consumer whose position has already left the window is not held for: it
// gets ErrTooOld at its next read, as a best-effort one would.
func (f *Feed) Follow(name string, mode Mode, after uint64) *Cursor {
	c := &Cursor{c: make(chan struct{}, 1), feed: f, name: name, required: mode == Required, pos: after}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[c] = struct{}{}
	if c.required {
		f.required = append(f.required, c)
		f.updateRoomOK()
	}
	return c
}

// holds reports whether c keeps the change seq in the ring: it has not
// processed it and has lost nothing before it. Caller holds f.mu.
func (c *Cursor) holds(seq uint64) bool { return c.pos+1 == seq }

// makeRoom runs when the ring is full before an append: it grows the ring
// up to the capacity; at the capacity it lets the oldest change fall off
// unless a required consumer still needs it, in which case the ring grows
// to twice the lag producers wait at; at that hard cap the consumers
// holding the oldest change are cut loose (counted) and it falls off.
// Caller holds f.mu.
func (f *Feed) makeRoom() {
	if len(f.buf) < f.cap {
		f.grow(f.cap)
		return
	}
	var holding bool
	for _, c := range f.required {
		holding = holding || c.holds(f.start)
	}
	if !holding {
		return
	}
	if len(f.buf) < 2*f.lag {
		f.grow(2 * f.lag)
		return
	}
	for _, c := range f.required {
		if c.holds(f.start) {
			c.cuts.Add(1)
		}
	}
}

// behind reports whether required consumer c is lagWindows windows behind
// and has not been cut loose. Caller holds f.mu.
func (f *Feed) behind(c *Cursor) bool {
	return c.pos < f.next-1 && c.pos+1 >= f.start && f.next-1-c.pos >= uint64(f.lag)
}

// trimStep bounds how many changes one append lets fall off in trim, so
// the first append after a long lag ends does not clear half a million
// slots under the lock; the ring is back to the window a few hundred
// appends later.
const trimStep = 1024

// trim runs after an append, and after a required consumer moves on, in a
// ring grown past the window for a lagging required consumer: it lets the
// changes older than the window fall off once no required consumer needs
// them, clearing their slots so the features they point to can be
// collected, and gives the ring back its window's size once every required
// consumer is within a window of the newest change. Caller holds f.mu.
func (f *Feed) trim() {
	if len(f.buf) <= f.cap {
		return
	}
	slowest := f.next // the oldest seq a required consumer needs
	for _, c := range f.required {
		if need := c.pos + 1; need >= f.start && need < slowest {
			slowest = need
		}
	}
	if f.next-f.start > uint64(f.cap) {
		keep := f.next - uint64(f.cap) // the oldest seq the window keeps
		for to := min(keep, slowest, f.start+trimStep); f.start < to; f.start++ {
			f.buf[f.start%uint64(len(f.buf))] = Change{}
		}
	}
	if f.next-f.start <= uint64(f.cap) && f.next-slowest < uint64(f.cap) {
		f.resize(f.cap)
	}
}

// updateRoomOK refreshes the producers' fast path and wakes waiting
// producers when there is room again. Caller holds f.mu for writing.
func (f *Feed) updateRoomOK() {
	ok := true
	for _, c := range f.required {
		if f.behind(c) {
			ok = false
			break
		}
	}
	f.roomOK.Store(ok)
	if ok && f.roomWaiters > 0 {
		f.roomCond.Broadcast()
	}
}

// roomMaxWait bounds one producer's wait for a required consumer. It is a
// safety valve against a consumer that hangs (or waits, through some chain,
// on the very producer that waits for it): after it the producer appends
// anyway, the ring grows towards its hard cap, and there the hung consumer
// is cut loose and counted, instead of ingest stopping for good. A
// consumer that merely lags is never cut: it moves within this time.
const roomMaxWait = 30 * time.Second

// waitRoom blocks a telemetry producer, before it takes the twin's lock,
// while a required consumer is a window behind (at most roomMaxWait).
func (f *Feed) waitRoom() {
	if f.roomOK.Load() {
		return
	}
	t0 := time.Now()
	f.mu.Lock()
	if f.roomOK.Load() {
		f.mu.Unlock()
		return
	}
	expired := false
	timer := time.AfterFunc(roomMaxWait, func() {
		f.mu.Lock()
		expired = true
		f.roomCond.Broadcast()
		f.mu.Unlock()
	})
	f.roomWaiters++
	for !f.roomOK.Load() && !expired {
		f.roomCond.Wait()
	}
	f.roomWaiters--
	f.mu.Unlock()
	timer.Stop()
	f.roomWaits.Add(1)
	f.roomWaitNs.Add(int64(time.Since(t0)))
}

// ConsumerStat is one named consumer's state, for metrics.
type ConsumerStat struct {
	Name     string
	Required bool
	// Lag is how many changes the consumer has not processed.
	Lag uint64
	// Oldest is the time of the oldest change it has not processed (zero
	// when it is caught up).
	Oldest time.Time
	// Cuts counts times a required consumer was cut loose at the hard cap.
	Cuts uint64
}

// Consumers returns the named consumers' positions.
func (f *Feed) Consumers() []ConsumerStat {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []ConsumerStat
	for c := range f.subs {
		if c.name == "" {
			continue
		}
		st := ConsumerStat{Name: c.name, Required: c.required, Cuts: c.cuts.Load()}
		if last := f.visible(); c.pos < last {
			st.Lag = last - c.pos
			if oldest := max(c.pos+1, f.start); oldest <= last {
				st.Oldest = f.buf[oldest%uint64(len(f.buf))].Time
			}
		}
		out = append(out, st)
	}
	return out
}

// FeedStats are the feed's own counters, for metrics.
type FeedStats struct {
	Last      uint64        // newest seq
	Window    int           // changes held
	Capacity  int           // window while no required consumer lags
	SeqWaits  uint64        // producers that waited for a seq reservation
	RoomWaits uint64        // telemetry producers that waited for a required consumer
	RoomWait  time.Duration // total time they waited
}

// Stats returns the feed's counters.
func (f *Feed) Stats() FeedStats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return FeedStats{Last: f.visible(), Window: int(f.next - f.start), Capacity: f.cap,
		SeqWaits: f.seqWaits.Load(), RoomWaits: f.roomWaits.Load(), RoomWait: time.Duration(f.roomWaitNs.Load())}
}
