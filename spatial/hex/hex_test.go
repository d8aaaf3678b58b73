package hex

import (
	"math"
	"slices"
	"testing"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
	"github.com/uber/h3-go/v4"
)

var jiefangbei = orb.Point{106.5775, 29.5577}

func TestPointCell(t *testing.T) {
	c := PointCell(jiefangbei, PointRes)
	if !Valid(c) || Res(c) != 9 {
		t.Fatalf("cell %x res %d", c, Res(c))
	}
	// The point is inside its cell's outline and near its centre.
	poly := CellPolygon(c)
	if len(poly) != 1 || len(poly[0]) != 7 || poly[0][0] != poly[0][6] {
		t.Fatalf("outline %v", poly)
	}
	if !planar.PolygonContains(poly, jiefangbei) {
		t.Error("point outside its cell outline")
	}
	if !planar.PolygonContains(poly, CellCenter(c)) {
		t.Error("centre outside outline")
	}
	if PointCell(CellCenter(c), 9) != c {
		t.Error("centre maps to another cell")
	}
	s := CellString(c)
	if s != h3.Cell(c).String() {
		t.Errorf("CellString %q, h3 says %q", s, h3.Cell(c).String())
	}
	if back, err := ParseCell(s); err != nil || back != c {
		t.Errorf("ParseCell(%q) = %x, %v", s, back, err)
	}
	for _, bad := range []string{"", "zz", "0", "ffffffffffffffff"} {
		if _, err := ParseCell(bad); err == nil {
			t.Errorf("ParseCell(%q) accepted", bad)
		}
	}
}

func TestInvalidInputsNoPanic(t *testing.T) {
	for _, p := range []orb.Point{{math.NaN(), 29}, {106, math.Inf(1)}, {200, 0}, {0, -91}} {
		if c := PointCell(p, 9); c != 0 {
			t.Errorf("PointCell(%v) = %x", p, c)
		}
		if cv := Cover(orb.LineString{jiefangbei, p}, 9); cv != nil {
			t.Errorf("Cover with %v = %v", p, cv)
		}
	}
	if PointCell(jiefangbei, 16) != 0 || PointCell(jiefangbei, -1) != 0 {
		t.Error("bad res accepted")
	}
	if CellPolygon(12345) != nil || CellCenter(0) != (orb.Point{}) || Disk(0, 1) != nil || Parent(7, 3) != 0 || Res(0) != -1 {
		t.Error("invalid cell accepted")
	}
	c := PointCell(jiefangbei, 9)
	if Disk(c, -1) != nil || Parent(c, 10) != 0 {
		t.Error("bad k or res accepted")
	}
	// Degenerate polygons.
	for _, g := range []orb.Geometry{nil, orb.Polygon{}, orb.Polygon{{}}, orb.Polygon{{jiefangbei, jiefangbei}}, orb.LineString{}, orb.Collection{}} {
		_ = Cover(g, 9)
	}
	// A world-sized polygon at res 15 is refused, not allocated.
	world := orb.Polygon{{{-170, -80}, {170, -80}, {170, 80}, {-170, 80}, {-170, -80}}}
	if Cover(world, 15) != nil {
		t.Error("giant cover not refused")
	}
}

func TestDiskParent(t *testing.T) {
	c := PointCell(jiefangbei, 9)
	d := Disk(c, 1)
	if len(d) != 7 || !slices.Contains(d, c) || !slices.IsSorted(d) {
		t.Fatalf("disk %v", d)
	}
	for _, x := range d {
		if x != c && !h3.Cell(c).IsNeighbor(h3.Cell(x)) {
			t.Errorf("%x not a neighbour", x)
		}
	}
	if len(Disk(c, 2)) != 19 {
		t.Error("disk 2 size")
	}
	p := Parent(c, 7)
	if Res(p) != 7 || PointCell(jiefangbei, 7) != p || Parent(c, 9) != c {
		t.Errorf("parent %x", p)
	}
}

// connected reports whether cells form one connected set under adjacency.
func connected(cells []uint64) bool {
	if len(cells) == 0 {
		return false
	}
	seen := map[uint64]bool{cells[0]: true}
	set := map[uint64]bool{}
	for _, c := range cells {
		set[c] = true
	}
	stack := []uint64{cells[0]}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, n := range Disk(c, 1) {
			if set[n] && !seen[n] {
				seen[n] = true
				stack = append(stack, n)
			}
		}
	}
	return len(seen) == len(set)
}

func road(km float64) orb.LineString {
	// A gently curving road heading north-east from Jiefangbei.
	var ls orb.LineString
	n := 20
	for i := 0; i <= n; i++ {
		f := float64(i) / float64(n)
		// ~0.0127 deg ≈ 1 km per axis component at this latitude for 1.41 km.
		ls = append(ls, orb.Point{jiefangbei[0] + f*km*0.0073, jiefangbei[1] + f*km*0.0064 + 0.001*math.Sin(f*6)})
	}
	return ls
}

