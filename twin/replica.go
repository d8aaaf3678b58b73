package twin

import (
	"errors"
	"fmt"
)

// Replication (issue 13): several servers hold one twin. One of them, the
// leader, mutates its twin as before; each change is tentative until the
// change log (twin/changelog, a JetStream stream whose sequence IS the feed
// sequence) has stored it, and only then do the feed's consumers (rules,
// writer, websockets, tiles, notifications) see it (Commit). Every other
// server, a follower, installs the logged changes into its twin exactly as
// recorded (Install), with the leader's sequence numbers and versions, so
// every twin's feed carries the same seqs. A leader that loses its
// leadership takes back its tentative changes (Fence), which nobody has
// seen, and continues as a follower from the log.

// Errors of the replication methods.
var (
	// ErrNotLeader is returned by a mutation of a replicated twin while
	// this server does not lead: only the leader changes the twin; the
	// others install the change log.
	ErrNotLeader = errors.New("twin: this server does not lead the twin (writes go to the leader)")
	// ErrSeqGap is returned by Install for a change whose seq is not the
	// next one: a change is missing, so the twin must be reloaded.
	ErrSeqGap = errors.New("twin: change log sequence gap")
)

// DefaultMaxTentative bounds the changes made but not yet in the change
// log; producers wait beyond it (back-pressure from the log).
const DefaultMaxTentative = 1 << 15

// Replicate makes the twin a replica: from now on its feed shows consumers
// only committed changes, and local mutations fail with ErrNotLeader until
// Lead. Call it once, after loading and before anything mutates the twin.
func (t *Twin) Replicate() {
	f := t.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gated = true
	f.committed = f.next - 1
	f.maxTentative = min(DefaultMaxTentative, uint64(f.cap/2))
	f.updateSeqOK()
}

// Replicated reports whether Replicate was called.
func (t *Twin) Replicated() bool {
	t.feed.mu.RLock()
	defer t.feed.mu.RUnlock()
	return t.feed.gated
}

// Lead allows local mutations: this server leads. Its changes are
// tentative until Commit.
func (t *Twin) Lead() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.feed.mu.Lock()
	t.feed.open.Store(true)
	t.feed.updateSeqOK()
	t.feed.seqCond.Broadcast()
	t.feed.mu.Unlock()
}

// Leading reports whether local mutations are allowed (a twin that is not
// replicated always leads).
func (t *Twin) Leading() bool { return t.writable() == nil }

// Fence stops local mutations (producers waiting for room get ErrNotLeader)
// and takes back every tentative change, newest first, restoring each
// object as it was: none of them reached the change log's consumers, and
// the log, not this server, now decides what comes next. It returns how
// many changes it took back, and ErrSeqGap if some had left the feed's
// window (they cannot while DefaultMaxTentative holds; the twin must then
// be reloaded). After Fence no mutation can slip in: each checks the flag
// under the twin's lock.
func (t *Twin) Fence() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open.Store(false)
	var err error
	if f.committed+1 < f.start && f.committed+1 < f.next {
		err = fmt.Errorf("%w: tentative changes from %d left the window (starts at %d)", ErrSeqGap, f.committed+1, f.start)
	}
	n := 0
	for s := f.next - 1; s > f.committed && s >= f.start; s-- {
		c := f.buf[s%uint64(len(f.buf))]
		t.undo(&c)
		f.buf[s%uint64(len(f.buf))] = Change{}
		n++
	}
	f.next = f.committed + 1
	f.start = min(f.start, f.next)
	f.updateSeqOK()
	f.seqCond.Broadcast()
	return n, err
}

// undo reverses one change. Caller holds t.mu.
func (t *Twin) undo(c *Change) {
	switch c.Kind {
	case Upsert:
		t.unindex(c.New)
		if c.Old != nil {
			t.insert(c.Old)
			return
		}
		t.drop(c.New.ID)
	case Remove:
		t.insert(c.Old)
	}
}

