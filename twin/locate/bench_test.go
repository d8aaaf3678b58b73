package locate

import (
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
)

// benchLocate measures Locate(point) on the synthetic city (8 districts x
// 20 streets, 48 vertices per street), with the default grids loaded.
func benchLocate(b *testing.B, l *Locator) {
	regions, streets := syntheticCity()
	l.Reset(regions, MakeGrids(streets))
	pts := randomPoints(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = l.Locate(pts[i%len(pts)])
	}
}

func BenchmarkLocatePointBuckets(b *testing.B) { benchLocate(b, New()) }
func BenchmarkLocatePointRTree(b *testing.B)   { benchLocate(b, newRTree()) }

// The candidate lookups alone (street level), given the point's res-9 cell
// as Locate has it.
func benchFind(b *testing.B, mk func([]*region) finder) {
	regions, _ := syntheticCity()
	var rs []*region
	for _, f := range regions {
		if r := newRegion(f); r != nil && r.level == LevelStreet {
			rs = append(rs, r)
		}
	}
	f := mk(rs)
	pts := randomPoints(4096)
	cells := make([]uint64, len(pts))
	for i, p := range pts {
		cells[i] = hex.PointCell(p, hex.PointRes)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(pts)
		_ = f.find(pts[j], cells[j])
	}
}

func BenchmarkFindStreetBuckets(b *testing.B) {
	benchFind(b, func(rs []*region) finder { return newBuckets(rs) })
}

func BenchmarkFindStreetRTree(b *testing.B) {
	benchFind(b, func(rs []*region) finder { return newRTreeFinder(rs) })
}

func BenchmarkLocateBuilding(b *testing.B) {
	regions, _ := syntheticCity()
	l := New()
	l.Reset(regions, nil)
	bld := orb.Polygon{{{106.5775, 29.5577}, {106.5778, 29.5577}, {106.5778, 29.5579}, {106.5775, 29.5579}, {106.5775, 29.5577}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _, _ = locate3(l, bld)
	}
}

func BenchmarkReset(b *testing.B) {
	regions, streets := syntheticCity()
	grids := MakeGrids(streets)
	l := New()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Reset(regions, grids)
	}
}

func BenchmarkMakeGrids(b *testing.B) {
	_, streets := syntheticCity()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = MakeGrids(streets)
	}
}
