package locate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// Synthetic city: a 4x2 lattice of districts, each split into 5x4 streets,
// around central Chongqing. Street edges are wiggly (segPerEdge vertices per
// edge, displaced by a deterministic function of position), so neighbouring
// polygons share their edges exactly and point-in-polygon costs what a real
// boundary costs.
const (
	originLon, originLat = 106.40, 29.45
	districtW, districtH = 0.10, 0.08 // degrees: ~9.7 km x 8.9 km
	streetsX, streetsY   = 5, 4
	segPerEdge           = 12
)

// wiggle displaces lattice points by a smooth shear-free field (x moves
// with y, y with x; derivatives well below 1, so the map stays one-to-one
// and polygons stay simple).
func wiggle(x, y float64) orb.Point {
	return orb.Point{x + 0.0015*math.Sin(y*300), y + 0.0015*math.Cos(x*250)}
}

// edge returns the points from lattice point (i0,j0) to (i1,j1) (street
// lattice units), excluding the end point. Points are computed from integer
// lattice positions so both directions of a shared edge hit the same points.
func edge(i0, j0, i1, j1 int) []orb.Point {
	sw, sh := districtW/streetsX, districtH/streetsY
	out := make([]orb.Point, 0, segPerEdge)
	for k := 0; k < segPerEdge; k++ {
		fi := float64(i0*segPerEdge+k*(i1-i0)) / segPerEdge
		fj := float64(j0*segPerEdge+k*(j1-j0)) / segPerEdge
		out = append(out, wiggle(originLon+fi*sw, originLat+fj*sh))
	}
	return out
}

// outline is the ring around lattice cells [i0,i1) x [j0,j1).
func outline(i0, j0, i1, j1 int) orb.Ring {
	var r orb.Ring
	for i := i0; i < i1; i++ {
		r = append(r, edge(i, j0, i+1, j0)...)
	}
	for j := j0; j < j1; j++ {
		r = append(r, edge(i1, j, i1, j+1)...)
	}
	for i := i1; i > i0; i-- {
		r = append(r, edge(i, j1, i-1, j1)...)
	}
	for j := j1; j > j0; j-- {
		r = append(r, edge(i0, j, i0, j-1)...)
	}
	return append(r, r[0])
}

func cell(i, j int) orb.Polygon { return orb.Polygon{outline(i, j, i+1, j+1)} }

func regionFeature(level, code, parent string, g orb.Geometry) *twin.Feature {
	return &twin.Feature{ID: twin.NewID(twin.Regions, code), Geometry: g,
		Props: twin.NewProps(map[string]any{"level": level, "code": code, "parent": parent, "name": code})}
}

// syntheticCity returns the city, 8 districts and 160 streets.
func syntheticCity() (regions, streets []*twin.Feature) {
	city := orb.Polygon{outline(0, 0, 4*streetsX, 2*streetsY)}
	regions = append(regions, regionFeature(LevelCity, "500000", "", city))
	for dx := 0; dx < 4; dx++ {
		for dy := 0; dy < 2; dy++ {
			dcode := fmt.Sprintf("5001%02d", dx*2+dy+1)
			i0, j0 := dx*streetsX, dy*streetsY
			r := outline(i0, j0, i0+streetsX, j0+streetsY)
			regions = append(regions, regionFeature(LevelDistrict, dcode, "500000", orb.Polygon{r}))
			for i := 0; i < streetsX; i++ {
				for j := 0; j < streetsY; j++ {
					s := regionFeature(LevelStreet, fmt.Sprintf("%s%03d", dcode, i*streetsY+j+1), dcode, cell(i0+i, j0+j))
					regions = append(regions, s)
					streets = append(streets, s)
				}
			}
		}
	}
	return regions, streets
}

// bruteStreet finds the street containing p by testing every polygon.
func bruteStreet(streets []*twin.Feature, p orb.Point) *twin.Feature {
	for _, s := range streets {
		if planar.Contains(s.Geometry, p) {
			return s
		}
	}
	return nil
}

func randomPoints(n int) []orb.Point {
	rng := rand.New(rand.NewPCG(1, 2))
	pts := make([]orb.Point, n)
	for i := range pts {
		// Slightly beyond the city on every side.
		pts[i] = orb.Point{originLon - 0.01 + rng.Float64()*(4*districtW+0.02), originLat - 0.01 + rng.Float64()*(2*districtH+0.02)}
	}
	return pts
}

func TestSyntheticCityValid(t *testing.T) {
	regions, _ := syntheticCity()
	for _, r := range regions {
		if planar.RingSelfIntersects(r.Geometry.(orb.Polygon)[0]) {
			t.Fatalf("%s self-intersects", r.ID)
		}
	}
}

