// Package rtree is an R-tree of float32 boxes: github.com/tidwall/rtree
// v1.10.0's RTreeGN (MIT, Copyright (c) 2021 Josh Baker; LICENSE in this
// directory), cut to what the twin's index uses and changed where memory
// per object is decided (issue 16 goal 4):
//
//   - a node holds 63 entries, not 64, so that a leaf (16-B boxes and
//     8-B pointers) is 1520 B and lies in Go's 1536-B size class; 64
//     entries made it 1552 B, in the 1792-B class, 13 % of every leaf
//     wasted;
//   - no copy-on-write (Copy, and the 8-B generation each node carried);
//   - Fill builds a tree from many items at once by Sort-Tile-Recursive
//     packing (Leutenegger, Lopez and Edgington, ICDE 1997), its leaves
//     as full as asked. Built by insertion, leaves split in halves and
//     hover about 70 % full: ~35 B per point (~43 B in upstream's 1792-B
//     nodes at a million), where a tree packed 56 a node needs ~28;
//   - a leaf whose entries are all points (boxes one float32 step wide,
//     as a point rounded outward to float32 is: IsPoint) holds each as
//     its minimum corner alone, 8 B instead of 16: 1016 B a leaf, in the
//     1024-B size class, ~18 B per point packed 56 a leaf instead of ~27
//     (issue 16 goal 4). A box other than a point arriving in it turns it
//     into a leaf of boxes;
//   - a delete that leaves a leaf under minLeaf entries (24, 38 %)
//     removes it and inserts its entries again, as Guttman's
//     CondenseTree does; upstream let leaves drain to one entry. Under
//     moving vehicles, leaves then stay fuller (BenchmarkIndexChurn in
//     twin).
//
// Insert, Search and Nearby are upstream's: entries of a node ordered by
// min x, splits along the node's largest axis by the nearer edge.
//
// A Tree is not safe for concurrent writes; the zero Tree is empty and
// ready.
package rtree

import (
	"math"
	"slices"
	"sync"
	"unsafe"
)

// MaxEntries is the most entries a node holds (see the package comment).
const MaxEntries = 63

// minLeaf is the fewest entries a leaf keeps after a delete (the root
// aside): under it, the leaf goes and its entries are inserted again.
// 200k vehicles each moved twice (BenchmarkIndexChurn): an index of
// 36.6-46.0 B per object with leaves left to drain, 34.8-39.3 B with 24.
const minLeaf = 24

// Tree is an R-tree of items of type T (a pointer type, compared with ==
// on Delete) by float32 boxes.
type Tree[T comparable] struct {
	count int
	rect  rect
	root  *node[T]
	empty T
	qpool *sync.Pool
}

type rect struct {
	min [2]float32
	max [2]float32
}

func (r *rect) expand(b *rect) {
	if b.min[0] < r.min[0] {
		r.min[0] = b.min[0]
	}
	if b.max[0] > r.max[0] {
		r.max[0] = b.max[0]
	}
	if b.min[1] < r.min[1] {
		r.min[1] = b.min[1]
	}
	if b.max[1] > r.max[1] {
		r.max[1] = b.max[1]
	}
}

type kind int8

const (
	none kind = iota
	leaf
	branch
	pointLeaf // a leaf of points only (IsPoint), held as their minimum corners
)

// node is the header of a leafNode, a branchNode or a pointNode (one
// allocation per node: the boxes or points follow it, then the items or
// children; see upstream's SAFETY note). kind says which.
type node[T comparable] struct {
	kind  kind
	count int16
}

// leaf reports a leaf of either kind.
func (n *node[T]) leaf() bool { return n.kind != branch }

// boxNode is the part of a leafNode and a branchNode up to their boxes.
type boxNode[T comparable] struct {
	node[T]
	rects [MaxEntries]rect
}

type leafNode[T comparable] struct {
	boxNode[T]
	items [MaxEntries]T
}

type branchNode[T comparable] struct {
	boxNode[T]
	children [MaxEntries]*node[T]
}

// pointNode is a leaf of points: their boxes' minimum corners (the maximum
// is the next float32 up on each axis).
type pointNode[T comparable] struct {
	node[T]
	pts   [MaxEntries][2]float32
	items [MaxEntries]T
}

// boxes are the boxes of a leaf of boxes or a branch.
func (n *node[T]) boxes() []rect {
	if n.kind == pointLeaf {
		panic("rtree: boxes of a leaf of points")
	}
	return (*boxNode[T])(unsafe.Pointer(n)).rects[:]
}

