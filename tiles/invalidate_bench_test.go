package tiles

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/twin"
)

// BenchmarkApplyChange measures the invalidation of one feed change (the
// drain loop's work per change, cache lock held) for moving vehicles
// (points) and edited buildings (polygons about 50 m wide) spread over the
// benchmark city centre, with the cache holding: nothing ("empty"); tiles
// of other layers over the whole area at z8-z16 ("other", looked up but
// never dropped); tiles of the changed layer far away at z8-z16 ("far":
// every zoom holds something of the layer, nothing is dropped, so the
// cache stays the same from one iteration to the next).
func BenchmarkApplyChange(b *testing.B) {
	for _, kind := range []string{"point", "polygon"} {
		for _, cached := range []string{"empty", "other", "far"} {
			b.Run(kind+"/"+cached, func(b *testing.B) {
				s := New(twin.New(twin.Options{FeedSize: 1 << 10}), Options{MemoFeatures: -1})
				changes := benchChanges(kind, 4096)
				l := changes[0].New.ID.Layer
				other := twin.Roads
				switch cached {
				case "other":
					benchFill(s, benchCentre, []twin.Layer{other})
				case "far":
					far := orb.Point{benchCentre[0] + 5, benchCentre[1] + 5}
					benchFill(s, far, []twin.Layer{l})
					benchFill(s, far, []twin.Layer{other, l})
				}
				n0, _ := s.cache.stats()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				s.cache.mu.Lock()
				for i := range b.N {
					s.applyChange(&changes[i%len(changes)])
				}
				s.cache.mu.Unlock()
				// The process's CPU time per change: on a machine shared
				// with other jobs, the figure to compare (ns/op is wall
				// time and mostly measures the others).
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
				b.StopTimer()
				if n, _ := s.cache.stats(); n != n0 {
					b.Fatalf("cache went from %d to %d entries; the benchmark must not drop any", n0, n)
				}
			})
		}
	}
}

// benchChanges makes n changes of the given kind within 0.1° of the
// benchmark centre: vehicles moving about 20 m, or buildings edited in
// place.
func benchChanges(kind string, n int) []twin.Change {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]twin.Change, n)
	for i := range out {
		p := orb.Point{benchCentre[0] + (rng.Float64()-0.5)*0.2, benchCentre[1] + (rng.Float64()-0.5)*0.2}
		var oldG, newG orb.Geometry
		var id twin.ID
		switch kind {
		case "point":
			id = twin.NewID(twin.Vehicles, fmt.Sprint("v", i))
			oldG, newG = p, orb.Point{p[0] + 0.0002, p[1] - 0.0001}
		default:
			id = twin.NewID(twin.Buildings, fmt.Sprint("b", i))
			const w = 0.0005
			sq := orb.Polygon{{{p[0], p[1]}, {p[0] + w, p[1]}, {p[0] + w, p[1] + w}, {p[0], p[1] + w}, {p[0], p[1]}}}
			oldG, newG = sq, sq
		}
		out[i] = twin.Change{Seq: uint64(i + 1), Kind: twin.Upsert,
			Old: &twin.Feature{ID: id, Geometry: oldG}, New: &twin.Feature{ID: id, Geometry: newG}}
	}
	return out
}

// benchFill caches a tiny entry of layers ls for every tile at z8-z16
// within 0.12° of c.
func benchFill(s *Server, c orb.Point, ls []twin.Layer) {
	area := orb.Bound{Min: orb.Point{c[0] - 0.12, c[1] - 0.12}, Max: orb.Point{c[0] + 0.12, c[1] + 0.12}}
	for z := maptile.Zoom(8); z <= 16; z++ {
		lo, hi := maptile.At(orb.Point{area.Min[0], area.Max[1]}, z), maptile.At(orb.Point{area.Max[0], area.Min[1]}, z)
		for x := lo.X; x <= hi.X; x++ {
			for y := lo.Y; y <= hi.Y; y++ {
				key := cacheKey{Layers: fmt.Sprint(ls), Tile: tileKey{Z: uint8(z), X: x, Y: y}}
				s.cache.put(newEntry(key, ls, []byte{1}, false), s.cache.processed)
			}
		}
	}
}