func TestLocateMatchesBruteForce(t *testing.T) {
	regions, streets := syntheticCity()
	for name, l := range map[string]*Locator{"buckets": New(), "rtree": newRTree()} {
		t.Run(name, func(t *testing.T) {
			l.Reset(regions, nil)
			inside := 0
			for _, p := range randomPoints(3000) {
				cells, path, grid := locate3(l, p)
				if len(cells) != 1 || cells[0] != hex.PointCell(p, 9) || grid != "" {
					t.Fatalf("Locate(%v) cells %v grid %q", p, cells, grid)
				}
				s := bruteStreet(streets, p)
				if s == nil {
					if path != nil {
						t.Fatalf("Locate(%v) outside city = %v", p, path)
					}
					continue
				}
				inside++
				want := []string{"500000", s.Prop("parent"), s.Prop("code")}
				if !slices.Equal(path, want) {
					t.Fatalf("Locate(%v) = %v, want %v", p, path, want)
				}
			}
			if inside < 2500 {
				t.Fatalf("only %d points inside", inside)
			}
		})
	}
}

func TestLocateKnownPoints(t *testing.T) {
	regions, _ := syntheticCity()
	l := New()
	// Before Reset: cells only.
	p := orb.Point{originLon + 0.01, originLat + 0.01}
	if cells, path, grid := locate3(l, p); len(cells) != 1 || path != nil || grid != "" {
		t.Fatalf("empty locator: %v %v %q", cells, path, grid)
	}
	l.Reset(regions, nil)
	// Middle of the first street of the first district (lattice cell 0,0).
	if _, path, _ := locate3(l, p); !slices.Equal(path, []string{"500000", "500101", "500101001"}) {
		t.Errorf("first street: %v", path)
	}
	// Centre of the city's east-most, north-most street.
	q := orb.Point{originLon + 4*districtW - 0.01, originLat + 2*districtH - 0.01}
	if _, path, _ := locate3(l, q); !slices.Equal(path, []string{"500000", "500108", "500108020"}) {
		t.Errorf("last street: %v", path)
	}
	if _, path, _ := locate3(l, orb.Point{originLon - 0.5, originLat}); path != nil {
		t.Errorf("outside: %v", path)
	}
	for _, bad := range []orb.Geometry{nil, orb.Point{math.NaN(), 0}, orb.LineString{}, orb.Polygon{}} {
		if cells, path, grid := locate3(l, bad); path != nil || grid != "" || len(cells) > 0 {
			t.Errorf("Locate(%#v) = %v %v %q", bad, cells, path, grid)
		}
	}
	if l.Region("500108").Prop("level") != LevelDistrict || l.Region("nope") != nil {
		t.Error("Region lookup")
	}
	// A road from the first street eastwards: region of its midpoint, cells
	// along it.
	road := orb.LineString{{originLon + 0.005, originLat + 0.01}, {originLon + 0.035, originLat + 0.01}}
	cells, path, _ := locate3(l, road)
	mid, _ := planar.Centroid(road)
	if !slices.Equal(path, l.Path(mid)) || len(cells) < 5 {
		t.Errorf("road: %v cells %d", path, len(cells))
	}
	// District-only region set: path stops at the district; a street whose
	// parent is unknown keeps its parent code.
	l.Reset([]*twin.Feature{regions[1]}, nil)
	if _, path, _ := locate3(l, p); !slices.Equal(path, []string{"500000", "500101"}) {
		t.Errorf("district only: %v", path)
	}
	orphan := regionFeature(LevelStreet, "500199001", "500199", orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29.1}, {106, 29}}})
	l.Reset([]*twin.Feature{orphan}, nil)
	if _, path, _ := locate3(l, orb.Point{106.05, 29.05}); !slices.Equal(path, []string{"500000", "500199", "500199001"}) {
		t.Errorf("orphan street: %v", path)
	}
}

// A district with a hole (an enclave): points in the hole are not in it.
func TestLocateHole(t *testing.T) {
	outer := orb.Ring{{106.0, 29.0}, {106.2, 29.0}, {106.2, 29.2}, {106.0, 29.2}, {106.0, 29.0}}
	hole := orb.Ring{{106.05, 29.05}, {106.05, 29.15}, {106.15, 29.15}, {106.15, 29.05}, {106.05, 29.05}}
	for name, l := range map[string]*Locator{"buckets": New(), "rtree": newRTree()} {
		l.Reset([]*twin.Feature{
			regionFeature(LevelDistrict, "500101", "500000", orb.Polygon{outer, hole}),
			regionFeature(LevelDistrict, "500102", "500000", orb.Polygon{hole}),
		}, nil)
		if _, path, _ := locate3(l, orb.Point{106.1, 29.1}); !slices.Equal(path, []string{"500000", "500102"}) {
			t.Errorf("%s: in hole: %v", name, path)
		}
		if _, path, _ := locate3(l, orb.Point{106.02, 29.1}); !slices.Equal(path, []string{"500000", "500101"}) {
			t.Errorf("%s: in ring: %v", name, path)
		}
	}
}