func (n *node[T]) children() []*node[T] {
	if n.kind != branch {
		return nil
	}
	return (*branchNode[T])(unsafe.Pointer(n)).children[:]
}

func (n *node[T]) items() []T {
	switch n.kind {
	case leaf:
		return (*leafNode[T])(unsafe.Pointer(n)).items[:]
	case pointLeaf:
		return (*pointNode[T])(unsafe.Pointer(n)).items[:]
	}
	return nil
}

func (n *node[T]) points() *[MaxEntries][2]float32 {
	return &(*pointNode[T])(unsafe.Pointer(n)).pts
}

// IsPoint reports whether the box min, max is a point's: one float32 step
// wide on each axis (max the next float32 above min), what a point's
// coordinates rounded outward give, or give once widened to a step where
// they are float32s already (the twin's index does). Such entries are held
// in 8 B (see the package comment).
func IsPoint(min, max [2]float32) bool {
	return max[0] == next32(min[0]) && max[1] == next32(min[1])
}

// next32 is math.Nextafter32(f, +Inf) by the bits, without its branches
// for the general case: the search of a leaf of points reads it for each
// hit (a fifth of a viewport search's CPU through math.Nextafter32).
func next32(f float32) float32 {
	switch b := math.Float32bits(f); {
	case b < 0x7f800000: // +0 and positive finite numbers
		return math.Float32frombits(b + 1)
	case b == 0x80000000: // -0
		return math.Float32frombits(1)
	case b > 0x80000000 && b <= 0xff800000: // negative numbers, -Inf
		return math.Float32frombits(b - 1)
	}
	return f // +Inf, NaN
}

// prev32 is math.Nextafter32(f, -Inf), as next32.
func prev32(f float32) float32 {
	switch b := math.Float32bits(f); {
	case b == 0: // +0
		return math.Float32frombits(0x80000001)
	case b <= 0x7f800000: // positive numbers, +Inf
		return math.Float32frombits(b - 1)
	case b >= 0x80000000 && b < 0xff800000: // -0 and negative finite numbers
		return math.Float32frombits(b + 1)
	}
	return f // -Inf, NaN
}

func (r *rect) isPoint() bool { return IsPoint(r.min, r.max) }

// at is the box of entry i.
func (n *node[T]) at(i int) rect {
	if n.kind == pointLeaf {
		p := n.points()[i]
		return rect{p, [2]float32{next32(p[0]), next32(p[1])}}
	}
	return n.boxes()[i]
}

// fromX is the first entry whose min x is not below x. Entries are
// ordered by min x (checkNodes), so an entry that lies within a box
// starting at x is there or after it, and none is after the first whose
// min x is past the box: Replace and Delete look only there, where they
// scanned every entry of every node on the way (~60 % of a replace among
// 5,000 points, BenchmarkReplaceStep: 760 -> 265 ns).
func (n *node[T]) fromX(x float32) int {
	lo, hi := 0, int(n.count)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); n.minX(m) < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// minX is the minimum x of entry i's box.
func (n *node[T]) minX(i int) float32 {
	if n.kind == pointLeaf {
		return n.points()[i][0]
	}
	return n.boxes()[i].min[0]
}

// set sets the box of entry i (a point's, in a leaf of points).
func (n *node[T]) set(i int, r rect) {
	if n.kind == pointLeaf {
		n.points()[i] = r.min
		return
	}
	n.boxes()[i] = r
}

func newNode[T comparable](k kind) *node[T] {
	switch k {
	case leaf:
		n := &leafNode[T]{boxNode: boxNode[T]{node: node[T]{kind: leaf}}}
		return (*node[T])(unsafe.Pointer(n))
	case pointLeaf:
		n := &pointNode[T]{node: node[T]{kind: pointLeaf}}
		return (*node[T])(unsafe.Pointer(n))
	}
	n := &branchNode[T]{boxNode: boxNode[T]{node: node[T]{kind: branch}}}
	return (*node[T])(unsafe.Pointer(n))
}

// leafFor is the kind of a new leaf for an entry box r.
func leafFor(r *rect) kind {
	if r.isPoint() {
		return pointLeaf
	}
	return leaf
}

// boxLeaf returns a leaf of boxes with n's entries, n a leaf of points.
func (n *node[T]) boxLeaf() *node[T] {
	b := newNode[T](leaf)
	for i := 0; i < int(n.count); i++ {
		b.boxes()[i] = n.at(i)
	}
	copy(b.items(), n.items()[:n.count])
	b.count = n.count
	return b
}

