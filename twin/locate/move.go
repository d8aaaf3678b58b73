package locate

import (
	"math"
	"sync"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/twin"
)

var _ twin.MoveEnricher = (*Locator)(nil)

// cellMargin is how far (degrees, ~10 cm) inside its previous cell's outline
// a point must be for LocateMove to keep that cell without asking H3. The
// outline's straight edges in lon/lat differ from H3's true edges (great
// circle arcs between the same vertices) by about a millimetre at res 9,
// so points this far inside are in the cell whatever H3 says about points
// on the edge; closer points take the H3 call. TestMoveMatchesH3 checks it
// against h3-go on random and edge-hugging points.
const cellMargin = 1e-6

// maxShapes bounds the cell outline cache (256 B each): 65,536 res-9
// cells are ~6,900 km², the whole of a city's built-up area. When full it
// is dropped and refilled, so memory stays bounded for roaming fleets.
const maxShapes = 1 << 16

// cellShape is one res-9 cell's outline as inward edge half-planes:
// p is inside with margin m when nx*p.x + ny*p.y >= d + m for every edge.
// The edges are in the struct, not behind a slice of their own: every
// moving object's sample reads its cell's outline, and the second pointer
// to follow (a cache miss at thousands of cells) made inside ~4 % of the
// server's CPU under moving vehicles (issue 16 goal 1).
type cellShape struct {
	n     int
	edges [maxCellEdges]halfPlane
	// place is the place of every point of the cell under idx, when
	// uniform (no street or district boundary crosses the cell): a move
	// that stays in the cell then needs no region lookup at all. Most
	// cells are such cells, and the lookup (bucket, path, the shared
	// place: cache misses in a busy server) was ~45 % of LocateMove at 20k
	// moves/s (issue 16 goal 6). A shape built under another index (the
	// regions or grids were reloaded since) is rebuilt on its next use.
	idx     *index
	place   *twin.Place
	uniform bool
}

// maxCellEdges is the most vertices an H3 cell's boundary has (H3's
// MAX_CELL_BNDRY_VERTS: a hexagon or pentagon with distortion vertices
// where it crosses an icosahedron edge).
const maxCellEdges = 10

type halfPlane struct{ nx, ny, d float64 }

func newCellShape(c uint64) *cellShape {
	poly := hex.CellPolygon(c)
	if len(poly) == 0 || len(poly[0]) < 4 || len(poly[0])-1 > maxCellEdges {
		return nil
	}
	r := poly[0]
	n := len(r) - 1 // closed ring
	area := 0.0
	for i := 0; i < n; i++ {
		area += r[i][0]*r[i+1][1] - r[i+1][0]*r[i][1]
	}
	sign := 1.0
	if area < 0 {
		sign = -1
	}
	s := &cellShape{}
	for i := 0; i < n; i++ {
		a, b := r[i], r[i+1]
		ex, ey := b[0]-a[0], b[1]-a[1]
		l := math.Hypot(ex, ey)
		if l == 0 {
			continue
		}
		// Inward unit normal of a counter-clockwise ring: (-ey, ex).
		nx, ny := -ey/l*sign, ex/l*sign
		s.edges[s.n] = halfPlane{nx, ny, nx*a[0] + ny*a[1]}
		s.n++
	}
	return s
}

// inside reports whether p is inside the outline by at least cellMargin.
func (s *cellShape) inside(p orb.Point) bool {
	for _, e := range s.edges[:s.n] {
		if e.nx*p[0]+e.ny*p[1] < e.d+cellMargin {
			return false
		}
	}
	return true
}

// shapes caches cell outlines for LocateMove. Safe for concurrent use.
// A nil outline is never stored.
type shapes struct {
	mu sync.RWMutex
	m  map[uint64]*cellShape
}

// lookup returns the cached outline of c, or nil.
func (s *shapes) lookup(c uint64) *cellShape {
	s.mu.RLock()
	sh := s.m[c]
	s.mu.RUnlock()
	return sh
}

