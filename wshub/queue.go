package wshub

import (
	"github.com/citytwin/citytwin/twin"
)

// item is one pending outgoing message.
type item struct {
	id   twin.ID  // set for coalescable deltas
	seq  uint64   // delta seq (0 for control messages)
	msg  []byte   // encoded message, shared between clients: read only
	msgs [][]byte // a resume: several encoded deltas written in order
	snap *snapshot
	// resync asks the writer to send {"op":"resync"} and re-snapshot.
	resync     bool
	prev, next *item
}

// itemOverhead is what a queued message costs beyond its bytes (the item,
// its map entry, the pointers), counted in Options.QueueBytes.
const itemOverhead = 128

// size is what it counts against Options.QueueBytes. A snapshot counts its
// overhead only: it is built by the client's writer right before it writes
// it, never left waiting in a queue.
func (it *item) size() int {
	n := itemOverhead + len(it.msg)
	for _, m := range it.msgs {
		n += len(m)
	}
	return n
}

// snapshot is a snapshot message encoded by the client's writer (not the
// router or the subscriber) since it may hold thousands of features.
type snapshot struct {
	seq      uint64
	features []*twin.Feature
	at       string // a replay snapshot's time (RFC 3339), "" when live
}

// queue is a client's FIFO of pending messages in increasing seq order.
// Deltas are coalesced when the client falls behind: a delta for an object
// that already has one pending replaces it (the old entry is unlinked and
// the new one appended), so the client receives the object's latest state.
// A client that keeps up gets every version instead, and its queue costs
// no map work per delta (a map insert on push and a delete on take were a
// tenth of the hub's CPU at 35,000 deltas a second): coalescing turns on
// when the queue holds coalesceAfter items or goes over its byte budget
// (then it first drops the superseded deltas and checks again), or when
// the caller asks for it, and stays on until the queue is empty. Not safe
// for concurrent use (client.mu guards it).
type queue struct {
	head, tail *item
	n          int
	bytes      int // sum of the items' size()
	// pending indexes the coalescable deltas by object while coalescing
	// is on (nil or empty when off).
	pending    map[twin.ID]*item
	coalescing bool
}

// coalesceAfter is how many pending items turn coalescing on: a writer
// that flushes every FlushInterval leaves far fewer behind.
const coalesceAfter = 256

// push appends it; it reports how many pending deltas it made redundant
// (replaced, or dropped when coalescing turned on).
func (q *queue) push(it *item) (coalesced int) {
	if q.coalescing && !it.id.IsZero() {
		if old := q.pending[it.id]; old != nil {
			q.unlink(old)
			coalesced++
		}
		q.pending[it.id] = it
	}
	it.prev, it.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = it
	} else {
		q.head = it
	}
	q.tail = it
	q.n++
	q.bytes += it.size()
	if !q.coalescing && q.n >= coalesceAfter {
		coalesced += q.coalesce()
	}
	return coalesced
}

// coalesce turns coalescing on: it drops every delta superseded by a later
// one for the same object and indexes the rest. It returns how many it
// dropped.
func (q *queue) coalesce() (dropped int) {
	if q.coalescing {
		return 0
	}
	q.coalescing = true
	if q.pending == nil {
		q.pending = make(map[twin.ID]*item, q.n)
	}
	for it := q.tail; it != nil; {
		prev := it.prev
		if !it.id.IsZero() {
			if q.pending[it.id] != nil {
				q.unlink(it) // a later delta for the object is pending
				dropped++
			} else {
				q.pending[it.id] = it
			}
		}
		it = prev
	}
	return dropped
}

func (q *queue) unlink(it *item) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		q.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		q.tail = it.prev
	}
	it.prev, it.next = nil, nil
	q.n--
	q.bytes -= it.size()
}

// take removes the oldest pending items, the first and as many more as
// fit in limit bytes (of size()), and returns the first; the rest follow
// through next (nil-terminated), in order. The writer takes its queue a
// batch at a time under one lock instead of item by item (a lock round per
// delta, which the router contends for); the limit keeps what it holds
// outside the queue's budget, while it writes, to about one socket batch.
func (q *queue) take(limit int) *item { return q.takeRun(limit, false) }

// takePlain is take of the plain messages at the head only (deltas and
// control messages, each one frame): it stops before a snapshot, a resume
// or a resync, which only the client's writer writes, and takes nothing
// when one is first.
func (q *queue) takePlain(limit int) *item { return q.takeRun(limit, true) }

// plain reports whether it is one ready frame (see takePlain).
func (it *item) plain() bool {
	return it.msg != nil && !it.resync && it.snap == nil && it.msgs == nil
}

func (q *queue) takeRun(limit int, plainOnly bool) *item {
	first := q.head
	if first == nil || plainOnly && !first.plain() {
		return nil
	}
	last, size, k := first, first.size(), 1
	for last.next != nil && size+last.next.size() <= limit && (!plainOnly || last.next.plain()) {
		last = last.next
		size += last.size()
		k++
	}
	q.head = last.next
	if q.head != nil {
		q.head.prev = nil
	} else {
		q.tail = nil
	}
	last.next = nil
	q.n -= k
	q.bytes -= size
	if q.coalescing {
		if q.n == 0 {
			q.coalescing = false
			clear(q.pending)
		} else {
			// A later delta for a taken object must not unlink it.
			for it := first; it != nil; it = it.next {
				if !it.id.IsZero() && q.pending[it.id] == it {
					delete(q.pending, it.id)
				}
			}
		}
	}
	return first
}

// reset drops everything pending.
func (q *queue) reset() {
	q.head, q.tail, q.n, q.bytes = nil, nil, 0, 0
	q.coalescing = false
	clear(q.pending)
}
