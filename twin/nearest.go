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
// first; most callers (k nearest, k small) stop within it.
const nearestChunk = 64

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
// the read lock in chunks (64, then four times as many each time fn wants
// more), and a later chunk is brought back to the first chunk's seq with
// the feed's changes in between (see pastState), so fn sees one state.
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
	dist := func(min, max [2]float64, _ *Feature, _ bool) float64 { return boxDist(min, max) }
	var (
		seq, gen uint64
		past     *pastState
		yielded  map[ID]bool // once the trees changed between chunks: what fn has had
		prevHits []hit       // the previous chunk, all of which fn has had
	)
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
		t.index[li].Nearby(dist, func(_, _ [2]float64, f *Feature, d float64) bool {
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
		case yielded == nil && g == gen:
			// The trees are as they were: the walk, a prefix of the same
			// order, starts with the previous chunk, which fn has had
			// (no map of what it had: within 500 m of a million points
			// spent a fifth of its time hashing ids).
			skip = len(prevHits)
		default:
			if yielded == nil {
				past = t.pastState(seq)
				yielded = make(map[ID]bool, len(prevHits))
				for _, h := range prevHits {
					yielded[h.f.ID] = true
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
			if yielded != nil {
				if yielded[h.f.ID] {
					continue
				}
				yielded[h.f.ID] = true
			}
			if !fn(h.f, math.Sqrt(h.d)) {
				return seq
			}
		}
		if exhausted {
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
