package tiles

import (
	"context"
	"errors"
	"math"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/twin"
)

// maxTilesPerZoom is how many tiles of one zoom a change may enumerate;
// beyond it (a district boundary at z18), the cache is scanned instead.
const maxTilesPerZoom = 64

// drainBatch is how many feed changes one Since call reads.
const drainBatch = 4096

// Run applies the twin's changes to the cache until ctx ends: every
// Upsert or Remove drops the cached tiles that its old and new bounds
// cover, at every cached zoom where its layer appears, for every cached
// layer list that includes its layer. When the feed has moved past the
// changes not yet read (twin.ErrTooOld), the whole cache is purged.
// Handlers also catch up before answering from the cache, so a tile is
// never served stale even if Run lags; Run keeps that catch-up short.
// Run also runs the worker that gzips cached tiles served again a second
// time, thoroughly (recompress.go).
func (s *Server) Run(ctx context.Context) error {
	// Best effort: out of the window the cache is purged. The cursor
	// reports the invalidator's position for the lag metrics.
	cur := s.tw.Feed().Follow("tiles", twin.BestEffort, s.processed())
	defer cur.Close()
	// The recompression worker of cached tiles served again, stopped
	// with Run.
	wctx, stop := context.WithCancel(ctx)
	worker := make(chan struct{})
	s.recompressing.Store(true)
	go func() { defer close(worker); s.recompressLoop(wctx) }()
	defer func() { s.recompressing.Store(false); stop(); <-worker }()
	for {
		s.drain()
		cur.Done(s.processed())
		select {
		case <-ctx.Done():
			return nil
		case <-cur.C():
		}
	}
}

// drain applies every change after the processed sequence number. It is
// safe to call from several goroutines; they take turns.
func (s *Server) drain() {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	feed := s.tw.Feed()
	for {
		s.cache.mu.Lock()
		after := s.cache.processed
		s.cache.mu.Unlock()
		changes, err := feed.SinceAppend(s.scan[:0], after, drainBatch)
		s.scan = changes
		if errors.Is(err, twin.ErrTooOld) {
			last := feed.Last()
			s.cache.mu.Lock()
			s.cache.purge()
			s.cache.processed = last
			s.cache.ring = s.cache.ring[:0]
			s.cache.ringNext = 0
			s.cache.ringFloor = last + 1
			s.cache.mu.Unlock()
			s.memo.clear()
			s.markAllDirty()
			s.metrics.purges.Inc()
			s.opts.Logger.Warn("tiles: feed moved past the invalidator; cache purged", "after", after, "last", last)
			continue
		}
		if err != nil || len(changes) == 0 {
			return
		}
		s.cache.mu.Lock()
		for i := range changes {
			s.applyChange(&changes[i])
		}
		s.cache.processed = changes[len(changes)-1].Seq
		s.cache.mu.Unlock()
	}
}

