package locate

import (
	"cmp"
	"slices"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/twin"
)

// MakeGrids builds the default grids (CONTRACT §2): the res-9 H3 cells
// covering each street polygon, each assigned to the street that contains
// the cell's centre (cells whose centre is in no street are skipped, so the
// grids tile the streets without overlap). A grid is named
// "{streetCode}-{h3hex}" and has props code, street and an empty workers
// list; its geometry is the cell outline.
//
// Because a grid is exactly one cell, MakeGrids also fills Cells, Region
// (city, the street's parent district, the street) and Grid, which the twin
// keeps instead of re-locating (a cell outline's cover would also list the
// six neighbours its boundary touches). The city code is the street's own
// Region[0] when set, else DefaultCity.
//
// streets are regions-layer features; those whose level is not street, or
// without code or polygon geometry, are ignored. The result is sorted by
// street code, then cell.
func MakeGrids(streets []*twin.Feature) []*twin.Feature {
	var rs []*region
	for _, f := range streets {
		if r := newRegion(f); r != nil && r.level == LevelStreet {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b *region) int { return cmp.Compare(a.code, b.code) })
	find := newRTreeFinder(rs)
	type grid struct {
		cell   uint64
		street *region
	}
	seen := map[uint64]bool{}
	var gs []grid
	for _, r := range rs {
		for _, c := range hex.Cover(r.geom, hex.PointRes) {
			if seen[c] {
				continue
			}
			seen[c] = true
			if s := find.find(hex.CellCenter(c), c); s != nil {
				gs = append(gs, grid{c, s})
			}
		}
	}
	slices.SortFunc(gs, func(a, b grid) int {
		if c := cmp.Compare(a.street.code, b.street.code); c != 0 {
			return c
		}
		switch {
		case a.cell < b.cell:
			return -1
		case a.cell > b.cell:
			return 1
		}
		return 0
	})
	out := make([]*twin.Feature, 0, len(gs))
	for _, g := range gs {
		code := g.street.code + "-" + hex.CellString(g.cell)
		city := DefaultCity
		if r := g.street.f.Region(); len(r) > 0 {
			city = r[0]
		}
		region := []string{city}
		if g.street.parent != "" {
			region = append(region, g.street.parent)
		}
		region = append(region, g.street.code)
		f := &twin.Feature{
			ID:       twin.NewID(twin.Grids, code),
			Geometry: hex.CellPolygon(g.cell),
			Props:    twin.NewProps(map[string]any{"code": code, "street": g.street.code, "workers": []any{}}),
			Place:    twin.NewPlace(region, code),
		}
		f.SetCell(g.cell)
		out = append(out, f)
	}
	return out
}
