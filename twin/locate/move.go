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

// get returns c's outline, building and caching it when absent.
func (s *shapes) get(c uint64) *cellShape {
	if sh := s.lookup(c); sh != nil {
		return sh
	}
	sh := newCellShape(c) // cgo; outside the lock
	if sh == nil {
		return nil
	}
	s.mu.Lock()
	if s.m == nil || len(s.m) >= maxShapes {
		s.m = make(map[uint64]*cellShape)
	}
	s.m[c] = sh
	s.mu.Unlock()
	return sh
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
			l.shapes.get(c)
		}
		return cells, place
	}
	if !sh.inside(p) {
		return l.Locate(p)
	}
	return prev.Cells(), l.placeAt(l.idx.Load(), p, c)
}
