package twin

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrTooOld is returned by Feed.Since when the asked-for sequence number has
// left the feed's window; the consumer must resynchronise from a snapshot.
var ErrTooOld = errors.New("feed: sequence number older than the window")

// ErrSeqExhausted is returned by a twin mutation when the feed has used up
// its reserved sequence numbers and no further reservation will come (the
// store writer stopped): handing out a number beyond the reservation could
// reuse it after a crash.
var ErrSeqExhausted = errors.New("feed: reserved sequence numbers used up and no reservation pending (store writer stopped)")

// Feed is a bounded window of the most recent changes, in sequence order.
// Appending never blocks: old changes fall off the window, and a
// best-effort consumer (websocket hub, tile cache) that falls behind gets
// ErrTooOld and resynchronises instead of stalling ingest.
//
// Required consumers (the rules engine, the store writer; see Follow) must
// see every change: the feed keeps the changes they have not read yet.
// When one of them is lagWindows windows behind, telemetry producers wait
// (ApplySample, outside the twin's lock) until it catches up: back-pressure
// on ingest rather than lost crossings, alarms or history. Other mutations
// (objects, alerts, incidents) never wait, since a required consumer may
// itself make them (rules write alerts); for them the ring grows up to
// twice that lag, and beyond that the slowest required consumer is cut
// loose (it gets ErrTooOld as before, and the cut is counted) so memory
// stays bounded even if a consumer hangs. Once the required consumers have
// caught up, the ring lets go of what is older than the window again
// (trim): the window is what a resuming consumer can get back, the lag is
// what a busy store or rules engine may fall behind, and only the first
// stays in memory (every change keeps its object's old and new state, which
// the garbage collector marks on every cycle: issue 16 goal 6).
//
// Feed is safe for concurrent use.
type Feed struct {
	mu    sync.RWMutex
	buf   []Change // ring; grows by doubling up to cap, up to 2*lag while a required consumer lags, back to cap after (trim)
	cap   int      // the window: changes kept at most while no required consumer lags
	lag   int      // how far a required consumer may fall behind before producers wait (lagWindows*cap)
	next  uint64   // sequence number the next change gets; first change is 1
	start uint64   // lowest sequence number still in buf
	subs  map[*Cursor]struct{}

	// Required consumers and back-pressure (consumer.go).
	required    []*Cursor     // the required consumers: a slice, walked at every append (a map's iteration was ~4 % of the server at 150k updates/s)
	roomCond    *sync.Cond    // on &mu; broadcast when a required consumer moves on while producers wait
	roomWaiters int           // producers waiting in waitRoom
	roomOK      atomic.Bool   // fast path: no required consumer is a window behind
	roomWaits   atomic.Uint64 // producers that had to wait for a required consumer
	roomWaitNs  atomic.Int64  // total time producers waited, ns

	// Sequence reservation (see SetLimit): numbers up to limit may be handed
	// out; 0 means no limit (a twin without a store).
	limit    uint64
	need     chan struct{} // signalled when fewer than lowWater numbers remain before producers wait
	lowWater uint64
	noMore   bool          // EndReservations was called
	seqCond  *sync.Cond    // on &mu; broadcast when limit grows or noMore is set
	seqOK    atomic.Bool   // fast path: a producer need not wait for a reservation
	seqWaits atomic.Uint64 // producers that had to wait for a reservation

	// Replication (replica.go): in a gated feed, changes made by this
	// twin's own mutations are tentative until Commit (the change log has
	// them); consumers (Last, Since, cursors) see only committed changes.
	gated        bool
	committed    uint64
	maxTentative uint64        // producers wait while this many changes are tentative
	open         atomic.Bool   // local mutations allowed (this server leads); changed under the twin's lock
	appended     chan struct{} // signalled on every tentative append (the change publisher)

	signalled func(*Cursor) // tests: sees each wake-up in order; nil otherwise
}

// SeqSlack is how far below the limit producers start waiting: a producer
// passes the gate (waitSeq) before it takes the twin's lock and appends, so
// as many producers as run at once may append after the last one passed;
// this many may do so without crossing the limit. A reservation block must
// be well above it.
const SeqSlack = 4096