func (n *node[T]) rect() rect {
	rect := n.at(0)
	for i := 1; i < int(n.count); i++ {
		r := n.at(i)
		rect.expand(&r)
	}
	return rect
}

func (tr *Tree[T]) init() {
	if tr.qpool == nil {
		tr.qpool = &sync.Pool{New: func() any { return &queue[T]{} }}
	}
}

// Insert adds data with the box min, max.
func (tr *Tree[T]) Insert(min, max [2]float32, data T) {
	ir := rect{min, max}
	if tr.root == nil {
		tr.init()
		tr.root = newNode[T](leafFor(&ir))
		tr.rect = ir
	}
	split, grown := tr.nodeInsert(&tr.rect, &tr.root, &ir, data)
	if split {
		left := tr.root
		right := tr.splitNode(tr.rect, left)
		tr.root = newNode[T](branch)
		tr.root.boxes()[0] = left.rect()
		tr.root.boxes()[1] = right.rect()
		tr.root.children()[0] = left
		tr.root.children()[1] = right
		tr.root.count = 2
		tr.Insert(min, max, data)
		tr.root.sort()
		return
	}
	if grown {
		tr.rect.expand(&ir)
		if !tr.root.leaf() {
			tr.root.sort()
		}
	}
	tr.count++
}

func (n *node[T]) orderToRight(idx int) int {
	for idx < int(n.count)-1 && n.minX(idx+1) < n.minX(idx) {
		n.swap(idx+1, idx)
		idx++
	}
	return idx
}

func (n *node[T]) orderToLeft(idx int) int {
	for idx > 0 && n.minX(idx) < n.minX(idx-1) {
		n.swap(idx, idx-1)
		idx--
	}
	return idx
}

func (n *node[T]) rsearch(key float32) int {
	for i := 0; i < int(n.count); i++ {
		if !(n.minX(i) < key) {
			return i
		}
	}
	return int(n.count)
}

// nodeInsert inserts into *np, which it replaces by a leaf of boxes when
// it is a leaf of points and ir is not a point.
func (tr *Tree[T]) nodeInsert(nr *rect, np **node[T], ir *rect, data T) (split, grown bool) {
	n := *np
	if n.leaf() {
		if n.count == MaxEntries {
			return true, false
		}
		if n.kind == pointLeaf && !ir.isPoint() {
			n = n.boxLeaf()
			*np = n
		}
		items := n.items()
		index := n.rsearch(ir.min[0])
		if n.kind == pointLeaf {
			pts := n.points()
			copy(pts[index+1:int(n.count)+1], pts[index:int(n.count)])
		} else {
			copy(n.boxes()[index+1:int(n.count)+1], n.boxes()[index:int(n.count)])
		}
		copy(items[index+1:int(n.count)+1], items[index:int(n.count)])
		n.set(index, *ir)
		items[index] = data
		n.count++
		grown = !nr.contains(ir)
		return false, grown
	}

	// choose a subtree
	rects := n.boxes()[:n.count]
	index := -1
	var narea float32
	// take a quick look for any nodes that contain the rect
	for i := range rects {
		if rects[i].contains(ir) {
			area := rects[i].area()
			if index == -1 || area < narea {
				index = i
				narea = area
			}
		}
	}
	if index == -1 {
		index = n.chooseLeastEnlargement(ir)
	}

	children := n.children()
	split, grown = tr.nodeInsert(&rects[index], &children[index], ir, data)
	if split {
		if n.count == MaxEntries {
			return true, false
		}
		// split the child node
		left := children[index]
		right := tr.splitNode(rects[index], left)
		rects = n.boxes()
		rects[index] = left.rect()
		copy(rects[index+2:int(n.count)+1], rects[index+1:int(n.count)])
		copy(children[index+2:int(n.count)+1], children[index+1:int(n.count)])
		rects[index+1] = right.rect()
		children[index+1] = right
		n.count++
		if rects[index].min[0] > rects[index+1].min[0] {
			n.swap(index+1, index)
		}
		index++
		_ = n.orderToRight(index)
		return tr.nodeInsert(nr, np, ir, data)
	}
	if grown {
		// The child rectangle must expand to accommodate the new item.
		rects[index].expand(ir)
		n.orderToLeft(index)
		grown = !nr.contains(ir)
	}
	return false, grown
}

func (r *rect) area() float32 {
	return (r.max[0] - r.min[0]) * (r.max[1] - r.min[1])
}

// contains reports whether b is fully inside r.
func (r *rect) contains(b *rect) bool {
	if b.min[0] < r.min[0] || b.max[0] > r.max[0] {
		return false
	}
	if b.min[1] < r.min[1] || b.max[1] > r.max[1] {
		return false
	}
	return true
}

