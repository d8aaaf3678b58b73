package rtree

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// TestNodeSizeClass: a node of float32 boxes and pointers stays in Go's
// 1536-B size class (the reason MaxEntries is 63, not upstream's 64).
func TestNodeSizeClass(t *testing.T) {
	if s := unsafe.Sizeof(leafNode[*int]{}); s > 1536 {
		t.Fatalf("leaf node %d B, over the 1536-B size class", s)
	}
	if s := unsafe.Sizeof(branchNode[*int]{}); s > 1536 {
		t.Fatalf("branch node %d B, over the 1536-B size class", s)
	}
}

type item struct {
	id       int
	min, max [2]float32
}

func randomItems(r *rand.Rand, n int) []*item { return mixedItems(r, n, 3) }

// mixedItems returns n items: one in boxes a box (up to 30 a side), the
// rest points, half of them one float32 step wide (IsPoint: held in leaves
// of points) and half of no width (held as boxes). boxes 0: points only,
// all one step wide.
func mixedItems(r *rand.Rand, n, boxes int) []*item {
	its := make([]*item, n)
	for i := range its {
		x, y := float32(r.IntN(1000))+float32(r.IntN(8))/8, float32(r.IntN(1000))+float32(r.IntN(8))/8
		it := &item{id: i, min: [2]float32{x, y}, max: [2]float32{next32(x), next32(y)}}
		switch {
		case boxes > 0 && r.IntN(boxes) == 0:
			it.max = [2]float32{x + float32(r.IntN(30)), y + float32(r.IntN(30))}
		case boxes > 0 && r.IntN(2) == 0:
			it.max = it.min
		}
		its[i] = it
	}
	return its
}

func (it *item) intersects(min, max [2]float32) bool {
	return !(it.min[0] > max[0] || it.max[0] < min[0] || it.min[1] > max[1] || it.max[1] < min[1])
}

// check compares Search, Scan and Nearby with a scan of live.
func check(t *testing.T, r *rand.Rand, tr *Tree[*item], live map[*item]bool) {
	t.Helper()
	if tr.Len() != len(live) {
		t.Fatalf("Len %d, want %d", tr.Len(), len(live))
	}
	n := 0
	tr.Scan(func(_, _ [2]float32, it *item) bool {
		if !live[it] {
			t.Fatalf("Scan yields %d, not in the tree", it.id)
		}
		n++
		return true
	})
	if n != len(live) {
		t.Fatalf("Scan yields %d items, want %d", n, len(live))
	}
	for range 100 {
		x, y := float32(r.IntN(1000)), float32(r.IntN(1000))
		min, max := [2]float32{x, y}, [2]float32{x + float32(r.IntN(200)), y + float32(r.IntN(200))}
		var got, want []int
		tr.Search(min, max, func(_, _ [2]float32, it *item) bool { got = append(got, it.id); return true })
		for it := range live {
			if it.intersects(min, max) {
				want = append(want, it.id)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Search(%v, %v) = %v, want %v", min, max, got, want)
		}
	}
	for range 20 {
		p := [2]float32{float32(r.IntN(1000)), float32(r.IntN(1000))}
		dist := func(lo, hi [2]float32, _ *item, _ bool) float64 {
			var d float64
			for a := range 2 {
				g := float64(max(lo[a]-p[a], p[a]-hi[a], 0))
				d += g * g
			}
			return d
		}
		var want []float64
		for it := range live {
			want = append(want, dist(it.min, it.max, it, true))
		}
		slices.Sort(want)
		k := min(len(want), 1+r.IntN(200))
		var got []float64
		tr.Nearby(dist, func(_, _ [2]float32, _ *item, d float64) bool {
			got = append(got, d)
			return len(got) < k
		})
		if !slices.Equal(got, want[:k]) {
			t.Fatalf("Nearby(%v) = %v, want %v", p, got, want[:k])
		}
	}
}

// TestFillMatchesScan: a tree packed by Fill, then changed by Insert and
// Delete (which split its full nodes and empty some), answers Search,
// Scan and Nearby as a scan does.
//
// boxes is mixedItems': 3, mostly leaves of boxes; 0, leaves of points
// only, then Insert adds boxes among them (one in 50), which turns those
// leaves into leaves of boxes; 1000, a few such.
func TestFillMatchesScan(t *testing.T) {
	for _, boxes := range []int{3, 0, 1000} {
		for _, perNode := range []int{2, 7, 56, MaxEntries, 1000} {
			for _, n := range []int{0, 1, 5, 63, 64, 1000, 20_000} {
				fillMatchesScan(t, boxes, perNode, n)
			}
		}
	}
}

func fillMatchesScan(t *testing.T, boxes, perNode, n int) {
	r := rand.New(rand.NewPCG(uint64(n), uint64(perNode)))
	its := mixedItems(r, n, boxes)
	es := make([]Entry[*item], n)
	live := map[*item]bool{}
	for i, it := range its {
		es[i] = Entry[*item]{it.min, it.max, it}
		live[it] = true
	}
	var tr Tree[*item]
	tr.Fill(es, perNode)
	check(t, r, &tr, live)
	for _, it := range its {
		if r.IntN(2) == 0 {
			tr.Delete(it.min, it.max, it)
			delete(live, it)
		}
	}
	more := boxes
	if more == 0 {
		more = 50
	}
	for _, it := range mixedItems(r, n/2, more) {
		it.id += n
		tr.Insert(it.min, it.max, it)
		live[it] = true
	}
	check(t, r, &tr, live)
}

// TestFillPacks: Fill's leaves hold perNode entries but the last one; and
// Fill on a tree that has items inserts them.
func TestFillPacks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	its := randomItems(r, 100_000)
	es := make([]Entry[*item], len(its))
	for i, it := range its {
		es[i] = Entry[*item]{it.min, it.max, it}
	}
	const perNode = 56
	var tr Tree[*item]
	tr.Fill(es[:90_000], perNode)
	leaves, items, short := 0, 0, 0
	var walk func(n *node[*item])
	walk = func(n *node[*item]) {
		if n.leaf() {
			if n.count != perNode {
				short++
			}
			leaves++
			items += int(n.count)
			return
		}
		for _, c := range n.children()[:n.count] {
			walk(c)
		}
	}
	walk(tr.root)
	if short > 1 || leaves != (90_000+perNode-1)/perNode {
		t.Fatalf("%d leaves, %d of them not full; want %d, at most one not full", leaves, short, (90_000+perNode-1)/perNode)
	}
	t.Logf("%d items in %d leaves", items, leaves)
	tr.Fill(es[90_000:], perNode)
	live := map[*item]bool{}
	for _, it := range its {
		live[it] = true
	}
	check(t, r, &tr, live)
}