// get returns c's outline, building and caching it when absent, with the
// cell's uniform place under idx (see cellShape.place).
func (s *shapes) get(c uint64, idx *index, place *twin.Place, uniform bool) *cellShape {
	if sh := s.lookup(c); sh != nil {
		return sh
	}
	sh := newCellShape(c) // cgo; outside the lock
	if sh == nil {
		return nil
	}
	sh.idx, sh.place, sh.uniform = idx, place, uniform
	s.put(c, sh)
	return sh
}

// put caches sh as c's outline.
func (s *shapes) put(c uint64, sh *cellShape) {
	s.mu.Lock()
	if s.m == nil || len(s.m) >= maxShapes {
		s.m = make(map[uint64]*cellShape)
	}
	s.m[c] = sh
	s.mu.Unlock()
}

// LocateMove is Locate for a point object that moved from prev (its state
// before, possibly nil or stale): when p is still well inside prev's res-9
// cell it keeps that cell (and prev's cells, which are immutable)
// instead of asking H3 (~1 µs of cgo, the largest cost of applying a
// telemetry sample); region and grid are always looked up for p. Objects
// move a few metres between samples and a cell is ~350 m across, so most
// samples take the fast path.
func (l *Locator) LocateMove(p orb.Point, prev *twin.Feature) (cells []uint64, place *twin.Place) {
	if prev == nil || len(prev.Cells()) != 1 {
		return l.Locate(p)
	}
	if _, ok := prev.Geometry.(orb.Point); !ok {
		return l.Locate(p)
	}
	c := prev.Cell()
	sh := l.shapes.lookup(c)
	if sh == nil {
		// Outlines are built (one more cgo call) only for cells an object
		// was seen staying in, so objects that jump far between samples
		// cost no more than Locate.
		cells, place = l.Locate(p)
		if len(cells) == 1 && cells[0] == c {
			idx := l.idx.Load()
			place, uniform := l.uniformPlace(idx, c)
			l.shapes.get(c, idx, place, uniform)
		}
		return cells, place
	}
	if !sh.inside(p) {
		return l.Locate(p)
	}
	idx := l.idx.Load()
	if sh.idx == idx {
		if sh.uniform {
			return prev.Cells(), sh.place
		}
		return prev.Cells(), l.placeAt(idx, p, c)
	}
	// Built under an index since replaced: the same outline, this index's
	// place (a copy; cached shapes are never modified).
	fresh := *sh
	fresh.idx = idx
	fresh.place, fresh.uniform = l.uniformPlace(idx, c)
	l.shapes.put(c, &fresh)
	return prev.Cells(), l.placeAt(idx, p, c)
}

// uniformPlace is the place every point of res-9 cell c has under idx;
// ok is false when points of c may differ (a street's or district's
// boundary crosses c, or only the city polygon decides it). Not every
// uniform cell is inside a street: a point in no region and no grid has
// a nil place, uniformly.
func (l *Locator) uniformPlace(idx *index, c uint64) (place *twin.Place, ok bool) {
	path, ok := idx.uniformPath(c)
	if !ok {
		return nil, false
	}
	return l.places.Get(path, idx.grids[c]), true
}

// uniformPath is the region path of every point of res-9 cell c, when the
// bucket index answers c without a polygon test at both levels (see path):
// then any point's path is the cell's.
func (idx *index) uniformPath(c uint64) ([]string, bool) {
	streets, ok1 := idx.streets.(*buckets)
	districts, ok2 := idx.districts.(*buckets)
	if !ok1 || !ok2 {
		return nil, false
	}
	street, ok1 := streets.whole(c)
	district, ok2 := districts.whole(c)
	if !ok1 || !ok2 || (street == nil && district == nil && idx.hasCity) {
		return nil, false
	}
	return idx.path(hex.CellCenter(c), c), true
}
