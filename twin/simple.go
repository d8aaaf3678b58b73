package twin

import (
	"math/rand/v2"
	"slices"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/paulmach/orb"
)

// ringSelfIntersects reports whether two non-adjacent edges of the closed
// ring r (no repeated consecutive points) meet, or two adjacent edges fold
// back over each other: the answer of planar.RingSelfIntersects, in
// O(n log n) instead of O(n²), so a 20,000-vertex polygon costs
// milliseconds, not seconds.
//
// It is the Shamos-Hoey sweep (M. I. Shamos, D. Hoey, "Geometric
// intersection problems", FOCS 1976; the simple-polygon test of
// geomalgorithms.com): edges ordered left to right by their lower
// endpoint; a status of the edges the sweep line crosses, ordered bottom to
// top (a treap); an edge is tested only against its neighbours when it
// enters, and its two neighbours against each other when it leaves. The
// first intersection, if any, makes two neighbours meet before the sweep
// passes it, so nothing is missed; edges sharing a ring vertex are
// exempt unless they fold.
//
// Floating-point rounding can in principle make the status order
// inconsistent (an edge not found where it should be); then small rings
// fall back to the exhaustive test and large ones are reported as
// intersecting (the caller refuses the geometry) rather than spending
// seconds on one request.
func ringSelfIntersects(r orb.Ring) bool {
	n := len(r) - 1 // edges; r is closed
	if n < 3 {
		return false
	}
	sw := sweep{r: r, n: n, segs: make([]sweepSeg, n), nodes: make([]treapNode, n)}
	events := make([]sweepEvent, 0, 2*n)
	for i := 0; i < n; i++ {
		p, q := r[i], r[i+1]
		if ptLess(q, p) {
			p, q = q, p
		}
		sw.segs[i] = sweepSeg{p: p, q: q}
		sw.nodes[i] = treapNode{seg: i, prio: rand.Uint32(), l: -1, r: -1}
		events = append(events, sweepEvent{p: p, seg: i}, sweepEvent{p: q, seg: i, right: true})
	}
	slices.SortFunc(events, func(a, b sweepEvent) int {
		if c := ptCmp(a.p, b.p); c != 0 {
			return c
		}
		// Edges starting at a point enter before edges ending there
		// leave, so everything meeting at a vertex is in the status
		// together once and gets compared.
		switch {
		case !a.right && b.right:
			return -1
		case a.right && !b.right:
			return 1
		}
		return 0
	})
	root := -1
	for _, e := range events {
		if !e.right {
			var below, above int
			root, below, above = sw.insert(root, e.seg)
			if sw.hit(e.seg, below) || sw.hit(e.seg, above) {
				return true
			}
			continue
		}
		var below, above int
		var ok bool
		root, below, above, ok = sw.remove(root, e.seg)
		if !ok {
			if n <= 5000 {
				return planar.RingSelfIntersects(r)
			}
			return true
		}
		if sw.hit(below, above) {
			return true
		}
	}
	return false
}

type sweepSeg struct{ p, q orb.Point } // p before q (ptLess)

type sweepEvent struct {
	p     orb.Point
	seg   int
	right bool // the edge leaves at p
}

type treapNode struct {
	seg  int
	prio uint32
	l, r int // children, -1 when none
}

// sweep is the state of one ringSelfIntersects call; nothing is shared.
type sweep struct {
	r     orb.Ring
	n     int
	segs  []sweepSeg
	nodes []treapNode // nodes[i] holds edge i
}

func ptCmp(a, b orb.Point) int {
	switch {
	case a[0] < b[0]:
		return -1
	case a[0] > b[0]:
		return 1
	case a[1] < b[1]:
		return -1
	case a[1] > b[1]:
		return 1
	}
	return 0
}

func ptLess(a, b orb.Point) bool { return ptCmp(a, b) < 0 }

