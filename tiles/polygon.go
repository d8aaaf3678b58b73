package tiles

import (
	"math"
	"slices"

	"github.com/paulmach/orb"
)

// Polygons in tiles must be valid (MVT 2.1 §4.3.4.4: simple rings, no
// self-intersection or self-tangency, holes inside their exterior). Three
// steps can break a valid source polygon: clipping at the buffered tile
// edge (a Sutherland-Hodgman style clip leaves zero-width bridges along
// the edge where a polygon leaves and comes back), Douglas-Peucker
// simplification (a shortcut can cross another edge) and rounding to the
// integer grid. So polygons are clipped on the integer grid by walking
// each ring's pieces inside the tile and joining them along the tile edge
// (Weiler-Atherton for a rectangle, which never makes bridges), tidied
// (repeated points, spikes, collapsed rings, winding), and then checked
// exactly; a polygon that simplification broke is redone unsimplified, and
// one still invalid (rounding) loses its smallest offending rings.

// The clip box. Points are clipped against a box whose edges lie half a
// unit inside the buffered tile, so that no integer vertex ever lies on
// the box and no edge runs along it; crossings are then snapped outwards
// to the buffered tile's edge, where no vertex inside the box can lie.
const (
	clipLo = -Buffer
	clipHi = Extent + Buffer
	boxLo  = clipLo + 0.5
	boxHi  = clipHi - 0.5
	boxW   = boxHi - boxLo
)

// corners of the snapped box in the order of the perimeter position (the
// positive, interior-on-the-left direction of the surveyor's formula).
var boxCorners = [4]orb.Point{{clipLo, clipLo}, {clipHi, clipLo}, {clipHi, clipHi}, {clipLo, clipHi}}

// chain is a piece of a ring inside the box, from where it enters to where
// it leaves: clipper.chainPts[start:end]; in and out are perimeter
// positions of its ends.
type chain struct {
	start, end int32
	in, out    float64
	next       int
	done       bool
}

// clipper is clipPolygon's scratch, kept in the writer and reused for
// every clipped polygon: the copied rings, the chains and their points,
// the joined rings and the result's slices. Allocated per clipped
// polygon, they were about a dozen objects per building crossing a tile
// edge (a fifth of a centre z15 tile's allocation besides its gzip form,
// and the GC and page faults that come with it). Not safe for concurrent
// use.
type clipper struct {
	in       []orb.Point   // clipPolygons' copy of the shape's points
	src      [][]orb.Point // clipPolygons' rings, slices of in
	ends     []int         // where each of clipPolygons' polygons ends in src
	rings    [][]orb.Point // the oriented rings of the polygon clipped
	inside   [][]orb.Point // holes wholly inside the box
	chains   []chain
	chainPts []orb.Point
	order    []int
	ringPts  []orb.Point // the joined rings
	polys    [][][]orb.Point
}

// clipPolygon clips one polygon with a clipper of its own (tests).
func clipPolygon(rings [][]orb.Point) [][][]orb.Point {
	var c clipper
	return c.clip(rings)
}

// addPoly appends a polygon of the one ring r to polys, reusing the slice
// of rings a previous clip left in its place.
func addPoly(polys [][][]orb.Point, r []orb.Point) [][][]orb.Point {
	if n := len(polys); n < cap(polys) {
		polys = polys[:n+1]
		polys[n] = append(polys[n][:0], r)
		return polys
	}
	return append(polys, [][]orb.Point{r})
}

