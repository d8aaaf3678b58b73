package tiles

import (
	"container/list"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// tileKey is one tile position.
type tileKey struct {
	Z    uint8
	X, Y uint32
}

// cacheKey identifies one cached answer: the scope (per-request filter),
// the requested layer list and the tile.
type cacheKey struct {
	Scope  string
	Layers string
	Attrs  string // Attrs.key()
	Tile   tileKey
}

// entry is one built tile with its response headers. Cached entries keep
// only the gzip form (clients nearly all accept it; the rest get it
// inflated, but for the request that built it, which is answered from the
// raw bytes), uncached ones only raw. Immutable once made, but for
// queued; a thorough gzip body comes in a new entry (recompress.go).
type entry struct {
	key    cacheKey
	layers []twin.Layer
	raw    []byte
	gz     []byte
	// Header values: the ETag hashes raw; the gzip form's appends "-gz"
	// inside the quotes.
	etagRaw, etagGz []string
	lengthGz        []string // Content-Length of gz, when set
	cacheControl    []string
	// better: gz is the thorough body (recompress.go), not the fast one,
	// whose ETag is etagFast (still answered with a 304); queued: offered
	// to the recompression queue (the one mutable field).
	better   bool
	etagFast []string
	queued   atomic.Bool
}

// newEntry makes the entry of a built tile; cacheable ones are gzipped now
// and keep only that form (raw may then be the writer's buffer: it is not
// kept), uncacheable ones keep raw.
func newEntry(key cacheKey, layers []twin.Layer, raw []byte, cacheable bool) *entry {
	etag := etagOf(raw)
	e := &entry{key: key, layers: layers, raw: raw, etagRaw: []string{etag},
		etagGz: []string{etag[:len(etag)-1] + fastSuffix}, cacheControl: cacheControlHeader(layers)}
	if cacheable {
		e.gz = gzipBytes(raw)
		e.raw = nil
		e.lengthGz = []string{strconv.Itoa(len(e.gz))}
	}
	return e
}

func (e *entry) cost() int64 { return int64(len(e.raw)+len(e.gz)) + 256 }

func (e *entry) hasLayer(l twin.Layer) bool {
	for _, x := range e.layers {
		if x == l {
			return true
		}
	}
	return false
}

// recent is one processed change kept to validate tiles that were being
// built while it was processed.
type recent struct {
	seq    uint64
	layer  twin.Layer
	bounds [2]orb.Bound
	n      int // how many of bounds are set
}

// recentSize bounds the history of processed changes used by put.
const recentSize = 4096

// cache is an LRU of tiles bounded by bytes, indexed by tile position for
// invalidation. Its mutex also orders invalidation against insertion: a
// tile built from an older twin state is stored only if no change processed
// since then touches it. Safe for concurrent use.
type cache struct {
	mu     sync.Mutex
	max    int64
	size   int64
	lru    *list.List // of *entry, most recent first
	items  map[cacheKey]*list.Element
	byTile map[tileKey]map[cacheKey]struct{}
	// zooms counts the entries of each layer by zoom, so that a change
	// skips the zooms where nothing it could drop is cached.
	zooms map[twin.Layer]*zoomCounts

	processed uint64 // feed seq up to which invalidation has been applied
	ring      []recent
	ringNext  int
	// ringFloor is the lowest seq from which every processed change is in
	// ring; tiles consistent with an older seq cannot be verified.
	ringFloor uint64
}

func newCache(maxBytes int64) *cache {
	return &cache{max: maxBytes, lru: list.New(), items: map[cacheKey]*list.Element{},
		byTile: map[tileKey]map[cacheKey]struct{}{}, zooms: map[twin.Layer]*zoomCounts{}, ring: make([]recent, 0, recentSize), ringFloor: 1}
}

func (c *cache) get(k cacheKey) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*entry), true
}

// put stores e, built from the twin as of seq, unless a change processed
// after seq touches its tile (then the next request rebuilds it). It
// reports whether e was stored.
func (c *cache) put(e *entry, seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Tiles beyond MaxZoom are never requested (ParseTilePath) nor
	// counted (zoomCounts).
	if e.cost() > c.max || e.key.Tile.Z > MaxZoom {
		return false
	}
	if c.processed > seq {
		if seq+1 < c.ringFloor {
			return false
		}
		tb := bufferedBound(e.key.Tile)
		for i := range c.ring {
			r := &c.ring[i]
			if r.seq <= seq || !e.hasLayer(r.layer) {
				continue
			}
			for _, b := range r.bounds[:r.n] {
				if b.Intersects(tb) {
					return false
				}
			}
		}
	}
	if old, ok := c.items[e.key]; ok {
		c.removeElement(old)
	}
	el := c.lru.PushFront(e)
	c.items[e.key] = el
	set := c.byTile[e.key.Tile]
	if set == nil {
		set = map[cacheKey]struct{}{}
		c.byTile[e.key.Tile] = set
	}
	set[e.key] = struct{}{}
	c.count(e, 1)
	c.size += e.cost()
	for c.size > c.max {
		c.removeElement(c.lru.Back())
	}
	return true
}

// removeElement drops one entry. Caller holds mu.
func (c *cache) removeElement(el *list.Element) {
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(c.items, e.key)
	if set := c.byTile[e.key.Tile]; set != nil {
		delete(set, e.key)
		if len(set) == 0 {
			delete(c.byTile, e.key.Tile)
		}
	}
	c.count(e, -1)
	c.size -= e.cost()
}

// zoomCounts counts the cached entries that include one layer: per zoom
// and in all.
type zoomCounts struct {
	n     [MaxZoom + 1]int32
	total int
}

// count adds d to the zoom counts of e's layers. Caller holds mu.
func (c *cache) count(e *entry, d int32) {
	for _, l := range e.layers {
		zc := c.zooms[l]
		if zc == nil {
			zc = &zoomCounts{}
			c.zooms[l] = zc
		}
		zc.n[e.key.Tile.Z] += d
		zc.total += int(d)
	}
}

// dropTile removes the entries of one tile that include layer l and
// returns how many. Caller holds mu.
func (c *cache) dropTile(t tileKey, l twin.Layer) int {
	set := c.byTile[t]
	if len(set) == 0 {
		return 0
	}
	n := 0
	for k := range set {
		el := c.items[k]
		if el.Value.(*entry).hasLayer(l) {
			c.removeElement(el)
			n++
		}
	}
	return n
}

// dropWhere removes every entry with layer l for which match is true; used
// when a change covers too many tiles to enumerate. Caller holds mu.
func (c *cache) dropWhere(l twin.Layer, match func(tileKey) bool) int {
	n := 0
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*entry)
		if e.hasLayer(l) && match(e.key.Tile) {
			c.removeElement(el)
			n++
		}
		el = next
	}
	return n
}

// purge empties the cache. Caller holds mu.
func (c *cache) purge() {
	c.lru.Init()
	c.items = map[cacheKey]*list.Element{}
	c.byTile = map[tileKey]map[cacheKey]struct{}{}
	c.zooms = map[twin.Layer]*zoomCounts{}
	c.size = 0
}

// remember records a processed change for put's check. Caller holds mu.
func (c *cache) remember(r recent) {
	if len(c.ring) < recentSize {
		c.ring = append(c.ring, r)
		return
	}
	c.ringFloor = c.ring[c.ringNext].seq + 1
	c.ring[c.ringNext] = r
	c.ringNext = (c.ringNext + 1) % recentSize
}

// stats returns the entry count and bytes held.
func (c *cache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.size
}
