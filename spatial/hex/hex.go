// Package hex wraps the H3 hexagonal grid (uber/h3-go v4, cgo) for the twin:
// the res-9 cell of a point, the cover of lines and polygons, cell outlines
// and neighbourhoods.
//
// Cells are plain uint64 H3 indexes at the API edge, the type twin.Feature
// stores in Cells. Invalid input (NaN or out-of-range coordinates, an
// invalid cell, a resolution outside 0..15) never panics: functions return 0,
// nil or an empty value, as documented on each. h3-go v4.1.0 drops the C
// library's error codes, so this package validates before calling it.
//
// All functions are safe for concurrent use.
package hex

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/paulmach/orb"
	"github.com/uber/h3-go/v4"
)

// PointRes is the resolution points are indexed at (CONTRACT §2): res-9
// cells average 0.105 km², edges about 174 m, a city block.
const PointRes = 9

// MaxRes is the finest H3 resolution.
const MaxRes = 15

// MaxCoverCells bounds the size of a polygon cover; Cover returns nil beyond
// it rather than allocate without limit for a continent-sized polygon at a
// fine resolution. A whole 82,000 km² municipality at res 9 is ~800,000.
const MaxCoverCells = 4 << 20

// MaxDiskK bounds Disk's k (a disk of k has 3k(k+1)+1 cells).
const MaxDiskK = 1000

// ErrInvalidCell is returned by ParseCell for a string that is not a valid
// H3 cell index.
var ErrInvalidCell = errors.New("hex: invalid H3 cell")

func validRes(res int) bool { return res >= 0 && res <= MaxRes }

func validPoint(p orb.Point) bool {
	return !math.IsNaN(p[0]) && !math.IsNaN(p[1]) &&
		p[0] >= -180 && p[0] <= 180 && p[1] >= -90 && p[1] <= 90
}

// Valid reports whether c is a valid H3 cell index.
func Valid(c uint64) bool { return h3.Cell(c).IsValid() }

// Res returns the resolution of cell c, or -1 when c is not a valid cell.
func Res(c uint64) int {
	if !Valid(c) {
		return -1
	}
	return h3.Cell(c).Resolution()
}

// PointCell returns the cell at res containing p (lon, lat), or 0 for an
// invalid point or resolution.
func PointCell(p orb.Point, res int) uint64 {
	if !validRes(res) || !validPoint(p) {
		return 0
	}
	// On failure the C library leaves the output at 0 (validated input
	// should not fail); no separate validity call, which costs a cgo trip.
	return uint64(h3.LatLngToCell(h3.NewLatLng(p[1], p[0]), res))
}

// CellCenter returns the centre of c as (lon, lat); the zero point for an
// invalid cell.
func CellCenter(c uint64) orb.Point {
	if !Valid(c) {
		return orb.Point{}
	}
	ll := h3.CellToLatLng(h3.Cell(c))
	return orb.Point{ll.Lng, ll.Lat}
}

// CellPolygon returns the outline of c as a closed counter-clockwise ring
// in lon/lat (6 vertices for hexagons, 5 for pentagons, plus any distortion
// vertices); nil for an invalid cell.
func CellPolygon(c uint64) orb.Polygon {
	if !Valid(c) {
		return nil
	}
	b := h3.CellToBoundary(h3.Cell(c))
	r := make(orb.Ring, 0, len(b)+1)
	for _, ll := range b {
		r = append(r, orb.Point{ll.Lng, ll.Lat})
	}
	if len(r) > 0 {
		r = append(r, r[0])
	}
	return orb.Polygon{r}
}

// Disk returns the cells within grid distance k of c (k = 0 is c itself),
// sorted ascending; nil for an invalid cell or k outside 0..MaxDiskK.
func Disk(c uint64, k int) []uint64 {
	if !Valid(c) || k < 0 || k > MaxDiskK {
		return nil
	}
	cells := h3.GridDisk(h3.Cell(c), k)
	out := make([]uint64, 0, len(cells))
	for _, x := range cells {
		if x != 0 {
			out = append(out, uint64(x))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Parent returns the ancestor of c at res; c itself when res equals c's
// resolution; 0 when c is invalid or res is finer than c's.
func Parent(c uint64, res int) uint64 {
	r := Res(c)
	if r < 0 || !validRes(res) || res > r {
		return 0
	}
	if res == r {
		return c
	}
	return uint64(h3.Cell(c).Parent(res))
}

// ParentOfValid is Parent for a cell the caller knows is valid (one returned
// by PointCell or Cover) and res at most its resolution: pure bit arithmetic
// on the index, no cgo call, for per-message hot paths. It returns 0 when res
// is out of range; the result is meaningless for an invalid c.
func ParentOfValid(c uint64, res int) uint64 {
	const (
		resShift  = 52
		resMask   = uint64(0xf) << resShift
		digitBits = 3
	)
	cur := int((c & resMask) >> resShift)
	if res < 0 || res > cur {
		return 0
	}
	c = c&^resMask | uint64(res)<<resShift
	for r := res + 1; r <= cur; r++ {
		c |= uint64(7) << ((MaxRes - r) * digitBits) // unused digit
	}
	return c
}

// CellString renders c as the lowercase hex string H3 tools use
// (e.g. "8940d1a8a03ffff").
func CellString(c uint64) string { return strconv.FormatUint(c, 16) }

// ParseCell parses the hex form written by CellString and checks validity.
func ParseCell(s string) (uint64, error) {
	c, err := strconv.ParseUint(s, 16, 64)
	if err != nil || !Valid(c) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidCell, s)
	}
	return c, nil
}