// clip clips one polygon (rings[0] the exterior, then holes; integer
// points, rings open or closed, any winding; modified in place) to the
// buffered tile. It returns polygons, each exterior ring first, rings
// open, exteriors positive and holes negative (surveyor's formula in tile
// units). The result and its rings are c's: valid until c's next clip.
func (c *clipper) clip(rings [][]orb.Point) [][][]orb.Point {
	oriented := c.rings[:0]
	defer func() { c.rings = oriented[:0] }()
	for i, r := range rings {
		r = openRing(r)
		if len(r) < 3 {
			if i == 0 {
				return nil
			}
			continue
		}
		a := surveyor(r)
		if a == 0 {
			if i == 0 {
				return nil
			}
			continue
		}
		if (i == 0) != (a > 0) {
			reverse(r)
		}
		oriented = append(oriented, r)
	}
	if len(oriented) == 0 {
		return nil
	}
	polys := c.polys[:0]
	defer func() { c.polys = polys[:0] }()
	if allInside(oriented[0]) {
		// The exterior is inside the box, and so are its holes.
		polys = addPoly(polys, oriented[0])
		polys[0] = append(polys[0], oriented[1:]...)
		return polys
	}
	chains, pts := c.chains[:0], c.chainPts[:0]
	inside := c.inside[:0]
	defer func() { c.chains, c.chainPts, c.inside = chains[:0], pts[:0], inside[:0] }()
	for i, r := range oriented {
		n0 := len(chains)
		chains, pts = ringChains(r, chains, pts)
		if len(chains) == n0 && i > 0 && allInside(r) {
			inside = append(inside, r)
		}
	}
	if len(chains) == 0 {
		// Nothing crosses the box: it is wholly inside the polygon or
		// wholly outside.
		if !boxInside(oriented) {
			return nil
		}
		polys = addPoly(polys, boxCorners[:])
		polys[0] = append(polys[0], inside...)
		return polys
	}
	// Join every exit to the next entry along the box edge in the
	// positive direction.
	order := c.order[:0]
	for i := range chains {
		order = append(order, i)
	}
	c.order = order
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case chains[a].in < chains[b].in:
			return -1
		case chains[a].in > chains[b].in:
			return 1
		}
		return 0
	})
	for i := range chains {
		out := chains[i].out
		k, _ := slices.BinarySearchFunc(order, out, func(j int, t float64) int {
			if chains[j].in <= t {
				return -1
			}
			return 1
		})
		chains[i].next = order[k%len(order)]
	}
	joined := c.ringPts[:0]
	defer func() { c.ringPts = joined[:0] }()
	for i := range chains {
		if chains[i].done {
			continue
		}
		start := len(joined)
		for j := i; !chains[j].done; {
			ch := &chains[j]
			ch.done = true
			joined = append(joined, pts[ch.start:ch.end]...)
			joined = appendCorners(joined, ch.out, chains[ch.next].in)
			j = ch.next
		}
		polys = addPoly(polys, joined[start:len(joined):len(joined)])
	}
	// A piece can never cover more than the exterior's bounds within the
	// box (the clip of P lies in P, which lies in its bounds). Walking a
	// self-crossing ring's inverted loop the wrong way round the box makes
	// exactly that: the whole tile frame with a notch. Such a piece is
	// dropped, as the reference clip drops it.
	lim := boundsArea(oriented[0])
	polys = slices.DeleteFunc(polys, func(p [][]orb.Point) bool { return surveyor(p[0]) > 2*lim }) // surveyor is twice the area
	// Holes wholly inside go to the piece that contains them.
	for _, h := range inside {
		for i := range polys {
			if pointInRing(h[0], polys[i][0]) {
				polys[i] = append(polys[i], h)
				break
			}
		}
	}
	return polys
}

// boundsArea is the area of r's bounds clamped to the snapped box.
func boundsArea(r []orb.Point) float64 {
	lo, hi := orb.Point{clipHi, clipHi}, orb.Point{clipLo, clipLo}
	for _, q := range r {
		lo = orb.Point{min(lo[0], max(q[0], clipLo)), min(lo[1], max(q[1], clipLo))}
		hi = orb.Point{max(hi[0], min(q[0], clipHi)), max(hi[1], min(q[1], clipHi))}
	}
	return max(0, hi[0]-lo[0]) * max(0, hi[1]-lo[1])
}

// openRing drops the closing point and consecutive repeats, in place.
func openRing(r []orb.Point) []orb.Point {
	out := r[:0]
	for _, q := range r {
		if len(out) > 0 && out[len(out)-1] == q {
			continue
		}
		out = append(out, q)
	}
	for len(out) > 1 && out[0] == out[len(out)-1] {
		out = out[:len(out)-1]
	}
	return out
}

func strictlyInside(q orb.Point) bool {
	return q[0] > boxLo && q[0] < boxHi && q[1] > boxLo && q[1] < boxHi
}

func allInside(r []orb.Point) bool {
	for _, q := range r {
		if !strictlyInside(q) {
			return false
		}
	}
	return true
}