// intersects reports whether r and b intersect (edges included).
func (r *rect) intersects(b *rect) bool {
	if b.min[0] > r.max[0] || b.max[0] < r.min[0] {
		return false
	}
	if b.min[1] > r.max[1] || b.max[1] < r.min[1] {
		return false
	}
	return true
}

func (n *node[T]) chooseLeastEnlargement(ir *rect) (index int) {
	rects := n.boxes()[:int(n.count)]
	j := -1
	var jenlargement, jarea float32
	for i := range rects {
		// calculate the enlarged area
		uarea := rects[i].unionedArea(ir)
		area := rects[i].area()
		enlargement := uarea - area
		if j == -1 || enlargement < jenlargement ||
			(!(enlargement > jenlargement) && area < jarea) {
			j, jenlargement, jarea = i, enlargement, area
		}
	}
	return j
}

// unionedArea is the area of the box holding r and b.
func (r *rect) unionedArea(b *rect) float32 {
	return (max(r.max[0], b.max[0]) - min(r.min[0], b.min[0])) *
		(max(r.max[1], b.max[1]) - min(r.min[1], b.min[1]))
}

func (r rect) largestAxis() (axis int) {
	if r.max[1]-r.min[1] > r.max[0]-r.min[0] {
		return 1
	}
	return 0
}

// splitNode moves the entries of left nearer r's max edge on r's largest
// axis to a new node (upstream's splitNodeLargestAxisEdgeSnap).
func (tr *Tree[T]) splitNode(r rect, left *node[T]) (right *node[T]) {
	axis := r.largestAxis()
	right = newNode[T](left.kind)
	for i := 0; i < int(left.count); i++ {
		b := left.at(i)
		minDist := b.min[axis] - r.min[axis]
		maxDist := r.max[axis] - b.max[axis]
		if minDist >= maxDist {
			tr.moveRectAtIndexInto(left, i, right)
			i--
		}
	}
	// Make sure that both left and right nodes have at least
	// two by moving items into underflowed nodes.
	if left.count < 2 {
		// reverse sort by min axis
		right.sortByAxis(axis, true, false)
		for left.count < 2 {
			tr.moveRectAtIndexInto(right, int(right.count)-1, left)
		}
	} else if right.count < 2 {
		// reverse sort by max axis
		left.sortByAxis(axis, true, true)
		for right.count < 2 {
			tr.moveRectAtIndexInto(left, int(left.count)-1, right)
		}
	}
	// It's not uncommon that the nodes to be already ordered.
	if !right.issorted() {
		right.sort()
	}
	if !left.issorted() {
		left.sort()
	}
	return right
}

// moveRectAtIndexInto moves an entry between two nodes of one kind.
func (tr *Tree[T]) moveRectAtIndexInto(from *node[T], index int, into *node[T]) {
	into.set(int(into.count), from.at(index))
	from.set(index, from.at(int(from.count)-1))
	if from.leaf() {
		into.items()[into.count] = from.items()[index]
		from.items()[index] = from.items()[from.count-1]
		from.items()[from.count-1] = tr.empty
	} else {
		into.children()[into.count] = from.children()[index]
		from.children()[index] = from.children()[from.count-1]
		from.children()[from.count-1] = nil
	}
	from.count--
	into.count++
}

func (n *node[T]) search(target rect, iter func(min, max [2]float32, data T) bool) bool {
	if n.kind == pointLeaf {
		// The box p, next32(p) intersects the target when p <= its max
		// and next32(p) >= its min, that is p >= prev32(min).
		lo := [2]float32{prev32(target.min[0]), prev32(target.min[1])}
		items := n.items()
		for i, p := range n.points()[:n.count] {
			if p[0] <= target.max[0] && p[1] <= target.max[1] && p[0] >= lo[0] && p[1] >= lo[1] {
				if !iter(p, [2]float32{next32(p[0]), next32(p[1])}, items[i]) {
					return false
				}
			}
		}
		return true
	}
	rects := n.boxes()[:n.count]
	if n.leaf() {
		items := n.items()
		for i := range rects {
			if rects[i].intersects(&target) {
				if !iter(rects[i].min, rects[i].max, items[i]) {
					return false
				}
			}
		}
		return true
	}
	children := n.children()
	for i := range rects {
		if target.intersects(&rects[i]) {
			if !children[i].search(target, iter) {
				return false
			}
		}
	}
	return true
}

