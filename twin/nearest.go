package twin

import (
	"math"
	"sort"

	"github.com/paulmach/orb"
)

// metresPerDegree is the length of one degree of latitude on the sphere
// used by spatial/sphere (R = 6371008.8 m).
const metresPerDegree = 6371008.8 * math.Pi / 180

// nearestChunk is how many objects Nearest collects under the lock at
// first; most callers (k nearest, k small: /api/nearby's k=10 takes 11 or
// so) stop within it. The walk pushes every point of each leaf it opens on
// its queue, and gathering 64 opened more leaves: 408 pushes a k=10 query
// over a million points against 286 with 16. A caller past it walks this
// chunk more (within 500 m, about 1,000 taken: 3,302 pushes against 3,019);
// 16 keeps the later chunks at 64, 256, 1,024 (32 made it 5,121).
const nearestChunk = 16

// hit is an object and its approximate distance.
type hit struct {
	f *Feature
	d float64
}

// Nearest calls fn for the objects of a layer in increasing order of their
// approximate distance from p, in metres, until fn returns false. The
// distance is measured on a local equirectangular projection around p
// (longitude scaled by cos(lat)), which at city scale is within 0.1% of the
// great-circle distance; callers wanting exact metres recompute them. It
// returns the sequence number the order is consistent with.
//
// fn runs outside the twin's lock: the nearest objects are collected under
// the read lock in chunks (16, then four times as many each time fn wants
// more), and a later chunk is brought back to the first chunk's seq with
// the feed's changes in between (see pastState), so fn sees one state.
//
// The index walks in order of its float32 boxes' distances, lower bounds
// of the exact ones (boxTree.nearby); an object the walk gave waits in a
// heap by its exact distance until the walk has passed that distance (no
// later object can be nearer), so fn gets the exact order, and the objects
// are read outside the lock, about as many as fn takes.
func (t *Twin) Nearest(l Layer, p orb.Point, fn func(f *Feature, approxMetres float64) bool) uint64 {
	li := t.layerIndex(l)
	if li < 0 {
		return t.feed.Last()
	}
	kx := math.Cos(p[1]*math.Pi/180) * metresPerDegree
	ky := metresPerDegree
	boxDist := func(min, max [2]float64) float64 {
		dx := axisGap(p[0], min[0], max[0]) * kx
		dy := axisGap(p[1], min[1], max[1]) * ky
		return dx*dx + dy*dy
	}
	var (
		seq, gen uint64
		past     *pastState
		taken    map[ID]bool // once the trees changed between chunks: what pend or fn has had
		prevHits []hit       // the previous chunk, all of which pend or fn has had
	)
	// pend holds the objects the walk gave, by exact distance, until fn
	// may have them (give).
	pb := t.getHits()
	pend := hitHeap((*pb)[:0])
	defer func() {
		*pb = pend[:0]
		t.putHits(pb)
	}()
	give := func(upTo float64) bool {
		for len(pend) > 0 && pend[0].d <= upTo {
			if h := pend.pop(); !fn(h.f, math.Sqrt(h.d)) {
				return false
			}
		}
		return true
	}
	// Two buffers: a chunk is collected beside the previous one.
	bufs := [2]*[]hit{t.getHits(), nil}
	defer func() {
		for _, b := range bufs {
			if b != nil {
				t.putHits(b)
			}
		}
	}()
	defer func() {
		if past != nil {
			past.close()
		}
	}()
	for i, k := 0, nearestChunk; ; i, k = i+1, k*4 {
		buf := bufs[i%2]
		if buf == nil {
			buf = t.getHits()
			bufs[i%2] = buf
		}
		hits := (*buf)[:0]
		t.mu.RLock()
		last, g := t.feed.Last(), t.gen
		t.index[li].nearby(boxDist, func(f *Feature, d float64) bool { // d: a lower bound
			hits = append(hits, hit{f, d})
			return len(hits) < k
		})
		t.mu.RUnlock()
		*buf = hits
		exhausted := len(hits) < k
		skip := 0
		switch {
		case i == 0:
			seq, gen = last, g
		case taken == nil && g == gen:
			// The trees are as they were: the walk, a prefix of the same
			// order, starts with the previous chunk, which fn has had
			// (no map of what it took: within 500 m of a million points
			// spent a fifth of its time hashing ids).
			skip = len(prevHits)
		default:
			if taken == nil {
				past = t.pastState(seq)
				taken = make(map[ID]bool, len(prevHits))
				for _, h := range prevHits {
					taken[h.f.ID] = true
				}
			}
			if last > seq {
				// Back to seq: drop what changed since, add its state at
				// seq (up to the farthest distance this chunk covers).
				undo := past.upTo(last)
				limit := math.Inf(1)
				if !exhausted {
					limit = hits[len(hits)-1].d
				}
				kept := hits[:0]
				for _, h := range hits {
					if _, changed := undo[h.f.ID]; !changed {
						kept = append(kept, h)
					}
				}
				hits = kept
				for _, old := range undo {
					if old == nil || old.ID.Layer != l || old.Geometry == nil {
						continue
					}
					b := old.Geometry.Bound()
					if d := boxDist(b.Min, b.Max); d <= limit {
						hits = append(hits, hit{old, d})
					}
				}
				sort.SliceStable(hits, func(i, j int) bool { return hits[i].d < hits[j].d })
				*buf = hits
			}
		}
		for _, h := range hits[min(skip, len(hits)):] {
			if taken != nil {
				if taken[h.f.ID] {
					continue
				}
				taken[h.f.ID] = true
			}
			if !give(h.d) {
				return seq
			}
			b := h.f.Geometry.Bound()
			pend.push(hit{h.f, boxDist(b.Min, b.Max)})
		}
		if exhausted {
			give(math.Inf(1))
			return seq
		}
		prevHits = hits
	}
}

// axisGap is how far v lies outside [lo, hi] (0 inside).
func axisGap(v, lo, hi float64) float64 {
	if v < lo {
		return lo - v
	}
	if v > hi {
		return v - hi
	}
	return 0
}