func TestMakeGrids(t *testing.T) {
	regions, streets := syntheticCity()
	// Two districts' streets keep the test fast.
	streets = streets[:2*streetsX*streetsY]
	grids := MakeGrids(streets)
	if len(grids) < 100 {
		t.Fatalf("only %d grids", len(grids))
	}
	again := MakeGrids(slices.Clone(streets))
	if len(again) != len(grids) {
		t.Fatal("not deterministic")
	}
	cells := map[uint64]bool{}
	for i, g := range grids {
		if g.ID != again[i].ID {
			t.Fatal("order not deterministic")
		}
		c := g.Cell()
		if cells[c] {
			t.Fatalf("cell %x in two grids", c)
		}
		cells[c] = true
		street := g.Prop("street")
		if g.ID.Layer != twin.Grids || g.ID.Name != street+"-"+hex.CellString(c) || g.Prop("code") != g.ID.Name || g.Grid() != g.ID.Name {
			t.Fatalf("grid naming: %+v", g)
		}
		if w, ok := g.Props.Get("workers").([]any); !ok || len(w) != 0 {
			t.Fatalf("workers %v", g.Props.Get("workers"))
		}
		if s := bruteStreet(streets, hex.CellCenter(c)); s == nil || s.Prop("code") != street {
			t.Fatalf("grid %s centre not in its street", g.ID)
		}
		if !strings.HasPrefix(street, g.Region()[1]) || g.Region()[2] != street || g.Region()[0] != "500000" {
			t.Fatalf("grid region %v", g.Region())
		}
		if i > 0 && grids[i-1].Prop("street") > street {
			t.Fatal("not sorted by street")
		}
	}
	// Every point of the covered streets is in some grid, and Locate names it.
	l := New()
	l.Reset(regions, grids)
	n := 0
	for _, p := range randomPoints(2000) {
		s := bruteStreet(streets, p)
		_, path, grid := locate3(l, p)
		c := hex.PointCell(p, 9)
		if cells[c] {
			n++
			want := ""
			for _, g := range grids {
				if g.Cell() == c {
					want = g.ID.Name
				}
			}
			if grid != want {
				t.Fatalf("Locate(%v) grid %q, want %q", p, grid, want)
			}
		} else if s != nil && grid != "" {
			t.Fatalf("grid %q for uncovered cell", grid)
		}
		_ = path
	}
	if n < 350 { // ~2000 * 2/8 districts
		t.Errorf("only %d points in grids", n)
	}
	// A grid's own outline locates into itself, with its one cell and the
	// region MakeGrids gave it.
	cs, path, grid := locate3(l, grids[7].Geometry)
	if grid != grids[7].ID.Name || !slices.Equal(cs, grids[7].Cells()) || !slices.Equal(path, grids[7].Region()) {
		t.Errorf("grid outline locates to %v %v %q, want %v %v %q", cs, path, grid, grids[7].Cells(), grids[7].Region(), grids[7].ID.Name)
	}
	// SetGrids swaps grids only: regions stay.
	l.SetGrids(grids[:1])
	p := hex.CellCenter(grids[1].Cell())
	if _, path, grid := locate3(l, p); grid != "" || len(path) != 3 {
		t.Errorf("after SetGrids: %v %q", path, grid)
	}
	if _, _, grid := locate3(l, hex.CellCenter(grids[0].Cell())); grid != grids[0].ID.Name {
		t.Errorf("kept grid: %q", grid)
	}
}

// Locate runs concurrently with Reset (run with -race).
func TestConcurrentReset(t *testing.T) {
	regions, _ := syntheticCity()
	l := New()
	pts := randomPoints(200)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range pts {
				_, path, _ := locate3(l, p)
				if path != nil && path[0] != "500000" {
					t.Errorf("bad path %v", path)
					return
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		l.Reset(regions, nil)
		l.SetGrids(nil)
	}
	wg.Wait()
}

// locate3 is Locate with the place's parts apart, as the tests compare them.
func locate3(l *Locator, g orb.Geometry) ([]uint64, []string, string) {
	cells, p := l.Locate(g)
	f := twin.Feature{Place: p}
	return cells, f.Region(), f.Grid()
}

// locateMove3 is LocateMove with the place's parts apart.
func locateMove3(l *Locator, p orb.Point, prev *twin.Feature) ([]uint64, []string, string) {
	cells, pl := l.LocateMove(p, prev)
	f := twin.Feature{Place: pl}
	return cells, f.Region(), f.Grid()
}
