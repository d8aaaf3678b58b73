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

// queue is a client's FIFO of pending messages where a delta for an object
// that already has one pending replaces it: the old entry is unlinked and
// the new one appended, so the client receives the object's latest state,
// and deltas stay in increasing seq order. Not safe for concurrent use
// (client.mu guards it).
type queue struct {
	head, tail *item
	n          int
	bytes      int // sum of the items' size()
	pending    map[twin.ID]*item
}

// push appends it; it reports whether it replaced a pending delta.
func (q *queue) push(it *item) (coalesced bool) {
	if !it.id.IsZero() {
		if q.pending == nil {
			q.pending = map[twin.ID]*item{}
		}
		if old := q.pending[it.id]; old != nil {
			q.unlink(old)
			coalesced = true
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
	return coalesced
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

// pop removes and returns the oldest item, or nil.
func (q *queue) pop() *item {
	it := q.head
	if it == nil {
		return nil
	}
	q.unlink(it)
	if !it.id.IsZero() && q.pending[it.id] == it {
		delete(q.pending, it.id)
	}
	return it
}

// reset drops everything pending.
func (q *queue) reset() {
	q.head, q.tail, q.n, q.bytes = nil, nil, 0, 0
	clear(q.pending)
}