// ringChains appends the pieces of ring r (open, at least one vertex
// outside the box, or none crossing it) inside the box to chains, and
// their points to pts (each chain's points follow the previous chain's).
func ringChains(r []orb.Point, chains []chain, pts []orb.Point) ([]chain, []orb.Point) {
	s := -1
	for i, q := range r {
		if !strictlyInside(q) {
			s = i
			break
		}
	}
	if s < 0 {
		return chains, pts
	}
	n := len(r)
	cur := -1
	for k := 0; k < n; k++ {
		a, b := r[(s+k)%n], r[(s+k+1)%n]
		side0, side1, ok := clipSegment(a, b)
		if !ok {
			continue
		}
		if side0 >= 0 {
			pos, p := boxPoint(a, b, side0)
			chains = append(chains, chain{start: int32(len(pts)), in: pos})
			pts = append(pts, p)
			cur = len(chains) - 1
		}
		if cur < 0 {
			continue // cannot happen: the walk starts outside
		}
		if side1 >= 0 {
			pos, p := boxPoint(a, b, side1)
			pts = append(pts, p)
			chains[cur].end, chains[cur].out = int32(len(pts)), pos
			cur = -1
		} else {
			pts = append(pts, b)
		}
	}
	return chains, pts
}

// Sides of the box, numbered in perimeter order.
const (
	sideBottom = iota // y = boxLo, perimeter runs +x
	sideRight         // x = boxHi, +y
	sideTop           // y = boxHi, -x
	sideLeft          // x = boxLo, -y
)

// clipSegment is Liang-Barsky: whether segment a-b has a part of positive
// length inside the box, and the sides where that part enters and leaves
// (-1 where an end of the segment is inside).
func clipSegment(a, b orb.Point) (side0, side1 int, ok bool) {
	dx, dy := b[0]-a[0], b[1]-a[1]
	t0, t1 := 0.0, 1.0
	side0, side1 = -1, -1
	for _, c := range [4]struct {
		p, q float64
		side int
	}{
		{-dx, a[0] - boxLo, sideLeft},
		{dx, boxHi - a[0], sideRight},
		{-dy, a[1] - boxLo, sideBottom},
		{dy, boxHi - a[1], sideTop},
	} {
		if c.p == 0 {
			if c.q < 0 {
				return -1, -1, false
			}
			continue
		}
		r := c.q / c.p
		if c.p < 0 {
			if r > t1 {
				return -1, -1, false
			}
			if r > t0 {
				t0, side0 = r, c.side
			}
		} else {
			if r < t0 {
				return -1, -1, false
			}
			if r < t1 {
				t1, side1 = r, c.side
			}
		}
	}
	return side0, side1, t0 < t1
}

// boxPoint is where segment a-b crosses the given side: its perimeter
// position and the crossing snapped to the integer grid on the buffered
// tile's edge.
func boxPoint(a, b orb.Point, side int) (float64, orb.Point) {
	dx, dy := b[0]-a[0], b[1]-a[1]
	clamp := func(v float64) float64 { return math.Max(boxLo, math.Min(boxHi, v)) }
	snap := func(v float64) float64 { return math.Max(clipLo, math.Min(clipHi, math.Round(v))) }
	switch side {
	case sideBottom:
		x := clamp(a[0] + (boxLo-a[1])*dx/dy)
		return x - boxLo, orb.Point{snap(x), clipLo}
	case sideRight:
		y := clamp(a[1] + (boxHi-a[0])*dy/dx)
		return boxW + y - boxLo, orb.Point{clipHi, snap(y)}
	case sideTop:
		x := clamp(a[0] + (boxHi-a[1])*dx/dy)
		return 2*boxW + boxHi - x, orb.Point{snap(x), clipHi}
	default:
		y := clamp(a[1] + (boxLo-a[0])*dy/dx)
		return 3*boxW + boxHi - y, orb.Point{clipLo, snap(y)}
	}
}

// appendCorners appends the box corners passed going from perimeter
// position from to position to in the positive direction.
func appendCorners(ring []orb.Point, from, to float64) []orb.Point {
	const per = 4 * boxW
	d := math.Mod(to-from+per, per)
	for k := 1; k <= 4; k++ {
		// Corners after from, in order: the first is at the next multiple
		// of boxW.
		c := (math.Floor(from/boxW) + float64(k)) * boxW
		if c-from >= d {
			break
		}
		ring = append(ring, boxCorners[int(c/boxW)%4])
	}
	return ring
}

// boxInside reports whether the box, crossed by no ring of the polygon,
// lies inside it.
func boxInside(rings [][]orb.Point) bool {
	// A point inside the box on no edge (integer edges can pass through
	// points of any fraction, so try a few).
	for _, p := range [...]orb.Point{{2048.25, 2048.125}, {1000.375, 3000.0625}, {-10.3125, 17.1875}} {
		on := false
		for _, r := range rings {
			if onRing(p, r) {
				on = true
				break
			}
		}
		if on {
			continue
		}
		in := false
		for _, r := range rings {
			if pointInRing(p, r) {
				in = !in
			}
		}
		return in
	}
	return false
}