// cmp orders two edges the sweep line crosses at once, bottom to top: the
// edge that starts later is placed by which side of the other it starts on
// (or, starting on it, ends on). Edges that do not cross are totally
// ordered by it; collinear ones fall back to their index (they overlap,
// which hit reports, or continue each other straight).
func (sw *sweep) cmp(a, b int) int {
	if a == b {
		return 0
	}
	A, B := &sw.segs[a], &sw.segs[b]
	if ptCmp(A.p, B.p) <= 0 {
		s := planar.Side(A.p, A.q, B.p)
		if s == 0 {
			s = planar.Side(A.p, A.q, B.q)
		}
		if s > 0 {
			return -1 // B above A
		}
		if s < 0 {
			return 1
		}
	} else {
		s := planar.Side(B.p, B.q, A.p)
		if s == 0 {
			s = planar.Side(B.p, B.q, A.q)
		}
		if s > 0 {
			return 1 // A above B
		}
		if s < 0 {
			return -1
		}
	}
	if a < b {
		return -1
	}
	return 1
}

// hit reports whether edges i and j (either may be -1: none) meet where a
// simple ring's edges may not: anywhere for edges that share no vertex,
// beyond the shared vertex (folding back) for adjacent ones.
func (sw *sweep) hit(i, j int) bool {
	if i < 0 || j < 0 || i == j {
		return false
	}
	if i > j {
		i, j = j, i
	}
	a1, a2, b1, b2 := sw.r[i], sw.r[i+1], sw.r[j], sw.r[j+1]
	closing := i == 0 && j == sw.n-1
	if j != i+1 && !closing {
		_, ok := planar.SegmentIntersection(a1, a2, b1, b2)
		return ok
	}
	if planar.Side(a1, a2, b1) != 0 || planar.Side(a1, a2, b2) != 0 {
		return false
	}
	shared, o1, o2 := a2, a1, b2
	if closing {
		shared, o1, o2 = a1, a2, b1
	}
	return (o1[0]-shared[0])*(o2[0]-shared[0])+(o1[1]-shared[1])*(o2[1]-shared[1]) > 0
}

// split divides the treap t into the edges ordered before key (or, with
// orEqual, not after it) and the rest.
func (sw *sweep) split(t, key int, orEqual bool) (int, int) {
	if t < 0 {
		return -1, -1
	}
	nd := &sw.nodes[t]
	c := sw.cmp(nd.seg, key)
	if c < 0 || (orEqual && c == 0) {
		l, r := sw.split(nd.r, key, orEqual)
		nd.r = l
		return t, r
	}
	l, r := sw.split(nd.l, key, orEqual)
	nd.l = r
	return l, t
}

// merge joins two treaps whose every edge of a is ordered before b's.
func (sw *sweep) merge(a, b int) int {
	if a < 0 {
		return b
	}
	if b < 0 {
		return a
	}
	if sw.nodes[a].prio > sw.nodes[b].prio {
		sw.nodes[a].r = sw.merge(sw.nodes[a].r, b)
		return a
	}
	sw.nodes[b].l = sw.merge(a, sw.nodes[b].l)
	return b
}

func (sw *sweep) last(t int) int {
	if t < 0 {
		return -1
	}
	for sw.nodes[t].r >= 0 {
		t = sw.nodes[t].r
	}
	return sw.nodes[t].seg
}

func (sw *sweep) first(t int) int {
	if t < 0 {
		return -1
	}
	for sw.nodes[t].l >= 0 {
		t = sw.nodes[t].l
	}
	return sw.nodes[t].seg
}

// insert adds edge s; it returns the new root and s's neighbours below and
// above (-1 when none).
func (sw *sweep) insert(root, s int) (newRoot, below, above int) {
	l, r := sw.split(root, s, false)
	below, above = sw.last(l), sw.first(r)
	return sw.merge(sw.merge(l, s), r), below, above
}

// remove takes edge s out; it returns the new root, the neighbours that
// now meet, and false when s was not where the order says it is.
func (sw *sweep) remove(root, s int) (newRoot, below, above int, ok bool) {
	l, r := sw.split(root, s, false)
	m, r2 := sw.split(r, s, true)
	if m != s || sw.nodes[m].l >= 0 || sw.nodes[m].r >= 0 {
		return sw.merge(sw.merge(l, m), r2), -1, -1, false
	}
	below, above = sw.last(l), sw.first(r2) // before merge relinks l and r2
	return sw.merge(l, r2), below, above, true
}