// BenchmarkFill packs 200k points.
func BenchmarkFill(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	its := randomItems(r, 200_000)
	es := make([]Entry[*item], len(its))
	for b.Loop() {
		for i, it := range its {
			es[i] = Entry[*item]{it.min, it.max, it}
		}
		var tr Tree[*item]
		tr.Fill(es, 56)
	}
}

// TestOrderedBits: the integers order as the floats do.
func TestOrderedBits(t *testing.T) {
	fs := []float32{float32(math.Inf(-1)), -math.MaxFloat32, -106.5, -1, -math.SmallestNonzeroFloat32, 0, math.SmallestNonzeroFloat32, 1, 29.5, 106.5, math.MaxFloat32, float32(math.Inf(1))}
	for i := 1; i < len(fs); i++ {
		if orderedBits(fs[i-1]) >= orderedBits(fs[i]) {
			t.Fatalf("%v -> %#x, %v -> %#x", fs[i-1], orderedBits(fs[i-1]), fs[i], orderedBits(fs[i]))
		}
	}
}

// TestPointLeafSizeClass: a leaf of points is in the 1024-B size class.
func TestPointLeafSizeClass(t *testing.T) {
	if s := unsafe.Sizeof(pointNode[*int]{}); s > 1024 {
		t.Fatalf("leaf of points %d B, over the 1024-B size class", s)
	}
}

// TestPointLeaves: points one step wide fill leaves of points, by Fill and
// by Insert; a box inserted among them turns its leaf into one of boxes,
// and deletes find the points in either.
func TestPointLeaves(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	its := mixedItems(r, 5000, 0)
	kinds := func(tr *Tree[*item]) (points, boxes int) {
		var walk func(n *node[*item])
		walk = func(n *node[*item]) {
			switch n.kind {
			case pointLeaf:
				points++
			case leaf:
				boxes++
			default:
				for _, c := range n.children()[:n.count] {
					walk(c)
				}
			}
		}
		walk(tr.root)
		return points, boxes
	}
	var filled, inserted Tree[*item]
	es := make([]Entry[*item], len(its))
	for i, it := range its {
		es[i] = Entry[*item]{it.min, it.max, it}
		inserted.Insert(it.min, it.max, it)
	}
	filled.Fill(es, 56)
	live := map[*item]bool{}
	for _, it := range its {
		live[it] = true
	}
	for _, tr := range []*Tree[*item]{&filled, &inserted} {
		if p, b := kinds(tr); p == 0 || b != 0 {
			t.Fatalf("%d leaves of points, %d of boxes; want only of points", p, b)
		}
		box := &item{id: -1, min: [2]float32{500, 500}, max: [2]float32{501, 502}}
		tr.Insert(box.min, box.max, box)
		live[box] = true
		if _, b := kinds(tr); b != 1 {
			t.Fatalf("%d leaves of boxes after a box, want 1", b)
		}
		check(t, r, tr, live)
		for _, it := range its[:2500] {
			tr.Delete(it.min, it.max, it)
		}
		tr.Delete(box.min, box.max, box)
		for _, it := range its[:2500] {
			delete(live, it)
		}
		delete(live, box)
		check(t, r, tr, live)
		for _, it := range its[:2500] {
			live[it] = true
		}
	}
	if fb, ib := filled.Bytes(), inserted.Bytes(); fb == 0 || ib == 0 {
		t.Fatalf("Bytes %d, %d", fb, ib)
	}
}