// feedInitial is the ring's first size. The ring doubles as changes arrive
// until it reaches the capacity, so an idle twin does not pay for the whole
// window up front (1<<20 changes of 64 B are 64 MB; a loaded demo city at
// scale 1 is ~190 MB in all).
const feedInitial = 1 << 12

// lagWindows is how many windows a required consumer may fall behind
// before telemetry producers wait for it. A burst of ingest outruns the
// store writer's and the replay recorder's flushes by far more than a
// websocket ever needs to resume: with `twin serve`'s window of 65,536
// changes, producers wait at 262,144 and the ring stops at 524,288, as
// they did when the window itself was 262,144.
const lagWindows = 4

// NewFeed makes a feed that keeps the last capacity changes.
func NewFeed(capacity int) *Feed {
	if capacity < 16 {
		capacity = 16
	}
	f := &Feed{buf: make([]Change, min(capacity, feedInitial)), cap: capacity, lag: lagWindows * capacity, next: 1, start: 1, subs: map[*Cursor]struct{}{},
		need: make(chan struct{}, 1), appended: make(chan struct{}, 1)}
	f.seqCond = sync.NewCond(&f.mu)
	f.roomCond = sync.NewCond(&f.mu)
	f.seqOK.Store(true)
	f.roomOK.Store(true)
	return f
}

// grow doubles the ring (up to limit), keeping every change in it at its
// seq's slot. Caller holds f.mu.
func (f *Feed) grow(limit int) { f.resize(min(2*len(f.buf), limit)) }

// resize moves the ring to n slots (at least the changes it holds),
// keeping every change at its seq's slot. Caller holds f.mu.
func (f *Feed) resize(n int) {
	nb := make([]Change, n)
	for s := f.start; s < f.next; s++ {
		nb[s%uint64(len(nb))] = f.buf[s%uint64(len(f.buf))]
	}
	f.buf = nb
}

// SetLast makes the next appended change get seq+1; used once at start when
// the sequence is restored from the store, before any append.
func (f *Feed) SetLast(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = seq + 1
	f.start = seq + 1
	f.committed = seq
	f.updateSeqOK()
}

// Sequence numbers are never reused, even after a crash: a number sent to a
// websocket client must never name another change, or a client resuming
// with `since` gets wrong data without a resync. The store writer persists
// only the sequence of what it flushed, which after kill -9 is behind what
// clients saw. So, like a database sequence cache (or a Snowflake-style
// block of ids), numbers are handed out only below a persisted reservation
// (a high-water mark): at start the feed continues above the stored mark,
// which is above anything the previous process could have handed out, and
// a new, higher mark is persisted (twin/writer) before the current one is
// used up. Producers wait (waitSeq) when it is; they never wait while the
// store keeps up, since the next block is reserved when half of the current
// one is left.

// SetLimit allows sequence numbers up to hwm (which must have been
// persisted first) and sets the low-water mark at which NeedLimit is
// signalled; it wakes producers waiting for numbers. A lower hwm than the
// current limit is ignored.
func (f *Feed) SetLimit(hwm, lowWater uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hwm > f.limit {
		f.limit = hwm
	}
	f.lowWater = lowWater
	f.updateSeqOK()
	f.seqCond.Broadcast()
}

// Limit returns the highest sequence number that may be handed out (0 when
// there is no limit).
func (f *Feed) Limit() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.limit
}

// NeedLimit is signalled (coalesced) when fewer than the low-water mark of
// reserved numbers remain: the reserver should persist a higher mark and
// call SetLimit.
func (f *Feed) NeedLimit() <-chan struct{} { return f.need }

// EndReservations tells the feed that no reservation will come any more
// (the reserver stopped): producers waiting for numbers, and later ones that
// would need them, get ErrSeqExhausted instead of waiting for ever.
func (f *Feed) EndReservations() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noMore = true
	f.seqCond.Broadcast()
}

// SeqWaits returns how many times a producer had to wait for a reservation.
func (f *Feed) SeqWaits() uint64 { return f.seqWaits.Load() }

