package twin

import (
	"math"

	"github.com/paulmach/orb"
)

// metresPerDegree is the length of one degree of latitude on the sphere
// used by spatial/sphere (R = 6371008.8 m).
const metresPerDegree = 6371008.8 * math.Pi / 180

// Nearest calls fn for the objects of a layer in increasing order of their
// approximate distance from p, in metres, until fn returns false. The
// distance is measured on a local equirectangular projection around p
// (longitude scaled by cos(lat)), which at city scale is within 0.1% of the
// great-circle distance; callers wanting exact metres recompute them. fn runs
// under the twin's read lock.
func (t *Twin) Nearest(l Layer, p orb.Point, fn func(f *Feature, approxMetres float64) bool) uint64 {
	kx := math.Cos(p[1]*math.Pi/180) * metresPerDegree
	ky := metresPerDegree
	dist := func(min, max [2]float64, _ *Feature, _ bool) float64 {
		dx := axisGap(p[0], min[0], max[0]) * kx
		dy := axisGap(p[1], min[1], max[1]) * ky
		return dx*dx + dy*dy
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if idx := t.index[l]; idx != nil {
		idx.Nearby(dist, func(_, _ [2]float64, f *Feature, d float64) bool {
			return fn(f, math.Sqrt(d))
		})
	}
	return t.feed.Last()
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
