package tiles

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin"
)

// refApplyChange is applyChange as it was before (every zoom from the
// layer's minimum to MaxCachedZoom, coverRange per zoom and bound, no
// skipping). Caller holds s.cache.mu.
func refApplyChange(s *Server, c *twin.Change) {
	if c.Kind != twin.Upsert && c.Kind != twin.Remove {
		return
	}
	l := c.ID().Layer
	s.memo.forget(c.Old)
	s.markDirty(l)
	r := recent{seq: c.Seq, layer: l}
	minZ := uint8(MaxZoom)
	for _, f := range []*twin.Feature{c.Old, c.New} {
		if f == nil || f.Geometry == nil {
			continue
		}
		r.bounds[r.n] = f.Geometry.Bound()
		r.n++
		minZ = min(minZ, minZoomFor(f))
	}
	if r.n == 0 {
		return
	}
	s.cache.remember(r)
	dropped := 0
	scanFrom := -1
	for z := int(minZ); z <= s.opts.MaxCachedZoom; z++ {
		var ranges [2]tileRange
		total := 0
		for i, b := range r.bounds[:r.n] {
			ranges[i] = coverRange(b, uint8(z))
			total += ranges[i].count()
		}
		if total > maxTilesPerZoom {
			scanFrom = z
			break
		}
		for _, tr := range ranges[:r.n] {
			for x := tr.minX; x <= tr.maxX; x++ {
				for y := tr.minY; y <= tr.maxY; y++ {
					dropped += s.cache.dropTile(tileKey{Z: uint8(z), X: x, Y: y}, l)
				}
			}
		}
	}
	if scanFrom >= 0 {
		dropped += s.cache.dropWhere(l, func(t tileKey) bool {
			if int(t.Z) < scanFrom {
				return false
			}
			for _, b := range r.bounds[:r.n] {
				if coverRange(b, t.Z).contains(t.X, t.Y) {
					return true
				}
			}
			return false
		})
	}
	s.metrics.invalidated.Add(float64(dropped))
}

// testSeed is TWIN_TILES_SEED or a random seed, logged for replay.
func testSeed(t *testing.T) uint64 {
	seed := testseed.Seed(t, "TWIN_TILES_SEED")
	return seed
}

// boundGen makes random bounds weighted to the edges where a tile index
// flips: tile borders and buffered tile borders at every zoom (and a few
// ulps either side), the antimeridian, the Mercator latitude limits and
// beyond, zoom 0's whole world, as well as points and small and large
// boxes over the city.
type boundGen struct{ rng *rand.Rand }

func (g boundGen) nudge(v float64) float64 {
	switch g.rng.IntN(3) {
	case 1:
		for range 1 + g.rng.IntN(3) {
			v = math.Nextafter(v, math.Inf(1))
		}
	case 2:
		for range 1 + g.rng.IntN(3) {
			v = math.Nextafter(v, math.Inf(-1))
		}
	}
	return v
}

// border is a world fraction on a tile border, or Buffer units either
// side of one, at a random zoom.
func (g boundGen) border() float64 {
	z := g.rng.IntN(MaxZoom + 1)
	k := float64(g.rng.Int64N(1<<z + 1))
	off := []float64{0, -float64(Buffer) / Extent, float64(Buffer) / Extent}[g.rng.IntN(3)]
	return (k + off) / math.Ldexp(1, z)
}

func (g boundGen) lon() float64 {
	var v float64
	switch g.rng.IntN(8) {
	case 0:
		v = -180 + 360*g.rng.Float64()
	case 1:
		v = []float64{-180, 180, 0}[g.rng.IntN(3)]
	case 2, 3:
		v = g.border()*360 - 180
	case 4:
		v = []float64{-1, 1}[g.rng.IntN(2)] * (180 + 2*g.rng.Float64())
	default:
		v = 106.3 + 0.5*g.rng.Float64()
	}
	return g.nudge(v)
}