// waitSeq blocks a producer, before it takes the twin's lock, while the
// reserved numbers are used up (up to SeqSlack). It returns ErrSeqExhausted
// when no reservation will come.
func (f *Feed) waitSeq() error {
	if f.seqOK.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	waited := false
	for !f.roomForSeq() {
		if f.gated && !f.open.Load() {
			return ErrNotLeader
		}
		if f.noMore {
			return ErrSeqExhausted
		}
		if !waited {
			waited = true
			f.seqWaits.Add(1)
		}
		f.signalNeed()
		f.seqCond.Wait()
	}
	return nil
}

// roomForSeq reports whether a producer may go on. Caller holds f.mu.
func (f *Feed) roomForSeq() bool {
	if f.gated && (!f.open.Load() || f.next-1-f.committed >= f.maxTentative) {
		return false
	}
	return f.limit == 0 || f.next+SeqSlack <= f.limit
}

// updateSeqOK refreshes the fast path and signals the reserver when the
// reservation runs low. Caller holds f.mu for writing.
func (f *Feed) updateSeqOK() {
	f.seqOK.Store(f.roomForSeq())
	if f.limit != 0 && f.limit < f.next+SeqSlack+f.lowWater {
		f.signalNeed()
	}
}

func (f *Feed) signalNeed() {
	select {
	case f.need <- struct{}{}:
	default:
	}
}

// append assigns c its sequence number and stores it. The twin calls it
// under its own lock so that sequence order equals mutation order.
func (f *Feed) append(c *Change) {
	f.mu.Lock()
	if f.next-f.start == uint64(len(f.buf)) {
		f.makeRoom()
	}
	c.Seq = f.next
	f.buf[c.Seq%uint64(len(f.buf))] = *c
	f.next++
	if f.next-f.start > uint64(len(f.buf)) {
		f.start = f.next - uint64(len(f.buf))
	}
	f.trim()
	if f.limit != 0 || f.gated {
		f.updateSeqOK()
	}
	if len(f.required) > 0 {
		f.updateRoomOK()
	}
	if f.gated {
		// Tentative: consumers hear of it at Commit; the publisher now.
		select {
		case f.appended <- struct{}{}:
		default:
		}
	} else {
		f.wake()
	}
	f.mu.Unlock()
}

// wake signals every cursor. Caller holds f.mu.
func (f *Feed) wake() {
	for s := range f.subs {
		if !s.urgent {
			f.signal(s)
		}
	}
	// The urgent ones last: the Go scheduler runs the goroutine readied
	// last first (runnext) and the others in the order they were readied,
	// so on a busy core the consumer a person waits on (the websocket
	// router) reads the new changes before the store writer, the replay
	// recorder, rules, tiles and the rest. Woken in map order, it waited
	// behind a random half of a dozen consumers at every commit (issue 16
	// goal 6: the single core of the fan-out benchmark).
	for s := range f.subs {
		if s.urgent {
			f.signal(s)
		}
	}
}

func (f *Feed) signal(s *Cursor) {
	if f.signalled != nil {
		f.signalled(s)
	}
	s.signal()
}

// Last returns the sequence number of the newest change consumers may read
// (0 when none): in a gated feed the newest committed one.
func (f *Feed) Last() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.visible()
}

// visible is the newest seq consumers may read. Caller holds f.mu.
func (f *Feed) visible() uint64 {
	if f.gated {
		return f.committed
	}
	return f.next - 1
}

// Since returns up to max changes with Seq > after, oldest first. It returns
// ErrTooOld when changes after `after` have already left the window.
func (f *Feed) Since(after uint64, max int) ([]Change, error) {
	return f.SinceAppend(nil, after, max)
}

// SinceAppend is Since appending to dst: a consumer that is done with its
// previous batch before it reads the next passes that batch's slice
// (buf[:0]) and reads without allocating, instead of a fresh copy of every
// change per consumer per read.
func (f *Feed) SinceAppend(dst []Change, after uint64, max int) ([]Change, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if after+1 < f.start {
		return dst, ErrTooOld
	}
	last := f.visible()
	if after >= last {
		return dst, nil
	}
	n := last - after
	if max > 0 && n > uint64(max) {
		n = uint64(max)
	}
	if dst == nil {
		dst = make([]Change, 0, n)
	}
	for s := after + 1; s <= after+n; s++ {
		dst = append(dst, f.buf[s%uint64(len(f.buf))])
	}
	return dst, nil
}
