package twin

import (
	"github.com/paulmach/orb"
)

// Reads and the apply path (issue 13 item 6). A planner's H3 query over
// 200k vehicles used to run its per-object work under the twin's read lock
// and held ingest for 1.1 s. Now no caller's code runs under the lock:
// Search and Range copy the matching pointers under the read lock (a tree
// or map walk, about a millisecond per 100k objects) and call fn after
// releasing it; Nearest does the same in growing chunks. *Feature values
// are immutable, so the pointers stay valid and unchanged.
//
// View needs more: fn may read several layers and objects, all at one seq.
// Its Reader reads the live twin, then brings the answer back to the
// view's seq with the feed's changes in between (pastState): an object
// changed since is replaced by its state at seq, which is the Old of its
// first change after seq. The feed keeps those changes while the view is
// open (a required cursor at seq). This was chosen over copy-on-write
// trees (tidwall/btree and tidwall/rtree Copy, tried first): with views
// taken often, every apply cloned the tree nodes it touched, about 24 KB
// and 6-10 times the apply's own cost (BenchmarkApplyUnderViews), while
// here the writer pays nothing.

// Count returns how many objects a layer holds.
func (t *Twin) Count(l Layer) int {
	i := t.layerIndex(l)
	if i < 0 {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.objs[i].Len()
}

// Unlocated returns how many objects of a layer have no geometry (and so
// are not in the spatial index): OGC bbox queries must still return them.
func (t *Twin) Unlocated(l Layer) int {
	i := t.layerIndex(l)
	if i < 0 {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.objs[i].Len() - t.index[i].Len()
}

// Len returns the number of objects in the twin.
func (t *Twin) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for i := range t.objs {
		n += t.objs[i].Len()
	}
	return n
}

// Search calls fn for each object of layer whose bounds intersect b, until fn
// returns false. It returns the feed sequence number the result is consistent
// with: fn sees the layer as it was right after that change. fn runs with no
// lock held: it may take long, and may call the twin.
func (t *Twin) Search(l Layer, b orb.Bound, fn func(*Feature) bool) uint64 {
	buf := t.getFeatures()
	defer t.putFeatures(buf)
	seq := t.collect(l, b, buf)
	for _, f := range *buf {
		if !fn(f) {
			break
		}
	}
	return seq
}

// collect appends to buf the objects of l whose bounds intersect b, under
// the read lock, and returns the seq they are consistent with.
func (t *Twin) collect(l Layer, b orb.Bound, buf *[]*Feature) uint64 {
	i := t.layerIndex(l)
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i >= 0 {
		fs := *buf
		t.index[i].search(b, func(f *Feature) bool {
			fs = append(fs, f)
			return true
		})
		*buf = fs
	}
	// The head: in a replicated twin the leader's state may hold changes
	// the change log has not committed yet (replica.go); a View undoes
	// them too, so a snapshot is exactly at its committed seq.
	return t.feed.Head()
}

// Range calls fn for every object of a layer (nil geometry included), until
// fn returns false; returns the sequence number the objects are consistent
// with. Like Search, fn runs with no lock held.
func (t *Twin) Range(l Layer, fn func(*Feature) bool) uint64 {
	buf := t.getFeatures()
	defer t.putFeatures(buf)
	var seq uint64
	func() {
		t.mu.RLock()
		defer t.mu.RUnlock()
		if i := t.layerIndex(l); i >= 0 {
			fs := *buf
			for f := range t.objs[i].All() {
				fs = append(fs, f)
			}
			*buf = fs
		}
		seq = t.feed.Last()
	}()
	for _, f := range *buf {
		if !fn(f) {
			break
		}
	}
	return seq
}

// View runs fn with a consistent view of the whole twin at seq: every read
// through r answers as the twin was right after change seq, so a consumer
// that goes on with the feed's changes after seq (websocket subscribe)
// sees neither a gap nor an overlap. No lock is held while fn runs and
// writers go on meanwhile; r (for use by fn's goroutine only) does not see
// them. While fn runs the feed keeps the changes after seq, as for a
// required consumer: a fn that ran for a whole feed window would make
// telemetry wait (at most 30 s, see Feed); the hub's take microseconds.
func (t *Twin) View(fn func(seq uint64, r Reader)) {
	t.mu.RLock()
	seq := t.feed.Last()
	p := t.pastState(seq) // no change can come between: writers append under t.mu
	t.mu.RUnlock()
	defer p.close()
	fn(seq, viewReader{p})
}

// Reader reads one consistent view of the twin (inside View).
type Reader interface {
	Get(id ID) (*Feature, bool)
	Search(l Layer, b orb.Bound, fn func(*Feature) bool)
}

type viewReader struct{ p *pastState }

// Get returns id's state at the view's seq.
func (r viewReader) Get(id ID) (*Feature, bool) {
	t := r.p.t
	t.mu.RLock()
	f := t.get(id)
	last := t.feed.Head() // tentative changes too (see collect)
	t.mu.RUnlock()
	if last > r.p.seq {
		if old, changed := r.p.upTo(last)[id]; changed {
			return old, old != nil
		}
	}
	return f, f != nil
}

// Search calls fn for the objects of l whose bounds intersected b at the
// view's seq.
func (r viewReader) Search(l Layer, b orb.Bound, fn func(*Feature) bool) {
	t := r.p.t
	buf := t.getFeatures()
	defer t.putFeatures(buf)
	if last := t.collect(l, b, buf); last > r.p.seq {
		undo := r.p.upTo(last)
		fs := (*buf)[:0]
		for _, f := range *buf {
			if _, changed := undo[f.ID]; !changed {
				fs = append(fs, f)
			}
		}
		for _, old := range undo {
			if old != nil && old.ID.Layer == l && old.Geometry != nil && old.Geometry.Bound().Intersects(b) {
				fs = append(fs, old)
			}
		}
		*buf = fs
	}
	for _, f := range *buf {
		if !fn(f) {
			return
		}
	}
}

// pastState brings reads of the live twin back to seq: for every object
// changed after seq it holds the object's state at seq (nil: absent then),
// which is the Old of its first change after seq. A required cursor at seq
// keeps those changes in the feed until close. Not safe for concurrent use.
type pastState struct {
	t    *Twin
	seq  uint64
	pin  *Cursor
	upto uint64          // undo covers the changes up to here
	undo map[ID]*Feature // nil until a read needs it
}

// pastState opens a pastState at seq; the caller must make sure no change
// after seq has left the feed (hold t.mu, or seq is recent) and close it.
func (t *Twin) pastState(seq uint64) *pastState {
	return &pastState{t: t, seq: seq, upto: seq, pin: t.feed.Follow("", Required, seq)}
}

// upTo returns the undo map covering the changes up to last.
func (p *pastState) upTo(last uint64) map[ID]*Feature {
	if p.undo == nil {
		p.undo = map[ID]*Feature{}
	}
	if last <= p.upto {
		return p.undo
	}
	cs, err := p.t.feed.Tentative(p.upto, int(last-p.upto)) // committed or not
	if err != nil {
		// Only if the pin was cut loose (a reader held a view past twice
		// the feed window): answer with the live state, and say so.
		p.t.opts.Logger.Error("twin view outlived the feed window: answering with newer state", "seq", p.seq, "now", last)
	}
	for i := range cs {
		id := cs[i].ID()
		if _, seen := p.undo[id]; !seen {
			p.undo[id] = cs[i].Old
		}
	}
	p.upto = last
	return p.undo
}

func (p *pastState) close() { p.pin.Close() }

// maxPooled bounds the buffers kept for reuse (a whole-city scan's pointer
// slice is worth keeping; a rare giant one is not).
const maxPooled = 1 << 20

func (t *Twin) getFeatures() *[]*Feature {
	if b, ok := t.fpool.Get().(*[]*Feature); ok {
		return b
	}
	return new([]*Feature)
}

func (t *Twin) putFeatures(b *[]*Feature) {
	if cap(*b) > maxPooled {
		return
	}
	clear(*b) // drop the references: a pooled buffer must not keep old states alive
	*b = (*b)[:0]
	t.fpool.Put(b)
}

func (t *Twin) getHits() *[]hit {
	if b, ok := t.hpool.Get().(*[]hit); ok {
		return b
	}
	return new([]hit)
}

func (t *Twin) putHits(b *[]hit) {
	if cap(*b) > maxPooled {
		return
	}
	clear(*b)
	*b = (*b)[:0]
	t.hpool.Put(b)
}