// pointInRing is the even-odd crossing test of p against the open ring r.
func pointInRing(p orb.Point, r []orb.Point) bool {
	in := false
	for i, j := 0, len(r)-1; i < len(r); j, i = i, i+1 {
		a, b := r[j], r[i]
		if (a[1] > p[1]) != (b[1] > p[1]) {
			x := a[0] + (p[1]-a[1])*(b[0]-a[0])/(b[1]-a[1])
			if p[0] < x {
				in = !in
			}
		}
	}
	return in
}

func onRing(p orb.Point, r []orb.Point) bool {
	for i, j := 0, len(r)-1; i < len(r); j, i = i, i+1 {
		if cross(r[j], r[i], p) == 0 && onSegment(r[j], r[i], p) {
			return true
		}
	}
	return false
}

// cross is the z of (b-a) x (c-a): exact for points of the tile grid.
func cross(a, b, c orb.Point) float64 {
	return (b[0]-a[0])*(c[1]-a[1]) - (b[1]-a[1])*(c[0]-a[0])
}

// onSegment: c, collinear with a-b, lies within its bounding box.
func onSegment(a, b, c orb.Point) bool {
	return math.Min(a[0], b[0]) <= c[0] && c[0] <= math.Max(a[0], b[0]) &&
		math.Min(a[1], b[1]) <= c[1] && c[1] <= math.Max(a[1], b[1])
}

// segmentsMeet reports whether closed segments a-b and c-d share a point.
func segmentsMeet(a, b, c, d orb.Point) bool {
	d1, d2 := cross(c, d, a), cross(c, d, b)
	d3, d4 := cross(a, b, c), cross(a, b, d)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return d1 == 0 && onSegment(c, d, a) || d2 == 0 && onSegment(c, d, b) ||
		d3 == 0 && onSegment(a, b, c) || d4 == 0 && onSegment(a, b, d)
}

// seg is one edge of a tidied polygon shape, for the validity check.
type seg struct {
	a, b       orb.Point
	minX, maxX float64
	ring, i, n int32 // ring (part) index, edge index in it, ring length
}

// invalidPair checks w.sh (a tidied polygon shape: open rings, exteriors
// flagged) exactly and returns two parts that make it invalid, or -1, -1:
// two edges that meet anywhere other than the shared vertex of
// neighbours in one ring, neighbours folding back on each other, a hole
// outside its exterior, or an exterior inside another polygon. It is
// stricter than OGC validity in one way: a hole may not touch its
// exterior even at a single point.
func (w *writer) invalidPair() (int, int) {
	sh := &w.sh
	segs := w.segs[:0]
	start := int32(0)
	for r, p := range sh.parts {
		ring := sh.pts[start:p.end]
		n := int32(len(ring))
		for i := int32(0); i < n; i++ {
			a, b := ring[i], ring[(i+1)%n]
			segs = append(segs, seg{a: a, b: b, minX: math.Min(a[0], b[0]), maxX: math.Max(a[0], b[0]),
				ring: int32(r), i: i, n: n})
		}
		start = p.end
	}
	w.segs = segs
	slices.SortFunc(segs, func(x, y seg) int {
		switch {
		case x.minX < y.minX:
			return -1
		case x.minX > y.minX:
			return 1
		}
		return 0
	})
	for i := range segs {
		s := &segs[i]
		sMinY, sMaxY := math.Min(s.a[1], s.b[1]), math.Max(s.a[1], s.b[1])
		for j := i + 1; j < len(segs) && segs[j].minX <= s.maxX; j++ {
			t := &segs[j]
			if math.Max(t.a[1], t.b[1]) < sMinY || math.Min(t.a[1], t.b[1]) > sMaxY {
				continue
			}
			if s.ring == t.ring {
				// Neighbours in a ring share their vertex and nothing
				// else: they must not fold back along each other.
				var shared, x, y orb.Point // x-shared-y
				nb := true
				switch {
				case (s.i+1)%s.n == t.i:
					shared, x, y = s.b, s.a, t.b
				case (t.i+1)%t.n == s.i:
					shared, x, y = t.b, t.a, s.b
				default:
					nb = false
				}
				if nb {
					if cross(shared, x, y) == 0 && (x[0]-shared[0])*(y[0]-shared[0])+(x[1]-shared[1])*(y[1]-shared[1]) > 0 {
						return int(s.ring), int(t.ring)
					}
					continue
				}
			}
			if segmentsMeet(s.a, s.b, t.a, t.b) {
				return int(s.ring), int(t.ring)
			}
		}
	}
	// No edges meet: check nesting with one vertex per ring.
	start = 0
	shell := -1
	var shellPts []orb.Point
	for r, p := range sh.parts {
		ring := sh.pts[start:p.end]
		start = p.end
		if p.outer {
			shell, shellPts = r, ring
			continue
		}
		if shell < 0 || !pointInRing(ring[0], shellPts) {
			return r, max(shell, r)
		}
	}
	if o := w.nestedShells(); o >= 0 {
		return o, o
	}
	return -1, -1
}