func (g boundGen) lat() float64 {
	const maxLat = 85.05112877980659
	var v float64
	switch g.rng.IntN(8) {
	case 0:
		v = -maxLat + 2*maxLat*g.rng.Float64()
	case 1:
		v = []float64{-maxLat, maxLat, -85.0511, 85.0511, -90, 90, 0}[g.rng.IntN(7)]
	case 2, 3:
		y := g.border()
		v = math.Atan(math.Sinh(math.Pi*(1-2*y))) * 180 / math.Pi
	case 4:
		v = []float64{-1, 1}[g.rng.IntN(2)] * (85 + 5*g.rng.Float64())
	default:
		v = 29.3 + 0.5*g.rng.Float64()
	}
	return g.nudge(v)
}

func (g boundGen) bound() orb.Bound {
	p := orb.Point{g.lon(), g.lat()}
	switch g.rng.IntN(10) {
	case 0, 1, 2, 3:
		return p.Bound()
	case 4, 5, 6:
		size := math.Pow(10, -float64(g.rng.IntN(7)))
		q := orb.Point{p[0] + size*g.rng.Float64(), p[1] + size*g.rng.Float64()}
		if g.rng.IntN(4) == 0 {
			q[g.rng.IntN(2)] = p[g.rng.IntN(2)] // a horizontal or vertical line
		}
		return orb.MultiPoint{p, q}.Bound()
	case 7, 8:
		return orb.MultiPoint{p, {g.lon(), g.lat()}}.Bound()
	}
	// Across the world to the antimeridian.
	return orb.MultiPoint{{-180 + g.rng.Float64()*g.rng.Float64()*360, g.lat()}, {180, g.lat()}}.Bound()
}

// TestRangeAtMatchesCoverRange checks project and rangeAt against the
// float computation at every zoom for random bounds weighted to the edges.
func TestRangeAtMatchesCoverRange(t *testing.T) {
	g := boundGen{rand.New(rand.NewPCG(testSeed(t), 1))}
	n := 200000
	if testing.Short() {
		n = 50000
	}
	check := func(b orb.Bound) {
		t.Helper()
		p := project(b)
		for z := uint8(0); z <= MaxZoom; z++ {
			if got, want := p.rangeAt(z), coverRange(b, z); got != want {
				t.Fatalf("bound %v (%#v) z%d: rangeAt %+v, coverRange %+v", b, b, z, got, want)
			}
		}
	}
	for _, b := range []orb.Bound{world, {Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}},
		orb.Point{180, 85.05112877980659}.Bound(), orb.Point{-180, -85.05112877980659}.Bound(),
		orb.Point{math.NaN(), 0}.Bound(), orb.Point{0, math.NaN()}.Bound(),
		orb.Point{math.Inf(1), math.Inf(-1)}.Bound(), orb.Point{math.Inf(-1), math.Inf(1)}.Bound()} {
		check(b)
	}
	for range n {
		check(g.bound())
	}
}

