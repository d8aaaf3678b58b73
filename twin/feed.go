package twin

import (
	"errors"
	"sync"
)

// ErrTooOld is returned by Feed.Since when the asked-for sequence number has
// left the feed's window; the consumer must resynchronise from a snapshot.
var ErrTooOld = errors.New("feed: sequence number older than the window")

// Feed is a bounded window of the most recent changes, in sequence order.
// Appending never blocks: old changes fall off the window, and a consumer
// that falls behind gets ErrTooOld instead of stalling ingest.
//
// Feed is safe for concurrent use.
type Feed struct {
	mu    sync.RWMutex
	buf   []Change // ring; grows by doubling up to capacity
	cap   int      // the window: changes kept at most
	next  uint64   // sequence number the next change gets; first change is 1
	start uint64   // lowest sequence number still in buf
	subs  map[*Cursor]struct{}
}

// feedInitial is the ring's first size. The ring doubles as changes arrive
// until it reaches the capacity, so an idle twin does not pay for the whole
// window up front (1<<20 changes of 64 B are 64 MB; a loaded demo city at
// scale 1 is ~190 MB in all).
const feedInitial = 1 << 12

// NewFeed makes a feed that keeps the last capacity changes.
func NewFeed(capacity int) *Feed {
	if capacity < 16 {
		capacity = 16
	}
	return &Feed{buf: make([]Change, min(capacity, feedInitial)), cap: capacity, next: 1, start: 1, subs: map[*Cursor]struct{}{}}
}

// grow doubles the ring (up to the capacity), keeping every change in it at
// its seq's slot. Caller holds f.mu.
func (f *Feed) grow() {
	nb := make([]Change, min(2*len(f.buf), f.cap))
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
}

// append assigns c its sequence number and stores it. The twin calls it
// under its own lock so that sequence order equals mutation order.
func (f *Feed) append(c *Change) {
	f.mu.Lock()
	if f.next-f.start == uint64(len(f.buf)) && len(f.buf) < f.cap {
		f.grow()
	}
	c.Seq = f.next
	f.buf[c.Seq%uint64(len(f.buf))] = *c
	f.next++
	if f.next-f.start > uint64(len(f.buf)) {
		f.start = f.next - uint64(len(f.buf))
	}
	for s := range f.subs {
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
	f.mu.Unlock()
}

// Last returns the sequence number of the newest change (0 when none).
func (f *Feed) Last() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.next - 1
}

// Since returns up to max changes with Seq > after, oldest first. It returns
// ErrTooOld when changes after `after` have already left the window.
func (f *Feed) Since(after uint64, max int) ([]Change, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if after+1 < f.start {
		return nil, ErrTooOld
	}
	if after >= f.next-1 {
		return nil, nil
	}
	n := f.next - 1 - after
	if max > 0 && n > uint64(max) {
		n = uint64(max)
	}
	out := make([]Change, 0, n)
	for s := after + 1; s <= after+n; s++ {
		out = append(out, f.buf[s%uint64(len(f.buf))])
	}
	return out, nil
}

// Cursor is one consumer's wake-up signal. C receives (coalesced) whenever
// changes were appended; the consumer then calls Since with its own position.
type Cursor struct {
	c    chan struct{}
	feed *Feed
}

// C is signalled after appends; several appends may give one signal.
func (c *Cursor) C() <-chan struct{} { return c.c }

// Close unregisters the cursor.
func (c *Cursor) Close() {
	c.feed.mu.Lock()
	delete(c.feed.subs, c)
	c.feed.mu.Unlock()
}

// Subscribe registers a wake-up cursor.
func (f *Feed) Subscribe() *Cursor {
	c := &Cursor{c: make(chan struct{}, 1), feed: f}
	f.mu.Lock()
	f.subs[c] = struct{}{}
	f.mu.Unlock()
	return c
}