// applyChange invalidates what one change touches. Caller holds cache.mu.
//
// It runs once per change on the feed (every vehicle fix), so it does the
// least work that drops exactly the tiles coverRange says each bound
// covers: each bound is projected once (project), every zoom's tiles
// follow by integer shifts (rangeAt), and zooms where the cache holds
// no entry with the change's layer are skipped (there is nothing to drop).
func (s *Server) applyChange(c *twin.Change) {
	if c.Kind != twin.Upsert && c.Kind != twin.Remove {
		return
	}
	l := c.ID().Layer
	s.memo.forget(c.Old)
	s.markDirty(l)
	r := recent{seq: c.Seq, layer: l}
	placed := [2]*twin.Feature{c.Old, c.New}
	for _, f := range placed {
		if f == nil || f.Geometry == nil {
			continue
		}
		r.bounds[r.n] = f.Geometry.Bound()
		r.n++
	}
	if r.n == 0 {
		return
	}
	s.cache.remember(r)
	zc := s.cache.zooms[l]
	if zc == nil || zc.total == 0 {
		return
	}
	minZ := uint8(MaxZoom)
	for _, f := range placed {
		if f != nil && f.Geometry != nil {
			minZ = min(minZ, minZoomFor(f))
		}
	}
	// An unmoved object (a property change) covers one bound.
	bounds := r.bounds[:r.n]
	if r.n == 2 && r.bounds[0] == r.bounds[1] {
		bounds = bounds[:1]
	}
	var covers [2]projected
	for i, b := range bounds {
		covers[i] = project(b)
	}
	cs := covers[:len(bounds)]
	dropped := 0
	scanFrom := -1
	for z := int(minZ); z <= s.opts.MaxCachedZoom; z++ {
		if zc.n[z] == 0 {
			continue
		}
		var ranges [2]tileRange
		total := 0
		for i := range cs {
			ranges[i] = cs[i].rangeAt(uint8(z))
			total += ranges[i].count()
		}
		if total > maxTilesPerZoom {
			scanFrom = z
			break
		}
		for i, tr := range ranges[:len(cs)] {
			for x := tr.minX; x <= tr.maxX; x++ {
				for y := tr.minY; y <= tr.maxY; y++ {
					// A tile of both ranges was done with the first.
					if i == 1 && ranges[0].contains(x, y) {
						continue
					}
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
			for i := range cs {
				if cs[i].rangeAt(t.Z).contains(t.X, t.Y) {
					return true
				}
			}
			return false
		})
	}
	if dropped > 0 {
		s.metrics.invalidated.Add(float64(dropped))
	}
}

// tileRange is an inclusive block of tiles at one zoom.
type tileRange struct{ minX, minY, maxX, maxY uint32 }

func (t tileRange) count() int {
	return int(t.maxX-t.minX+1) * int(t.maxY-t.minY+1)
}

func (t tileRange) contains(x, y uint32) bool {
	return x >= t.minX && x <= t.maxX && y >= t.minY && y <= t.maxY
}

// coverRange is the block of tiles at zoom z whose buffered area (the tile
// plus Buffer units on each side, as built) intersects b. It is the
// definition; applyChange computes the same blocks with project and
// rangeAt, which the tests check against it.
func coverRange(b orb.Bound, z uint8) tileRange {
	n := math.Ldexp(1, int(z))
	buf := float64(Buffer) / Extent
	clamp := func(v float64) uint32 {
		v = math.Floor(v)
		if v < 0 {
			return 0
		}
		if v > n-1 {
			return uint32(n - 1)
		}
		return uint32(v)
	}
	return tileRange{
		minX: clamp((b.Min[0]+180)/360*n - buf),
		maxX: clamp((b.Max[0]+180)/360*n + buf),
		minY: clamp(mercY(b.Max[1])*n - buf),
		maxY: clamp(mercY(b.Min[1])*n + buf),
	}
}

// Projected coordinates are in units of one Buffer at MaxZoom, 2^-fixedBits
// of the world: at zoom z a tile is 2^(MaxZoom-z+bufBits) units wide.
const (
	bufBits   = 6 // Extent/Buffer == 1<<bufBits
	fixedBits = MaxZoom + bufBits
)

// Compile-time check that Buffer<<bufBits == Extent (each is >= the other).
const (
	_ uint = Extent - Buffer<<bufBits
	_ uint = Buffer<<bufBits - Extent
)

// projected is a bound in Web Mercator, computed once per change: for each
// edge, P = floor(f * 2^fixedBits), where f is the world fraction
// coverRange computes for that edge ((lon+180)/360 or mercY(lat)),
// clamped to [0, 1].
//
// Why rangeAt equals coverRange: at zoom z, n = 2^z, coverRange takes
// floor(fl(f*n ± 1/64)) clamped to [0, n-1]. Clamping f to [0, 1] first
// changes no result (below 0 both edges give tile 0, above 1 tile n-1).
// f*n is exact (a power-of-two scaling), so the one rounding is of the
// sum, and it cannot carry the sum up to an integer: f*n - 1/64 is exact
// (a multiple of ulp(f*n) no larger than f*n) or in [-1/64, 0) (tile 0
// either way); f*n + 1/64 is exact unless it carries into the next
// binade, and then it lies within 1/64 above a power of two, nowhere near
// the next integer. So coverRange's index is the exact floor(f*n ± 1/64)
// = floor((f*2^(z+bufBits) ± 1) / 2^bufBits) = (A ± 1) >> bufBits, where
// A = floor(f*2^(z+bufBits)) = P >> (MaxZoom-z) (the floor of a floor
// divided by an integer).
type projected struct {
	x0, x1, y0, y1 int64 // west, east, north, south edges
	// nan: a coordinate is NaN (the twin accepts none); rangeAt then
	// falls back to coverRange, whose result for NaN is the platform's
	// float-to-integer conversion.
	nan bool
	b   orb.Bound
}

// project projects b once for rangeAt at every zoom.
func project(b orb.Bound) projected {
	north := mercY(b.Max[1])
	south := north // a point, or a horizontal line
	if b.Min[1] != b.Max[1] {
		south = mercY(b.Min[1])
	}
	p := projected{b: b}
	p.x0, p.nan = toFixed((b.Min[0]+180)/360, p.nan)
	p.x1, p.nan = toFixed((b.Max[0]+180)/360, p.nan)
	p.y0, p.nan = toFixed(north, p.nan)
	p.y1, p.nan = toFixed(south, p.nan)
	return p
}

// toFixed is floor(f * 2^fixedBits) with f clamped to [0, 1]; nan is
// set when f is NaN.
func toFixed(f float64, nan bool) (int64, bool) {
	if math.IsNaN(f) {
		return 0, true
	}
	f = max(0, min(1, f))
	return int64(math.Floor(f * (1 << fixedBits))), nan
}

// rangeAt is coverRange(p's bound, z).
func (p *projected) rangeAt(z uint8) tileRange {
	if p.nan {
		return coverRange(p.b, z)
	}
	shift := MaxZoom - uint(z)
	last := int64(1)<<z - 1
	tile := func(a int64) uint32 {
		return uint32(max(0, min(last, a>>bufBits)))
	}
	return tileRange{
		minX: tile(p.x0>>shift - 1),
		maxX: tile(p.x1>>shift + 1),
		minY: tile(p.y0>>shift - 1),
		maxY: tile(p.y1>>shift + 1),
	}
}

// bufferedBound is the lon/lat area a tile's content is drawn from.
func bufferedBound(t tileKey) orb.Bound {
	return maptile.New(t.X, t.Y, maptile.Zoom(t.Z)).Bound(float64(Buffer) / Extent)
}

// Sync applies every change made so far to the cache; tests and callers
// that need read-your-writes on tiles use it. The handlers call it too.
func (s *Server) Sync() {
	if s.tw.Feed().Last() != s.processed() {
		s.drain()
	}
}

func (s *Server) processed() uint64 {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.processed
}