// TestApplyChangeMatchesReference applies random changes to two servers
// holding the same cache entries, one with applyChange and one with
// refApplyChange, and checks that both drop exactly the same entries. The
// entries sit on and just outside the tiles the change covers, at random
// zooms (others left empty), with the change's layer, other layers or both.
func TestApplyChangeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	g := boundGen{rng}
	iters := 1000
	if testing.Short() {
		iters = 200
	}
	type pair struct{ ref, got *Server }
	var pairs []pair
	for _, maxZ := range []int{1, 8, 13, 18, MaxZoom} {
		tw := twin.New(twin.Options{FeedSize: 16})
		opts := Options{MaxCachedZoom: maxZ, MemoFeatures: -1}
		pairs = append(pairs, pair{New(tw, opts), New(tw, opts)})
	}
	layers := []twin.Layer{twin.Vehicles, twin.Buildings, twin.Roads, twin.Regions}
	geometry := func(b orb.Bound) orb.Geometry {
		switch {
		case b.Min == b.Max:
			return b.Min
		case b.Min[0] == b.Max[0] || b.Min[1] == b.Max[1]:
			return orb.LineString{b.Min, b.Max}
		}
		return b.ToPolygon()
	}
	var dropped, scans, checked int
	for i := range iters {
		p := pairs[rng.IntN(len(pairs))]
		l := layers[rng.IntN(len(layers))]
		other := layers[(slices.Index(layers, l)+1+rng.IntN(len(layers)-1))%len(layers)]
		id := twin.NewID(l, fmt.Sprint("o", i))
		feature := func(b orb.Bound) *twin.Feature {
			f := &twin.Feature{ID: id, Geometry: geometry(b),
				Props: twin.NewProps(map[string]any{"class": []string{"primary", "residential"}[rng.IntN(2)]})}
			if rng.IntN(20) == 0 {
				f.Geometry = nil
			}
			return f
		}
		c := twin.Change{Seq: uint64(i + 1), Kind: twin.Upsert}
		ob := g.bound()
		nb := ob
		switch rng.IntN(7) {
		case 0:
			c.Old = feature(ob) // unmoved
			c.New = feature(ob)
		case 6: // resized: one corner stays
			nb = g.bound()
			if rng.IntN(2) == 0 {
				nb = orb.MultiPoint{ob.Min, nb.Max}.Bound()
			} else {
				nb = orb.MultiPoint{nb.Min, ob.Max}.Bound()
			}
			c.Old, c.New = feature(ob), feature(nb)
		case 1:
			c.New = feature(ob)
		case 2:
			c.Kind = twin.Remove
			c.Old = feature(ob)
		default:
			nb = g.bound()
			if rng.IntN(2) == 0 { // a short move
				d := math.Pow(10, -float64(rng.IntN(6)))
				nb = orb.Bound{Min: orb.Point{ob.Min[0] + d*rng.NormFloat64(), ob.Min[1] + d*rng.NormFloat64()}}
				nb.Max = orb.Point{nb.Min[0] + ob.Max[0] - ob.Min[0], nb.Min[1] + ob.Max[1] - ob.Min[1]}
			}
			c.Old, c.New = feature(ob), feature(nb)
		}

		// The same entries in both caches.
		for _, s := range []*Server{p.ref, p.got} {
			s.cache.mu.Lock()
			s.cache.purge()
			s.cache.mu.Unlock()
		}
		lists := [][]twin.Layer{{l}, {other}, {other, l}, {l, other}}
		names := make([]string, len(lists))
		for j, ls := range lists {
			names[j] = fmt.Sprint(ls)
		}
		put := func(t0 tileKey) {
			for j, ls := range lists {
				if rng.IntN(3) != 0 {
					continue
				}
				key := cacheKey{Layers: names[j], Tile: t0}
				for _, s := range []*Server{p.ref, p.got} {
					if !s.cache.put(&entry{key: key, layers: ls, raw: []byte{1}}, s.cache.processed) {
						t.Fatalf("put %+v refused", key)
					}
				}
			}
		}
		for z := 0; z <= p.ref.opts.MaxCachedZoom; z++ {
			if rng.IntN(4) == 0 {
				continue // nothing cached at z
			}
			last := int64(1)<<z - 1
			clampT := func(v int64) uint32 { return uint32(max(0, min(last, v))) }
			for _, b := range []orb.Bound{ob, nb} {
				r := coverRange(b, uint8(z))
				x0, x1 := int64(r.minX)-1, int64(r.maxX)+1
				y0, y1 := int64(r.minY)-1, int64(r.maxY)+1
				if (x1-x0+1)*(y1-y0+1) <= 36 {
					for x := x0; x <= x1; x++ {
						for y := y0; y <= y1; y++ {
							put(tileKey{Z: uint8(z), X: clampT(x), Y: clampT(y)})
						}
					}
					continue
				}
				// A large block: its corners and edges, inside and out, and
				// a few tiles at random in it.
				for _, x := range []int64{x0, x0 + 1, x1 - 1, x1} {
					for _, y := range []int64{y0, y0 + 1, y1 - 1, y1} {
						put(tileKey{Z: uint8(z), X: clampT(x), Y: clampT(y)})
					}
				}
				for range 4 {
					put(tileKey{Z: uint8(z), X: clampT(x0 + rng.Int64N(x1-x0+1)), Y: clampT(y0 + rng.Int64N(y1-y0+1))})
				}
			}
			put(tileKey{Z: uint8(z), X: clampT(rng.Int64N(last + 1)), Y: clampT(rng.Int64N(last + 1))})
		}

		before := len(p.ref.cache.items)
		p.ref.cache.mu.Lock()
		refApplyChange(p.ref, &c)
		p.ref.cache.mu.Unlock()
		p.got.cache.mu.Lock()
		p.got.applyChange(&c)
		p.got.cache.mu.Unlock()

		if !sameKeys(p.ref.cache, p.got.cache) {
			want, got := cacheKeys(p.ref.cache), cacheKeys(p.got.cache)
			t.Fatalf("change %d (layer %s, old %v, new %v, max zoom %d): applyChange left %d entries, the reference %d\nonly applyChange kept: %v\nonly the reference kept: %v",
				i, l, boundOf(c.Old), boundOf(c.New), p.ref.opts.MaxCachedZoom, len(got), len(want), minus(got, want), minus(want, got))
		}
		checkZoomCounts(t, p.got.cache)
		dropped += before - len(p.ref.cache.items)
		checked += before
		for z := 0; z <= p.ref.opts.MaxCachedZoom; z++ {
			if coverRange(ob, uint8(z)).count()+coverRange(nb, uint8(z)).count() > maxTilesPerZoom {
				scans++
				break
			}
		}
	}
	for _, p := range pairs {
		if r, g := testutil.ToFloat64(p.ref.metrics.invalidated), testutil.ToFloat64(p.got.metrics.invalidated); r != g {
			t.Errorf("invalidated counters: reference %v, applyChange %v", r, g)
		}
	}
	t.Logf("%d changes: %d of %d cached entries dropped, %d changes scanned the cache at some zoom", iters, dropped, checked, scans)
	if dropped == 0 || dropped == checked || scans == 0 {
		t.Error("the random changes do not exercise both outcomes and the scan")
	}
}

