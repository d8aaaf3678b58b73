package tiles

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"strconv"
)

// A cold tile is gzipped at the fast gzipLevel, which is several times
// cheaper than a thorough level but 4-9% larger (centre z13 56.3% of raw
// vs 54.3% at compress/gzip's level 6, z15 60.7 vs 55.9%, z16 63.6 vs
// 58.2%). Most tiles are fetched more than once, so a cached tile that is
// asked for again is gzipped a second time, once, in the background, with
// compress/gzip at its default level 6 (pg_tileserv's compressor and
// level, on CityTwin's raw tiles, which are 1-2% smaller than its own),
// and the cache keeps the smaller body: the cold request stays fast and
// every later one gets the small body. The thorough body has an ETag of
// its own (betterSuffix), since its bytes differ from the fast body's; a
// client revalidating the fast body's ETag still gets a 304 (Tile).

// Tuning of the recompression queue.
const (
	// recompressQueue bounds the entries waiting for the worker; more
	// are dropped (counted) and offered again on their next hit.
	recompressQueue = 256
	// recompressLevel is compress/gzip's level for served-again tiles.
	recompressLevel = stdgzip.DefaultCompression
)

// ETag suffixes of the gzip forms, inside the quotes: the fast body and
// the thorough one that replaces it.
const (
	fastSuffix   = `-gz"`
	betterSuffix = `-gzb"`
)

// offerRecompress queues a cached entry served again for a thorough
// gzip, unless it has one or is queued already. It never blocks: with
// the queue full the entry is left for its next hit.
func (s *Server) offerRecompress(e *entry) {
	if !s.recompressing.Load() || e.better || e.gz == nil || !e.queued.CompareAndSwap(false, true) {
		return
	}
	select {
	case s.recompressQ <- e:
	default:
		e.queued.Store(false)
		s.metrics.recompressDropped.Inc()
	}
}

// recompressLoop gzips queued entries thoroughly until ctx ends (Run
// runs it; without Run nothing is offered). One
// worker: at most one core, and usually much less (once per tile served
// again).
func (s *Server) recompressLoop(ctx context.Context) {
	zw, _ := stdgzip.NewWriterLevel(nil, recompressLevel)
	var out bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.recompressQ:
			s.recompress(e, zw, &out)
		}
	}
}

// recompress replaces e in the cache with an entry whose gzip body is
// the thorough one, if it is smaller and e is still cached.
func (s *Server) recompress(e *entry, zw *stdgzip.Writer, out *bytes.Buffer) {
	raw, err := gunzipBytes(e.gz)
	if err != nil {
		s.opts.Logger.Error("tiles: recompress", "err", err)
		return
	}
	out.Reset()
	zw.Reset(out)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	if out.Len() >= len(e.gz) {
		// Nothing gained: the same body and tag, not offered again.
		same := e.withBetter(e.gz)
		same.etagGz, same.etagFast = e.etagGz, nil
		s.cache.replace(e, same)
		return
	}
	if s.cache.replace(e, e.withBetter(bytes.Clone(out.Bytes()))) {
		s.metrics.recompressed.Inc()
		s.metrics.recompressSaved.Add(float64(len(e.gz) - out.Len()))
	}
}

// withBetter is e with gz as its thorough gzip body.
func (e *entry) withBetter(gz []byte) *entry {
	etag := e.etagRaw[0]
	return &entry{key: e.key, layers: e.layers, gz: gz, better: true, etagRaw: e.etagRaw, etagFast: e.etagGz,
		etagGz: []string{etag[:len(etag)-1] + betterSuffix}, lengthGz: []string{strconv.Itoa(len(gz))},
		cacheControl: e.cacheControl}
}

// replace puts next in old's place (its LRU position too) if old is
// still cached: an entry dropped by a change since must not come back.
// It reports whether it did.
func (c *cache) replace(old, next *entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[old.key]
	if !ok || el.Value.(*entry) != old {
		return false
	}
	el.Value = next
	c.size += next.cost() - old.cost()
	for c.size > c.max {
		c.removeElement(c.lru.Back())
	}
	return true
}
