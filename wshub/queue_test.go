package wshub

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

func deltaItem(obj string, seq uint64) *item {
	return &item{id: twin.NewID(twin.Vehicles, obj), seq: seq, msg: []byte(fmt.Sprintf("%s@%d", obj, seq))}
}

// drainSeqs takes everything, as a writer would, and returns the items'
// seqs in order.
func drainSeqs(q *queue) []uint64 {
	return takeSeqs(q.take(nil, math.MaxInt))
}

// A queue that stays short keeps every version (no map work per delta);
// once it holds coalesceAfter items only the latest delta per object is
// left, in seq order, and control items are kept.
func TestQueueCoalescesOnlyWhenBehind(t *testing.T) {
	var q queue
	q.push(deltaItem("a", 1))
	q.push(deltaItem("b", 2))
	q.push(deltaItem("a", 3))
	if got := drainSeqs(&q); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("short queue: got %v, want every version", got)
	}

	q.push(&item{resync: true})
	dropped := 0
	for i := range coalesceAfter - 1 {
		dropped += q.push(deltaItem(fmt.Sprintf("o%d", i%4), uint64(10+i)))
	}
	if !q.coalescing || q.n != 5 {
		t.Fatalf("after %d pushes: coalescing %v, %d pending, want on and 5 (resync + 4 objects)", coalesceAfter, q.coalescing, q.n)
	}
	if dropped != coalesceAfter-1-4 {
		t.Errorf("dropped %d, want %d", dropped, coalesceAfter-1-4)
	}
	if n := q.push(deltaItem("o0", 1000)); n != 1 {
		t.Errorf("push while coalescing replaced %d, want 1", n)
	}
	want := 0
	for i := q.head; i < len(q.items); i++ {
		if !q.items[i].dead {
			want += q.items[i].size()
		}
	}
	if q.bytes != want {
		t.Errorf("bytes %d, items add up to %d", q.bytes, want)
	}
	got := drainSeqs(&q)
	// o3, o1 and o2 at their last versions; o0 replaced by 1000.
	if fmt.Sprint(got) != fmt.Sprint([]uint64{0, coalesceAfter + 5, coalesceAfter + 7, coalesceAfter + 8, 1000}) {
		t.Fatalf("coalesced queue: got %v", got)
	}
	if q.coalescing || len(q.pending) != 0 {
		t.Fatal("an emptied queue still coalesces")
	}
}

// A client over its byte budget first drops superseded deltas; it resyncs
// only when the latest states alone are over it.
func TestEnqueueCoalescesBeforeOverflow(t *testing.T) {
	fx := newRouteFixture(t, 1, 1)
	var c *client
	for cl := range fx.h.clients {
		c = cl
	}
	c.h.opts.QueueBytes = 10 * (itemOverhead + 8)
	for i := range 40 {
		c.enqueueDelta(deltaItem(fmt.Sprintf("o%d", i%3), uint64(i+1)))
	}
	if c.resync || c.q.n != 3 {
		t.Fatalf("3 objects updated 40 times: resync %v, %d pending, want no resync and 3", c.resync, c.q.n)
	}
	for i := range 40 {
		c.enqueueDelta(deltaItem(fmt.Sprintf("p%d", i), uint64(100+i)))
	}
	if !c.resync {
		t.Fatal("40 distinct objects over a 10-message budget did not resync")
	}
}

// encodeDelta's message is the envelope around the feature's own JSON,
// byte for byte.
func TestEncodeDelta(t *testing.T) {
	f := &twin.Feature{ID: twin.NewID(twin.Vehicles, "v1"), Geometry: orb.Point{106.5, 29.6}, Version: 3,
		Props: twin.NewProps(map[string]any{"speed_kmh": 30.0, "kind": "muck_truck"})}
	fj, err := f.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodeDelta(42, twin.Remove, f)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"op":"delta","seq":42,"kind":"remove","feature":` + string(fj) + `}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// takeSeqs returns the seqs of a taken list, in order.
func takeSeqs(items []item) []uint64 {
	seqs := []uint64{}
	for _, it := range items {
		seqs = append(seqs, it.seq)
	}
	return seqs
}