// Bytes is the memory of the nodes, in Go's size classes: a leaf of boxes
// or a branch (1520 B for pointer items) in the 1536-B class, a leaf of
// points (1016 B) in the 1024-B one.
func (tr *Tree[T]) Bytes() int {
	if tr.root == nil {
		return 0
	}
	return tr.root.bytes()
}

func (n *node[T]) bytes() int {
	switch n.kind {
	case pointLeaf:
		return sizeClass(unsafe.Sizeof(pointNode[T]{}))
	case leaf:
		return sizeClass(unsafe.Sizeof(leafNode[T]{}))
	}
	c := sizeClass(unsafe.Sizeof(branchNode[T]{}))
	for _, ch := range n.children()[:n.count] {
		c += ch.bytes()
	}
	return c
}

// sizeClass is the size class of Go's allocator an object of size s lies
// in, for the sizes of the nodes (a multiple of 128 B above them).
func sizeClass(s uintptr) int {
	for _, c := range [...]uintptr{512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048} {
		if s <= c {
			return int(c)
		}
	}
	return int((s + 127) / 128 * 128)
}

// Len returns the number of items in the tree.
func (tr *Tree[T]) Len() int { return tr.count }

// Search calls iter for the items whose boxes intersect min, max (edges
// included), until it returns false.
func (tr *Tree[T]) Search(min, max [2]float32, iter func(min, max [2]float32, data T) bool) {
	target := rect{min, max}
	if tr.root == nil {
		return
	}
	if target.intersects(&tr.rect) {
		tr.root.search(target, iter)
	}
}

// Scan calls iter for every item, until it returns false.
func (tr *Tree[T]) Scan(iter func(min, max [2]float32, data T) bool) {
	if tr.root != nil {
		tr.root.scan(iter)
	}
}

func (n *node[T]) scan(iter func(min, max [2]float32, data T) bool) bool {
	if n.leaf() {
		for i := 0; i < int(n.count); i++ {
			r := n.at(i)
			if !iter(r.min, r.max, n.items()[i]) {
				return false
			}
		}
	} else {
		for i := 0; i < int(n.count); i++ {
			if !n.children()[i].scan(iter) {
				return false
			}
		}
	}
	return true
}

// swap two rectangles
func (n *node[T]) swap(i, j int) {
	if n.kind == pointLeaf {
		pts := n.points()
		pts[i], pts[j] = pts[j], pts[i]
	} else {
		rects := n.boxes()
		rects[i], rects[j] = rects[j], rects[i]
	}
	if n.leaf() {
		n.items()[i], n.items()[j] = n.items()[j], n.items()[i]
	} else {
		n.children()[i], n.children()[j] = n.children()[j], n.children()[i]
	}
}

func (n *node[T]) sortByAxis(axis int, rev, max bool) {
	n.qsort(0, int(n.count), axis, rev, max)
}

func (n *node[T]) sort() {
	n.qsort(0, int(n.count), 0, false, false)
}

func (n *node[T]) issorted() bool {
	for i := 1; i < int(n.count); i++ {
		if n.minX(i) < n.minX(i-1) {
			return false
		}
	}
	return true
}

func (n *node[T]) qsort(s, e int, axis int, rev, max bool) {
	nrects := e - s
	if nrects < 2 {
		return
	}
	left, right := 0, nrects-1
	pivot := nrects / 2 // rand and mod not worth it
	n.swap(s+pivot, s+right)
	// key is the value entries are ordered by.
	key := func(i int) float32 {
		r := n.at(s + i)
		if max {
			return r.max[axis]
		}
		return r.min[axis]
	}
	pk := key(right)
	for i := 0; i < nrects; i++ {
		if k := key(i); (!rev && k < pk) || (rev && pk < k) {
			n.swap(s+i, s+left)
			left++
		}
	}
	n.swap(s+left, s+right)
	n.qsort(s, s+left, axis, rev, max)
	n.qsort(s+left+1, e, axis, rev, max)
}

// Delete removes data, inserted with the box min, max.
func (tr *Tree[T]) Delete(min, max [2]float32, data T) {
	ir := rect{min, max}
	if tr.root == nil || !tr.rect.contains(&ir) {
		return
	}
	var reinsert []*node[T]
	removed, _ := tr.nodeDelete(&tr.rect, tr.root, &ir, data, &reinsert)
	if !removed {
		return
	}
	tr.count--
	for _, n := range reinsert {
		tr.count -= n.deepCount()
	}
	if tr.count == 0 {
		tr.root = nil
		tr.rect.min = [2]float32{0, 0}
		tr.rect.max = [2]float32{0, 0}
	} else {
		for !tr.root.leaf() && tr.root.count == 1 {
			tr.root = tr.root.children()[0]
		}
	}
	for i := range reinsert {
		tr.nodeReinsert(reinsert[i])
	}
}

