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
func (s *Server) Run(ctx context.Context) error {
	// Best effort: out of the window the cache is purged. The cursor
	// reports the invalidator's position for the lag metrics.
	cur := s.tw.Feed().Follow("tiles", twin.BestEffort, s.processed())
	defer cur.Close()
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
		changes, err := feed.Since(after, drainBatch)
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
func (s *Server) applyChange(c *twin.Change) {
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

// tileRange is an inclusive block of tiles at one zoom.
type tileRange struct{ minX, minY, maxX, maxY uint32 }

func (t tileRange) count() int {
	return int(t.maxX-t.minX+1) * int(t.maxY-t.minY+1)
}

func (t tileRange) contains(x, y uint32) bool {
	return x >= t.minX && x <= t.maxX && y >= t.minY && y <= t.maxY
}

// coverRange is the block of tiles at zoom z whose buffered area (the tile
// plus Buffer units on each side, as built) intersects b.
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