// TestQueueTake: take removes the oldest items up to its byte limit (at
// least one, even one over the limit), in order, keeps the counts right,
// and a delta pushed afterwards for a taken object leaves the taken list
// alone, coalescing or not.
func TestQueueTake(t *testing.T) {
	var q queue
	if q.take(nil, 1<<20) != nil {
		t.Fatal("take of an empty queue")
	}
	for i := range 5 {
		q.push(deltaItem(fmt.Sprintf("o%d", i), uint64(i+1)))
	}
	one := q.items[q.head].size()
	if got := takeSeqs(q.take(nil, 0)); fmt.Sprint(got) != "[1]" {
		t.Fatalf("take(0): %v, want the first item alone", got)
	}
	if got := takeSeqs(q.take(nil, 2*one+one/2)); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("take of two and a half items' bytes: %v, want [2 3]", got)
	}
	if q.n != 2 || q.bytes != 2*one {
		t.Fatalf("left %d items, %d bytes; want 2, %d", q.n, q.bytes, 2*one)
	}
	if got := takeSeqs(q.take(nil, 1<<20)); fmt.Sprint(got) != "[4 5]" || len(q.items) != 0 || q.n != 0 || q.bytes != 0 {
		t.Fatalf("take of the rest: %v, queue left %d items, %d bytes", got, q.n, q.bytes)
	}

	// Coalescing: objects a..d pending, the oldest two taken, then new
	// deltas for a (taken) and c (still pending).
	for i := range coalesceAfter {
		q.push(deltaItem(fmt.Sprintf("%c", 'a'+i%4), uint64(100+i)))
	}
	if !q.coalescing || q.n != 4 {
		t.Fatalf("coalescing %v with %d items, want on with 4", q.coalescing, q.n)
	}
	one = q.items[q.head].size()
	taken := q.take(nil, 2*one+one/2)
	q.push(deltaItem("a", 1000))
	q.push(deltaItem("c", 1001))
	if got, want := takeSeqs(taken), fmt.Sprint([]uint64{100 + coalesceAfter - 4, 100 + coalesceAfter - 3}); fmt.Sprint(got) != want {
		t.Fatalf("taken while coalescing: %v, want %v", got, want)
	}
	if got, want := drainSeqs(&q), fmt.Sprint([]uint64{100 + coalesceAfter - 1, 1000, 1001}); fmt.Sprint(got) != want {
		t.Fatalf("left after take: %v, want %v (d, then a and c anew)", got, want)
	}
}

// TestQueueSlots: a queue that is never emptied, pushed to faster than it
// is taken from and coalescing, compacts its slice when it is full of
// taken and dead slots (the coalescing index follows) instead of growing
// it, and keeps its counts, its order and one pending delta per object
// throughout.
func TestQueueSlots(t *testing.T) {
	var q queue
	last := uint64(0)
	for i := 1; i <= 5000; i++ {
		q.push(deltaItem(fmt.Sprintf("o%d", i%7), uint64(i)))
		if i%3 == 0 {
			for _, it := range q.take(nil, 0) {
				if it.seq <= last {
					t.Fatalf("took seq %d after %d", it.seq, last)
				}
				last = it.seq
			}
		}
		n, b, prev := 0, 0, last
		seen := map[twin.ID]bool{}
		for k := q.head; k < len(q.items); k++ {
			it := &q.items[k]
			if it.dead {
				continue
			}
			n++
			b += it.size()
			if it.seq <= prev {
				t.Fatalf("push %d: seq %d pending after %d", i, it.seq, prev)
			}
			prev = it.seq
			if q.coalescing {
				if seen[it.id] {
					t.Fatalf("push %d: two deltas pending for %v", i, it.id)
				}
				seen[it.id] = true
				if q.pending[it.id] != q.off+k {
					t.Fatalf("push %d: %v indexed at %d, is at %d", i, it.id, q.pending[it.id], q.off+k)
				}
			}
		}
		if n != q.n || b != q.bytes {
			t.Fatalf("push %d: %d items of %d bytes pending, counted %d and %d", i, n, b, q.n, q.bytes)
		}
	}
	if !q.coalescing || cap(q.items) > 4*coalesceAfter {
		t.Fatalf("coalescing %v, %d slots for %d items", q.coalescing, cap(q.items), q.n)
	}
	q.take(nil, math.MaxInt)
	if q.n != 0 || q.bytes != 0 || q.coalescing || len(q.items) != 0 {
		t.Fatalf("emptied: %d items, %d bytes, coalescing %v, %d slots", q.n, q.bytes, q.coalescing, len(q.items))
	}
}

// flushPause keeps the interval after short rounds, stretches it after
// long ones, up to flushStretch times; an old delta may end it after the
// interval or flushFloor rounds, whichever is longer.
func TestFlushPause(t *testing.T) {
	const fi = 10 * time.Millisecond
	for _, c := range []struct{ took, least, full time.Duration }{
		{0, fi, fi},
		{fi / flushDuty, fi, fi},
		{2 * fi / flushDuty, fi, 2 * fi},
		{fi, flushFloor * fi, flushStretch * fi},
		{time.Second, flushStretch * fi, flushStretch * fi},
	} {
		if least, full := flushPause(fi, c.took); least != c.least || full != c.full {
			t.Errorf("after a round of %v: %v-%v, want %v-%v", c.took, least, full, c.least, c.full)
		}
	}
}

// A coalescing queue nothing is taken from (its writer blocked on a full
// socket) keeps its slice small: a replaced delta's dead slot is reused.
func TestQueueDeadSlotsReused(t *testing.T) {
	var q queue
	for i := 1; i <= 100000; i++ {
		q.push(deltaItem(fmt.Sprintf("o%d", i%4), uint64(i)))
	}
	if q.n != 4 || cap(q.items) > 4*coalesceAfter {
		t.Fatalf("%d items pending in %d slots, want 4 in a few hundred", q.n, cap(q.items))
	}
	if got := drainSeqs(&q); fmt.Sprint(got) != "[99997 99998 99999 100000]" {
		t.Fatalf("pending %v", got)
	}
}