func (tr *Tree[T]) nodeDelete(nr *rect, n *node[T], ir *rect, data T, reinsert *[]*node[T]) (removed, shrunk bool) {
	if n.leaf() {
		items := n.items()
		for i := n.fromX(ir.min[0]); i < int(n.count) && n.minX(i) <= ir.max[0]; i++ {
			if r := n.at(i); items[i] == data && ir.contains(&r) {
				// found the target item to delete
				if n.kind == pointLeaf {
					pts := n.points()
					copy(pts[i:n.count], pts[i+1:n.count])
				} else {
					copy(n.boxes()[i:n.count], n.boxes()[i+1:n.count])
				}
				copy(items[i:n.count], items[i+1:n.count])
				items[n.count-1] = tr.empty
				n.count--
				shrunk = ir.onedge(nr)
				if shrunk {
					*nr = n.rect()
				}
				return true, shrunk
			}
		}
		return false, false
	}
	rects := n.boxes()[:n.count]
	children := n.children()
	for i := range rects {
		if rects[i].min[0] > ir.min[0] {
			break // ordered by min x: no later child holds ir (fromX)
		}
		if !rects[i].contains(ir) {
			continue
		}
		crect := rects[i]
		removed, shrunk = tr.nodeDelete(&rects[i], children[i], ir, data, reinsert)
		if !removed {
			continue
		}
		if children[i].count == 0 || children[i].leaf() && children[i].count < minLeaf {
			*reinsert = append(*reinsert, children[i])
			copy(rects[i:], rects[i+1:])
			copy(children[i:n.count], children[i+1:n.count])
			children[n.count-1] = nil
			n.count--
			*nr = n.rect()
			return true, true
		}
		if shrunk {
			shrunk = n.childShrank(nr, i, &crect)
		}
		return true, shrunk
	}
	return false, false
}

// Replace puts data, boxed min, max, in the place of old, inserted with
// the box oldMin, oldMax. When the new box lies inside the box of old's
// leaf (a vehicle's step of a few tens of metres, mostly) the entry is
// rewritten where it is, and the leaf's box and its parents' shrink as a
// delete would shrink them: the walk down to the leaf is a delete's, but
// without a delete's removal and an insert's second walk, choice of
// subtree and shifting of entries (~9 % of the server's CPU under moving
// vehicles, issue 16 goal 1). Otherwise it is Delete then Insert.
func (tr *Tree[T]) Replace(oldMin, oldMax [2]float32, old T, min, max [2]float32, data T) {
	or, ir := rect{oldMin, oldMax}, rect{min, max}
	if tr.root != nil && tr.rect.contains(&or) {
		if found, _ := tr.nodeReplace(&tr.rect, tr.root, &or, old, &ir, data); found {
			return
		}
	}
	tr.Delete(oldMin, oldMax, old)
	tr.Insert(min, max, data)
}

// nodeReplace is Replace's in-place walk: found reports that old's entry
// was rewritten (false when old is absent or its leaf's box does not hold
// ir, and then nothing changed); shrunk, that nr shrank.
func (tr *Tree[T]) nodeReplace(nr *rect, n *node[T], or *rect, old T, ir *rect, data T) (found, shrunk bool) {
	if n.leaf() {
		items := n.items()
		for i := n.fromX(or.min[0]); i < int(n.count) && n.minX(i) <= or.max[0]; i++ {
			if items[i] != old {
				continue
			}
			if r := n.at(i); !or.contains(&r) {
				continue
			}
			// A leaf of points takes only a point in place; a box moves
			// to a leaf of boxes by Delete + Insert.
			if !nr.contains(ir) || n.kind == pointLeaf && !ir.isPoint() {
				return false, false
			}
			n.set(i, *ir)
			items[i] = data
			n.orderToRight(n.orderToLeft(i))
			if or.onedge(nr) {
				r := n.rect()
				shrunk = !r.equals(nr)
				*nr = r
			}
			return true, shrunk
		}
		return false, false
	}
	rects := n.boxes()[:n.count]
	children := n.children()
	for i := range rects {
		if rects[i].min[0] > or.min[0] {
			break // ordered by min x: no later child holds or (fromX)
		}
		if !rects[i].contains(or) {
			continue
		}
		crect := rects[i]
		found, shrunk = tr.nodeReplace(&rects[i], children[i], or, old, ir, data)
		if !found {
			continue
		}
		if shrunk {
			shrunk = n.childShrank(nr, i, &crect)
		}
		return true, shrunk
	}
	return false, false
}

