package wshub

import (
	"github.com/citytwin/citytwin/twin"
)

// item is one pending outgoing message. Queues hold items by value.
type item struct {
	id  twin.ID // set for coalescable deltas
	seq uint64  // delta seq (0 for control messages)
	msg []byte  // encoded message, shared between clients: read only
	// shared is msg's reference count when msg is a routed delta's
	// (sharedMsg): the client lets go of it once it has written it.
	shared *sharedMsg
	msgs   [][]byte // a resume: several encoded deltas written in order
	snap   *snapshot
	// resync asks the writer to send {"op":"resync"} and re-snapshot.
	resync bool
	// dead marks a slot whose delta was superseded (coalescing).
	dead bool
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

// queue is a client's FIFO of pending messages in increasing seq order,
// held by value in one slice: the router appends, the writer (or the
// flusher) takes runs from the head. A linked list of pooled items cost
// a cache miss or more per delta on each side (the flusher's walk over
// the items it took was a third of its time at 10,000 msgs/s), where a
// slice is read in order.
// Deltas are coalesced when the client falls behind: a delta for an object
// that already has one pending replaces it (the old slot is marked dead
// and the new one appended), so the client receives the object's latest
// state. A client that keeps up gets every version instead, and its queue
// costs no map work per delta (a map insert on push and a delete on take
// were a tenth of the hub's CPU at 35,000 deltas a second): coalescing
// turns on when the queue holds coalesceAfter items or goes over its byte
// budget (then it first drops the superseded deltas and checks again), or
// when the caller asks for it, and stays on until the queue is empty. Not
// safe for concurrent use (client.mu guards it).
type queue struct {
	items []item // items[head:] are pending, dead slots among them
	head  int
	off   int // the absolute position of items[0] (see pending), moved on when the queue empties
	n     int // live items
	bytes int // sum of the live items' size()
	// pending indexes the coalescable deltas by object, at their absolute
	// position (off + index), while coalescing is on (nil or empty when
	// off).
	pending    map[twin.ID]int
	coalescing bool
}

// coalesceAfter is how many pending items turn coalescing on: a writer
// that flushes every FlushInterval leaves far fewer behind.
const coalesceAfter = 256

// keepItems is the most slots an emptied queue keeps for reuse; a larger
// slice (a client that was far behind) goes.
const keepItems = 1024

// push appends a copy of it; it reports how many pending deltas it made
// redundant (replaced, or dropped when coalescing turned on).
func (q *queue) push(it *item) (coalesced int) {
	if len(q.items) == cap(q.items) && len(q.items)-q.n >= len(q.items)/2 {
		q.compact()
	}
	if q.coalescing && !it.id.IsZero() {
		if a, ok := q.pending[it.id]; ok {
			q.kill(a - q.off)
			coalesced++
		}
		q.pending[it.id] = q.off + len(q.items)
	}
	q.items = append(q.items, *it)
	q.n++
	q.bytes += it.size()
	if !q.coalescing && q.n >= coalesceAfter {
		coalesced += q.coalesce()
	}
	return coalesced
}

// compact moves the live items to the front of the slice, dropping the
// taken and dead slots, and indexes them anew. push calls it when the
// slice is full and at least half of it is such slots, so a queue that
// coalesces and is never emptied (a writer blocked on a client that
// stopped reading) does not grow its slice with dead slots, and the work
// is at most a slot moved per push.
func (q *queue) compact() {
	k := 0
	for i := q.head; i < len(q.items); i++ {
		if !q.items[i].dead {
			q.items[k] = q.items[i]
			k++
		}
	}
	clear(q.items[k:])
	q.items = q.items[:k]
	q.head, q.off = 0, 0
	if q.coalescing {
		clear(q.pending)
		for i := range q.items {
			if id := q.items[i].id; !id.IsZero() {
				q.pending[id] = i
			}
		}
	}
}

// kill drops the live item at index i.
func (q *queue) kill(i int) {
	q.n--
	q.bytes -= q.items[i].size()
	q.items[i] = item{dead: true}
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
		q.pending = make(map[twin.ID]int, q.n)
	}
	for i := len(q.items) - 1; i >= q.head; i-- {
		it := &q.items[i]
		if it.dead || it.id.IsZero() {
			continue
		}
		if _, ok := q.pending[it.id]; ok {
			q.kill(i) // a later delta for the object is pending
			dropped++
		} else {
			q.pending[it.id] = q.off + i
		}
	}
	return dropped
}

// take appends to dst the oldest pending items, the first and as many
// more as fit in limit bytes (of size()), in order, and removes them. The
// writer takes its queue a batch at a time under one lock instead of item
// by item (a lock round per delta, which the router contends for); the
// limit keeps what it holds outside the queue's budget, while it writes,
// to about one socket batch.
func (q *queue) take(dst []item, limit int) []item { return q.takeRun(dst, limit, false) }

// takePlain is take of the plain messages at the head only (deltas and
// control messages, each one frame): it stops before a snapshot, a resume
// or a resync, which only the client's writer writes, and takes nothing
// when one is first.
func (q *queue) takePlain(dst []item, limit int) []item { return q.takeRun(dst, limit, true) }

// plain reports whether it is one ready frame (see takePlain).
func (it *item) plain() bool {
	return it.msg != nil && !it.resync && it.snap == nil && it.msgs == nil
}

func (q *queue) takeRun(dst []item, limit int, plainOnly bool) []item {
	size, k, i := 0, 0, q.head
	for ; i < len(q.items); i++ {
		it := &q.items[i]
		if it.dead {
			continue
		}
		if plainOnly && !it.plain() {
			break
		}
		sz := it.size()
		if k > 0 && size+sz > limit {
			break
		}
		size += sz
		k++
		if q.coalescing && !it.id.IsZero() && q.pending[it.id] == q.off+i {
			// A later delta for a taken object must not kill a slot.
			delete(q.pending, it.id)
		}
		dst = append(dst, *it)
	}
	clear(q.items[q.head:i]) // the queue keeps no message alive it no longer holds
	q.head = i
	q.n -= k
	q.bytes -= size
	if q.head == len(q.items) {
		q.off += len(q.items)
		q.head = 0
		q.items = q.items[:0]
		if cap(q.items) > keepItems {
			q.items = nil
		}
	}
	if q.n == 0 && q.coalescing {
		q.coalescing = false
		clear(q.pending)
	}
	return dst
}

// empty reports whether nothing is pending.
func (q *queue) empty() bool { return q.n == 0 }

// reset drops everything pending.
func (q *queue) reset() {
	clear(q.items)
	q.items = q.items[:0]
	if cap(q.items) > keepItems {
		q.items = nil
	}
	q.head, q.off, q.n, q.bytes = 0, 0, 0, 0
	q.coalescing = false
	clear(q.pending)
}