func boundOf(f *twin.Feature) any {
	if f == nil || f.Geometry == nil {
		return nil
	}
	return f.Geometry.Bound()
}

// sameKeys reports whether a and b hold entries of the same keys.
func sameKeys(a, b *cache) bool {
	if len(a.items) != len(b.items) {
		return false
	}
	for k := range a.items {
		if _, ok := b.items[k]; !ok {
			return false
		}
	}
	return true
}

// cacheKeys lists the cached keys, sorted.
func cacheKeys(c *cache) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.items))
	for k := range c.items {
		out = append(out, fmt.Sprintf("%d/%d/%d %s", k.Tile.Z, k.Tile.X, k.Tile.Y, k.Layers))
	}
	slices.Sort(out)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, ok := slices.BinarySearch(b, s); !ok {
			out = append(out, s)
		}
	}
	return out
}

// checkZoomCounts checks the per-layer zoom counts against the entries.
func checkZoomCounts(t *testing.T, c *cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[twin.Layer]*zoomCounts{}
	for _, el := range c.items {
		e := el.Value.(*entry)
		for _, l := range e.layers {
			if want[l] == nil {
				want[l] = &zoomCounts{}
			}
			want[l].n[e.key.Tile.Z]++
			want[l].total++
		}
	}
	for _, l := range twin.Layers {
		w, g := want[l], c.zooms[l]
		if w == nil {
			w = &zoomCounts{}
		}
		if g == nil {
			g = &zoomCounts{}
		}
		if *w != *g {
			t.Fatalf("layer %s: zoom counts %+v, entries say %+v", l, *g, *w)
		}
	}
}