// childShrank is what a delete (or an in-place replace) below child i
// leaves to do: it reports whether the child's box shrank from before, and
// then recomputes n's box into nr; either way child i is moved right to
// keep the entries ordered by min x.
func (n *node[T]) childShrank(nr *rect, i int, before *rect) bool {
	shrank := !n.boxes()[i].equals(before)
	if shrank {
		*nr = n.rect()
	}
	_ = n.orderToRight(i)
	return shrank
}

func (r *rect) equals(b *rect) bool {
	return !(r.min[0] < b.min[0] || r.min[0] > b.min[0] ||
		r.min[1] < b.min[1] || r.min[1] > b.min[1] ||
		r.max[0] < b.max[0] || r.max[0] > b.max[0] ||
		r.max[1] < b.max[1] || r.max[1] > b.max[1])
}

func (n *node[T]) deepCount() int {
	if n.leaf() {
		return int(n.count)
	}
	var count int
	for _, c := range n.children()[:n.count] {
		count += c.deepCount()
	}
	return count
}

func (tr *Tree[T]) nodeReinsert(n *node[T]) {
	if n.leaf() {
		items := n.items()[:n.count]
		for i := range items {
			r := n.at(i)
			tr.Insert(r.min, r.max, items[i])
		}
	} else {
		for _, c := range n.children()[:n.count] {
			tr.nodeReinsert(c)
		}
	}
}

// onedge reports whether r is on the edge of b.
func (r *rect) onedge(b *rect) bool {
	return !(r.min[0] > b.min[0] && r.min[1] > b.min[1] &&
		r.max[0] < b.max[0] && r.max[1] < b.max[1])
}

// Nearby calls iter for the items in increasing order of dist, until it
// returns false. dist gives the distance of an item's box (item true) or
// of a node's box, which must not exceed that of any box inside it.
func (tr *Tree[T]) Nearby(dist func(min, max [2]float32, data T, item bool) float64,
	iter func(min, max [2]float32, data T, dist float64) bool,
) {
	if tr.root == nil {
		return
	}
	q := tr.qpool.Get().(*queue[T])
	defer func() {
		*q = (*q)[:0]
		tr.qpool.Put(q)
	}()
	q.push(qnode[T]{rect: tr.rect, node: tr.root})
	for {
		qn, ok := q.pop()
		if !ok {
			return
		}
		if qn.node == nil {
			if !iter(qn.rect.min, qn.rect.max, qn.data, qn.dist) {
				return
			}
			continue
		}
		if qn.node.leaf() {
			items := qn.node.items()[:qn.node.count]
			for i := range items {
				r := qn.node.at(i)
				q.push(qnode[T]{dist: dist(r.min, r.max, items[i], true), rect: r, data: items[i]})
			}
		} else {
			rects := qn.node.boxes()[:qn.node.count]
			children := qn.node.children()[:qn.node.count]
			for i := range children {
				q.push(qnode[T]{dist: dist(rects[i].min, rects[i].max, tr.empty, false), rect: rects[i], node: children[i]})
			}
		}
	}
}

type qnode[T comparable] struct {
	dist float64  // distance to
	rect rect     // item or node rect
	data T        // item data (or empty for node)
	node *node[T] // node (or nil for leaf data)
}

type queue[T comparable] []qnode[T]

func (q *queue[T]) push(node qnode[T]) {
	*q = append(*q, node)
	nodes := *q
	i := len(nodes) - 1
	parent := (i - 1) / 2
	for ; i != 0 && nodes[parent].dist > nodes[i].dist; parent = (i - 1) / 2 {
		nodes[parent], nodes[i] = nodes[i], nodes[parent]
		i = parent
	}
}

func (q *queue[T]) pop() (qnode[T], bool) {
	nodes := *q
	if len(nodes) == 0 {
		return qnode[T]{}, false
	}
	var n qnode[T]
	n, nodes[0] = nodes[0], nodes[len(*q)-1]
	nodes = nodes[:len(nodes)-1]
	*q = nodes
	i := 0
	for {
		smallest := i
		left := i*2 + 1
		right := i*2 + 2
		if left < len(nodes) && nodes[left].dist <= nodes[smallest].dist {
			smallest = left
		}
		if right < len(nodes) && nodes[right].dist <= nodes[smallest].dist {
			smallest = right
		}
		if smallest == i {
			break
		}
		nodes[smallest], nodes[i] = nodes[i], nodes[smallest]
		i = smallest
	}
	return n, true
}