// drop removes id from the maps (its index entry is already gone). Caller
// holds t.mu.
func (t *Twin) drop(id ID) {
	i := t.layerIndex(id.Layer)
	if i < 0 {
		return
	}
	t.objs[i].Delete(id.Name)
}

// writable returns ErrNotLeader when local mutations are not allowed.
// Callers hold t.mu (so Fence cannot interleave).
func (t *Twin) writable() error {
	if t.feed.gated && !t.feed.open.Load() {
		return ErrNotLeader
	}
	return nil
}

// Install applies a change recorded in the change log exactly as recorded:
// the object's new state (version, cells, region, times included) or its
// removal, with the change's own Seq and Time. No enrichment, no checks:
// the leader did them. c.Seq must be the next seq (ErrSeqGap otherwise; a
// seq already installed is ignored, returning false). c.Old is replaced
// by this twin's state before the change. Followers only: it fails with
// ErrNotLeader's opposite, an error, on a twin that leads.
func (t *Twin) Install(c Change) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.feed
	if !f.gated || f.open.Load() {
		return false, errors.New("twin: Install on a twin that leads or is not replicated")
	}
	f.mu.RLock()
	next := f.next
	f.mu.RUnlock()
	if c.Seq < next {
		return false, nil
	}
	if c.Seq > next {
		return false, fmt.Errorf("%w: change %d after %d", ErrSeqGap, c.Seq, next-1)
	}
	id := c.ID()
	if t.layerIndex(id.Layer) < 0 {
		return false, fmt.Errorf("twin: install %d: %w %q", c.Seq, ErrUnknownLayer, id.Layer)
	}
	old := t.get(id)
	c.Old = old
	switch c.Kind {
	case Upsert:
		if c.New == nil {
			return false, fmt.Errorf("twin: install %d: upsert without a state", c.Seq)
		}
		if old != nil {
			t.replace(old, c.New)
		} else {
			t.insert(c.New)
		}
	case Remove:
		if old != nil {
			t.unindex(old)
			t.drop(id)
		}
		c.New = nil
	case History:
		c.New = old
	default:
		return false, fmt.Errorf("twin: install %d: unknown kind %d", c.Seq, c.Kind)
	}
	f.mu.Lock()
	if f.next-f.start == uint64(len(f.buf)) {
		f.makeRoom()
	}
	f.buf[c.Seq%uint64(len(f.buf))] = c
	f.next++
	if f.next-f.start > uint64(len(f.buf)) {
		f.start = f.next - uint64(len(f.buf))
	}
	f.trim()
	f.committed = c.Seq
	if len(f.required) > 0 {
		f.updateRoomOK()
	}
	f.wake()
	f.mu.Unlock()
	return true, nil
}

// Head returns the newest seq handed out, tentative or not.
func (f *Feed) Head() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.next - 1
}

// Appended is signalled (coalesced) after every tentative append.
func (f *Feed) Appended() <-chan struct{} { return f.appended }

// Tentative returns up to max changes after `after` that are not
// committed yet, oldest first (the publisher's read). ErrTooOld if they
// left the window (they cannot: the window holds every tentative change).
func (f *Feed) Tentative(after uint64, max int) ([]Change, error) {
	return f.TentativeAppend(nil, after, max)
}

// TentativeAppend is Tentative appending to dst, for a reader that reuses
// one buffer (the change-log publisher: a new slice per read was ~45 B of
// garbage per change, issue 16 goal 6).
func (f *Feed) TentativeAppend(dst []Change, after uint64, max int) ([]Change, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if after+1 < f.start {
		return dst, ErrTooOld
	}
	if after >= f.next-1 {
		return dst, nil
	}
	n := f.next - 1 - after
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

// Commit marks every change up to seq as in the change log: consumers see
// it now. Seqs beyond the head or below the committed one are ignored.
func (f *Feed) Commit(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq <= f.committed || seq > f.next-1 {
		return
	}
	f.committed = seq
	f.updateSeqOK()
	f.seqCond.Broadcast()
	f.wake()
}