// TestNext32: next32 and prev32 are math.Nextafter32 towards +Inf and -Inf.
func TestNext32(t *testing.T) {
	inf := float32(math.Inf(1))
	fs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32,
		-math.SmallestNonzeroFloat32, inf, -inf, float32(math.NaN()), 106.55, -29.5}
	r := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		fs = append(fs, math.Float32frombits(r.Uint32()))
	}
	for _, f := range fs {
		if a, b := next32(f), math.Nextafter32(f, inf); math.Float32bits(a) != math.Float32bits(b) && !(a != a && b != b) {
			t.Fatalf("next32(%v) = %v, Nextafter32 %v", f, a, b)
		}
		if a, b := prev32(f), math.Nextafter32(f, -inf); math.Float32bits(a) != math.Float32bits(b) && !(a != a && b != b) {
			t.Fatalf("prev32(%v) = %v, Nextafter32 %v", f, a, b)
		}
	}
}

// checkNodes checks that every node's box is its entries' union (tight:
// what a delete's shrinking keeps) and that entries are ordered by min x.
func checkNodes[T comparable](t *testing.T, nr rect, n *node[T]) {
	t.Helper()
	if n.count == 0 {
		t.Fatal("empty node")
	}
	if r := n.rect(); !r.equals(&nr) {
		t.Fatalf("node box %v, its entries' union %v", nr, r)
	}
	if !n.issorted() {
		t.Fatal("entries not ordered by min x")
	}
	if n.leaf() {
		return
	}
	for i, c := range n.children()[:n.count] {
		checkNodes(t, n.boxes()[i], c)
	}
}

// TestReplace: objects that step (most within their leaf's box, some far
// away, some back and forth across edges) are found where they are and
// never where they were, and the nodes' boxes stay tight, as with
// Delete + Insert.
func TestReplace(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, c := range []struct{ n, boxes int }{{1, 3}, {40, 3}, {3000, 3}, {3000, 0}} {
		n := c.n
		var tr Tree[*item]
		live := map[*item]bool{}
		its := mixedItems(r, n, c.boxes) // boxes 0: points only, in leaves of points
		for _, it := range its {
			tr.Insert(it.min, it.max, it)
			live[it] = true
		}
		for step := range 20 * n {
			k := r.IntN(len(its))
			old := its[k]
			nw := &item{id: old.id, min: old.min, max: old.max}
			d := float32(3)
			if r.IntN(20) == 0 {
				d = 500
			}
			dx, dy := (r.Float32()*2-1)*d, (r.Float32()*2-1)*d
			nw.min[0], nw.max[0] = nw.min[0]+dx, nw.max[0]+dx
			nw.min[1], nw.max[1] = nw.min[1]+dy, nw.max[1]+dy
			if IsPoint(old.min, old.max) {
				// A point stays one float32 step wide, as the twin's
				// index boxes it (else it would leave its leaf of points).
				nw.max = [2]float32{next32(nw.min[0]), next32(nw.min[1])}
			}
			tr.Replace(old.min, old.max, old, nw.min, nw.max, nw)
			delete(live, old)
			live[nw] = true
			its[k] = nw
			if step%(2*n) == 0 {
				check(t, r, &tr, live)
				checkNodes(t, tr.rect, tr.root)
			}
		}
		check(t, r, &tr, live)
		checkNodes(t, tr.rect, tr.root)
		// An absent old one: the new one goes in as by Insert.
		nw := &item{id: -1, min: [2]float32{5, 5}, max: [2]float32{5, 5}}
		tr.Replace(nw.min, nw.max, &item{}, nw.min, nw.max, nw)
		live[nw] = true
		check(t, r, &tr, live)
	}
}

// BenchmarkReplaceStep moves points a small step each, in place: a fleet's
// telemetry (issue 16 goal 1: the index's share of a geofenced write).
func BenchmarkReplaceStep(b *testing.B) {
	for _, n := range []int{5_000, 200_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			its := mixedItems(r, n, 0)
			var tr Tree[*item]
			for _, it := range its {
				tr.Insert(it.min, it.max, it)
			}
			k := 0
			for b.Loop() {
				it := its[k%n]
				k++
				nx, ny := it.min[0]+float32(r.IntN(3)-1)/8, it.min[1]+float32(r.IntN(3)-1)/8
				nmin, nmax := [2]float32{nx, ny}, [2]float32{next32(nx), next32(ny)}
				tr.Replace(it.min, it.max, it, nmin, nmax, it)
				it.min, it.max = nmin, nmax
			}
		})
	}
}