// Entry is one item of Fill and its box.
type Entry[T comparable] struct {
	Min, Max [2]float32
	Data     T
}

// Fill adds the items of es, the tree being empty, as a tree packed by
// Sort-Tile-Recursive: the boxes sorted by their centres' x and cut into
// about sqrt(leaves) vertical strips of whole nodes, each sorted by y and
// cut into nodes of perNode entries (the last one fewer), then the same
// for each level above. A tree that is not empty gets them by Insert. es
// is reordered.
//
// perNode (clamped to [2, MaxEntries]) trades memory for the cost of the
// next inserts: a full node splits at its next one, after which later
// inserts and deletes keep about the fill an insertion-built tree has.
func (tr *Tree[T]) Fill(es []Entry[T], perNode int) {
	if tr.root != nil {
		for _, e := range es {
			tr.Insert(e.Min, e.Max, e.Data)
		}
		return
	}
	if len(es) == 0 {
		return
	}
	perNode = min(max(perNode, 2), MaxEntries)
	tr.init()
	leaves := packLevel(es, perNode, func(e Entry[T]) rect { return rect{e.Min, e.Max} },
		func(group []Entry[T]) *node[T] {
			k := pointLeaf
			for i := range group {
				if !IsPoint(group[i].Min, group[i].Max) {
					k = leaf
					break
				}
			}
			n := newNode[T](k)
			for i := range group {
				n.set(i, rect{group[i].Min, group[i].Max})
				n.items()[i] = group[i].Data
			}
			n.count = int16(len(group))
			return n
		})
	level := leaves
	for len(level) > 1 {
		cs := make([]child[T], len(level))
		for i, n := range level {
			cs[i] = child[T]{n.rect(), n}
		}
		level = packLevel(cs, perNode, func(c child[T]) rect { return c.r },
			func(group []child[T]) *node[T] {
				n := newNode[T](branch)
				for i, c := range group {
					n.boxes()[i] = c.r
					n.children()[i] = c.n
				}
				n.count = int16(len(group))
				return n
			})
	}
	tr.root = level[0]
	tr.rect = tr.root.rect()
	tr.count = len(es)
}

// child is a node and its box, an entry of a level above the leaves.
type child[T comparable] struct {
	r rect
	n *node[T]
}

// packLevel cuts es into groups of at most perNode by STR (see Fill) and
// makes a node of each with build, its entries ordered by min x as Insert
// keeps them.
func packLevel[E any, T comparable](es []E, perNode int, box func(E) rect, build func([]E) *node[T]) []*node[T] {
	nodes := (len(es) + perNode - 1) / perNode
	strips := int(math.Ceil(math.Sqrt(float64(nodes))))
	var sorter keySorter[E]
	sorter.sort(es, func(e E) float32 { r := box(e); return r.min[0] + r.max[0] })
	out := make([]*node[T], 0, nodes)
	perStrip := (nodes + strips - 1) / strips * perNode
	for len(es) > 0 {
		s := es[:min(perStrip, len(es))]
		es = es[len(s):]
		sorter.sort(s, func(e E) float32 { r := box(e); return r.min[1] + r.max[1] })
		for len(s) > 0 {
			g := s[:min(perNode, len(s))]
			s = s[len(g):]
			sorter.sort(g, func(e E) float32 { return box(e).min[0] })
			out = append(out, build(g))
		}
	}
	return out
}

// keySorter sorts by a float32 key through a slice of uint64s, the key's
// bits made to order as unsigned integers above the index: a sort of
// plain integers, several times faster than a sort by a comparison
// function (most of a packed load's time at a million points). Its
// buffers are kept for the next sort.
type keySorter[E any] struct {
	keys    []uint64
	scratch []E
}

func (ks *keySorter[E]) sort(es []E, key func(E) float32) {
	if len(es) < 2 {
		return
	}
	if cap(ks.keys) < len(es) {
		ks.keys, ks.scratch = make([]uint64, len(es)), make([]E, len(es))
	}
	keys, scratch := ks.keys[:len(es)], ks.scratch[:len(es)]
	for i, e := range es {
		keys[i] = uint64(orderedBits(key(e)))<<32 | uint64(i)
	}
	slices.Sort(keys)
	for i, k := range keys {
		scratch[i] = es[uint32(k)]
	}
	copy(es, scratch)
}

// orderedBits maps a float32 (not NaN) to a uint32 of the same order.
func orderedBits(f float32) uint32 {
	b := math.Float32bits(f)
	if b>>31 == 1 {
		return ^b
	}
	return b | 1<<31
}