// nestedShells returns an exterior ring lying inside another polygon of
// w.sh, or -1.
func (w *writer) nestedShells() int {
	sh := &w.sh
	polys := w.polys[:0]
	start := int32(0)
	for r, p := range sh.parts {
		ring := sh.pts[start:p.end]
		start = p.end
		if p.outer {
			b := orb.Bound{Min: ring[0], Max: ring[0]}
			for _, q := range ring {
				b = b.Extend(q)
			}
			polys = append(polys, polyRef{first: r, last: r, b: b})
		} else if len(polys) > 0 {
			polys[len(polys)-1].last = r
		}
	}
	w.polys = polys
	if len(polys) < 2 {
		return -1
	}
	ringPts := func(r int) []orb.Point {
		s := int32(0)
		if r > 0 {
			s = sh.parts[r-1].end
		}
		return sh.pts[s:sh.parts[r].end]
	}
	for i, a := range polys {
		q := ringPts(a.first)[0]
		for j, b := range polys {
			if i == j || !b.b.Contains(q) || !pointInRing(q, ringPts(b.first)) {
				continue
			}
			inHole := false
			for h := b.first + 1; h <= b.last; h++ {
				if pointInRing(q, ringPts(h)) {
					inHole = true
					break
				}
			}
			if !inHole {
				return a.first
			}
		}
	}
	return -1
}

// polyRef is one polygon of a shape: its parts first..last and the bound
// of its exterior.
type polyRef struct {
	first, last int
	b           orb.Bound
}

// dropPart removes part r from w.sh, and its holes when r is an exterior.
func (w *writer) dropPart(r int) {
	sh := &w.sh
	end := r + 1
	if sh.parts[r].outer {
		for end < len(sh.parts) && !sh.parts[end].outer {
			end++
		}
	}
	s := int32(0)
	if r > 0 {
		s = sh.parts[r-1].end
	}
	e := sh.parts[end-1].end
	n := e - s
	sh.pts = append(sh.pts[:s], sh.pts[e:]...)
	parts := append(sh.parts[:r], sh.parts[end:]...)
	for i := r; i < len(parts); i++ {
		parts[i].end -= n
	}
	sh.parts = parts
}

// partArea is the absolute surveyor's area of part r of w.sh.
func (w *writer) partArea(r int) float64 {
	sh := &w.sh
	s := int32(0)
	if r > 0 {
		s = sh.parts[r-1].end
	}
	return math.Abs(surveyor(sh.pts[s:sh.parts[r].end]))
}

// repair drops the smaller part of each invalid pair until w.sh is valid,
// reporting whether anything is left.
func (w *writer) repair() bool {
	for len(w.sh.parts) > 0 {
		a, b := w.invalidPair()
		if a < 0 {
			return true
		}
		if w.partArea(b) < w.partArea(a) {
			a = b
		}
		w.dropPart(a)
		if len(w.sh.parts) > 0 && !w.sh.parts[0].outer {
			w.dropPart(0) // holes left without their exterior
		}
	}
	return false
}

// clipPolygons clips the polygon shape w.sh to the buffered tile.
func (w *writer) clipPolygons() bool {
	sh := &w.sh
	c := &w.clip
	// The rings are copied: clipped parts replace them in sh.
	c.in = append(c.in[:0], sh.pts...)
	src, ends := c.src[:0], c.ends[:0]
	defer func() { clear(src); c.src, c.ends = src[:0], ends[:0] }()
	start := int32(0)
	for i, p := range sh.parts {
		// A polygon is an exterior and the holes up to the next exterior
		// (leading holes with no exterior make one of their own).
		if i > 0 && p.outer {
			ends = append(ends, len(src))
		}
		src = append(src, c.in[start:p.end:p.end])
		start = p.end
	}
	ends = append(ends, len(src))
	sh.reset(kindPolygon)
	i := 0
	for _, j := range ends {
		for _, out := range c.clip(src[i:j]) {
			for k, r := range out {
				sh.addPart(r, k == 0)
			}
		}
		i = j
	}
	return len(sh.parts) > 0
}