func TestCoverLine(t *testing.T) {
	ls := road(2)
	cells := Cover(ls, 9)
	if !slices.IsSorted(cells) || len(slices.Compact(slices.Clone(cells))) != len(cells) {
		t.Fatal("not sorted/deduped")
	}
	// 2 km across ~350 m-wide cells: at least 6, and not absurdly many.
	if len(cells) < 6 || len(cells) > 40 {
		t.Errorf("2 km road covers %d cells", len(cells))
	}
	if !connected(cells) {
		t.Error("line cover has a gap")
	}
	// Every vertex's cell is in the cover.
	for _, p := range ls {
		if !slices.Contains(cells, PointCell(p, 9)) {
			t.Errorf("vertex %v cell missing", p)
		}
	}
	if got := Cover(jiefangbei, 9); len(got) != 1 || got[0] != PointCell(jiefangbei, 9) {
		t.Errorf("point cover %v", got)
	}
}

func TestCoverPolygon(t *testing.T) {
	// A 30 m x 20 m building: smaller than a cell, still gets its cell(s).
	b := orb.Polygon{{{106.5775, 29.5577}, {106.5778, 29.5577}, {106.5778, 29.5579}, {106.5775, 29.5579}, {106.5775, 29.5577}}}
	cells := Cover(b, 9)
	if len(cells) < 1 || len(cells) > 4 || !slices.Contains(cells, PointCell(b[0][0], 9)) {
		t.Errorf("building cover %v", cells)
	}
	// A ~2 km square: interior cells plus boundary, connected, no holes.
	sq := orb.Polygon{{{106.55, 29.55}, {106.57, 29.55}, {106.57, 29.57}, {106.55, 29.57}, {106.55, 29.55}}}
	cells = Cover(sq, 9)
	if !connected(cells) {
		t.Error("square cover not connected")
	}
	// Area ≈ 1.94 km x 2.22 km = 4.3 km², /0.105 km² ≈ 41 cells inside,
	// plus a ring of boundary cells.
	if len(cells) < 41 || len(cells) > 100 {
		t.Errorf("square covers %d cells", len(cells))
	}
	// Every sampled point of the square is in a covered cell.
	for x := 106.5501; x < 106.57; x += 0.0013 {
		for y := 29.5501; y < 29.57; y += 0.0011 {
			if !slices.Contains(cells, PointCell(orb.Point{x, y}, 9)) {
				t.Fatalf("point %v not covered", orb.Point{x, y})
			}
		}
	}
	// A hole removes interior cells whose centres are in it.
	holed := orb.Polygon{sq[0], {{106.555, 29.555}, {106.555, 29.565}, {106.565, 29.565}, {106.565, 29.555}, {106.555, 29.555}}}
	hc := Cover(holed, 9)
	mid := PointCell(orb.Point{106.56, 29.56}, 9)
	if slices.Contains(hc, mid) || !slices.Contains(cells, mid) {
		t.Error("hole not excluded")
	}
	bc := BoundaryCover(sq, 9)
	if len(bc) == 0 || len(bc) >= len(cells) || slices.Contains(bc, mid) {
		t.Errorf("boundary cover %d of %d", len(bc), len(cells))
	}
}

func BenchmarkPointCell(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = PointCell(jiefangbei, PointRes)
	}
}

func BenchmarkCoverBuilding(b *testing.B) {
	bld := orb.Polygon{{{106.5775, 29.5577}, {106.5778, 29.5577}, {106.5778, 29.5579}, {106.5775, 29.5579}, {106.5775, 29.5577}}}
	for i := 0; i < b.N; i++ {
		_ = Cover(bld, PointRes)
	}
}

func BenchmarkCoverRoad2km(b *testing.B) {
	ls := road(2)
	for i := 0; i < b.N; i++ {
		_ = Cover(ls, PointRes)
	}
}

func TestParentOfValid(t *testing.T) {
	for _, p := range []orb.Point{jiefangbei, {106.4, 29.45}, {-73.98, 40.75}, {151.2, -33.86}} {
		for res := 0; res <= MaxRes; res++ {
			c := PointCell(p, res)
			for pr := 0; pr <= res; pr++ {
				if got, want := ParentOfValid(c, pr), Parent(c, pr); got != want {
					t.Fatalf("ParentOfValid(%x, %d) = %x, want %x", c, pr, got, want)
				}
			}
			if ParentOfValid(c, res+1) != 0 || ParentOfValid(c, -1) != 0 {
				t.Fatal("bad res accepted")
			}
		}
	}
}

func BenchmarkParent(b *testing.B) {
	c := PointCell(jiefangbei, 9)
	for i := 0; i < b.N; i++ {
		_ = Parent(c, 8)
	}
}

func BenchmarkParentOfValid(b *testing.B) {
	c := PointCell(jiefangbei, 9)
	for i := 0; i < b.N; i++ {
		_ = ParentOfValid(c, 8)
	}
}
