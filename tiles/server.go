// Package tiles serves the twin as Mapbox Vector Tiles (MVT 2.1), with
// TileJSON 3.0 descriptors, a MapLibre style for the command centre, and
// empty glyph ranges so the style works offline (CONTRACT §5).
//
// Tiles are built on request from the twin's R-trees (per-layer minimum
// zooms, one-pixel culling, Douglas-Peucker simplification per zoom, a
// per-layer feature budget keeping the most important features) and kept
// in a byte-bounded LRU. The cache is never stale: Run reads the twin's
// change feed and drops exactly the cached tiles each change's old and new
// bounds cover, and handlers catch up with the feed before answering from
// the cache. ETags hash the tile bytes, so they change exactly when content
// does.
package tiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// Options configure a Server. Zero values take defaults.
type Options struct {
	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // metrics; nil registers nothing
	// CacheBytes bounds the tile cache (raw plus gzip bytes); default 256 MiB.
	CacheBytes int64
	// Filter, when set, is asked once per tile built for the test of
	// which features the request's caller may see (the server passes the
	// auth scope check); nil: every feature. Once per tile, not per
	// feature: finding the caller in the context for each of a dense
	// tile's thousands of features was a context walk each. Tiles are
	// cached per Scope(ctx); with a Filter but no Scope, tiles are not
	// cached at all.
	Filter func(ctx context.Context) func(f *twin.Feature) bool
	// Scope names the caller's visibility class (e.g. its region code) for
	// the cache key; requests with equal scopes must see equal features.
	Scope func(ctx context.Context) string
	// ScopeBounds, when set and ok, is the extent of the caller's region:
	// TileJSON advertises it as `bounds` instead of the data extent, which
	// would show a street token the whole city's.
	ScopeBounds func(ctx context.Context) (orb.Bound, bool)
	// BaseURL is the public URL prefix (scheme://host[:port][/prefix]) for
	// absolute URLs in TileJSON and the style; default from the request's
	// Host (and X-Forwarded-Proto).
	BaseURL string
	// MaxFeatures is the per-layer feature budget of one tile; default 20000.
	MaxFeatures int
	// MaxCachedZoom is the highest zoom kept in the cache; default 18.
	MaxCachedZoom int
	// MemoFeatures sizes the table of per-feature tile data (attributes
	// and projected geometry, about 1 KB each, made on a feature's first
	// tile) reused across tiles; negative disables it. Default: twice the
	// twin's objects at New, at least 65536 and at most 262144. A table
	// smaller than a zoom's working set thrashes: with the former fixed
	// 65536, the 3x3 z13 tiles of demo scale 2 (about 90,000 features)
	// rebuilt most memos on every cold tile, two thirds of its CPU.
	MemoFeatures int
	// OmitID are the layers whose tiles leave out the string id
	// ("layer/name") and version attributes unless ?attrs= names them:
	// the integer MVT feature id (FeatureID) identifies the object, and
	// the two strings are most of a small feature's bytes.
	OmitID map[twin.Layer]bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 256 << 20
	}
	if o.MaxFeatures <= 0 {
		o.MaxFeatures = 20000
	}
	if o.MaxCachedZoom <= 0 {
		o.MaxCachedZoom = 18
	}
	if o.MaxCachedZoom > MaxZoom {
		o.MaxCachedZoom = MaxZoom
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return o
}

// Bounds of the default Options.MemoFeatures.
const (
	minMemoFeatures = 1 << 16
	maxMemoFeatures = 1 << 18
)

// Server builds, caches and serves tiles. Safe for concurrent use.
type Server struct {
	scan     []twin.Change // drain's last read from the feed, reused (under drainMu)
	opts     Options
	tw       *twin.Twin
	cache    *cache
	memo     *memoTable // nil when disabled
	drainMu  sync.Mutex
	metrics  metrics
	counters counters

	boundsMu sync.Mutex
	bounds   map[twin.Layer]layerBounds

	fieldsMu sync.Mutex
	fields   map[twin.Layer]layerFields

	flightMu sync.Mutex
	flight   map[cacheKey]*flight

	// recompressQ feeds Run's recompression worker, which sets
	// recompressing while it runs (recompress.go).
	recompressQ   chan *entry
	recompressing atomic.Bool
}

// flight is one tile build that concurrent requests for the same key wait
// for instead of building it again (a wall of screens opening the same
// view, or every client refetching a tile a change just invalidated).
type flight struct {
	done chan struct{}
	e    *entry
	seq  uint64 // feed seq the content is consistent with
	err  error
	// waiters counts requests waiting on done (under flightMu; tests).
	waiters int
}

// counters are the request counters by result, resolved once.
type counters struct {
	hit, miss, notModified, errors prometheus.Counter
}

type metrics struct {
	requests    *prometheus.CounterVec
	generate    prometheus.Histogram
	invalidated prometheus.Counter
	purges      prometheus.Counter
	cacheBytes  prometheus.GaugeFunc
	// Recompression of cached tiles served again (recompress.go).
	recompressed, recompressDropped, recompressSaved prometheus.Counter
}

// New makes a tile server over tw. Call Run to keep the cache in step
// with the twin (handlers stay correct without it, but catch up themselves).
func New(tw *twin.Twin, opts Options) *Server {
	opts = opts.withDefaults()
	if opts.MemoFeatures == 0 {
		opts.MemoFeatures = min(max(2*tw.Len(), minMemoFeatures), maxMemoFeatures)
	}
	s := &Server{opts: opts, tw: tw, cache: newCache(opts.CacheBytes),
		memo: newMemoTable(opts.MemoFeatures), bounds: map[twin.Layer]layerBounds{},
		fields: map[twin.Layer]layerFields{},
		flight: map[cacheKey]*flight{}, recompressQ: make(chan *entry, recompressQueue)}
	// Nothing is cached yet, so changes before now need no invalidation.
	s.cache.processed = tw.Feed().Last()
	s.cache.ringFloor = s.cache.processed + 1
	s.metrics = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_tiles_requests_total",
			Help: "Tile requests by result (hit, miss, not_modified, error)."}, []string{"result"}),
		generate: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_tiles_generate_seconds",
			Help: "Time to build one tile from the twin.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tiles_invalidated_total",
			Help: "Cached tiles dropped because a change touched them."}),
		purges: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tiles_cache_purges_total",
			Help: "Whole-cache purges after the invalidator fell behind the feed window."}),
		cacheBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "twin_tiles_cache_bytes",
			Help: "Bytes held by the tile cache."}, func() float64 { _, b := s.cache.stats(); return float64(b) }),
		recompressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tiles_recompressed_total",
			Help: "Cached tiles served again whose fast gzip body was replaced by a smaller thorough one."}),
		recompressDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tiles_recompress_dropped_total",
			Help: "Cached tiles served again not queued for a thorough gzip (queue full; offered again on a later hit)."}),
		recompressSaved: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tiles_recompress_saved_bytes_total",
			Help: "Bytes the thorough gzip bodies saved over the fast ones (once per tile)."}),
	}
	rq := s.metrics.requests
	s.counters = counters{hit: rq.WithLabelValues("hit"), miss: rq.WithLabelValues("miss"),
		notModified: rq.WithLabelValues("not_modified"), errors: rq.WithLabelValues("error")}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.metrics.requests, s.metrics.generate, s.metrics.invalidated,
			s.metrics.purges, s.metrics.cacheBytes, s.metrics.recompressed, s.metrics.recompressDropped,
			s.metrics.recompressSaved} {
			if err := opts.Registerer.Register(c); err != nil {
				opts.Logger.Warn("tiles: register metric", "err", err)
			}
		}
	}
	return s
}

// Handler serves GET /tiles/{path...} (tiles and TileJSON),
// GET /styles/command.json and GET /fonts/{fontstack}/{range}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tiles/{path...}", s.serveTiles)
	mux.HandleFunc("GET /styles/command.json", s.Style)
	mux.HandleFunc("GET /fonts/{fontstack}/{range}", s.Glyphs)
	return mux
}

// serveTiles dispatches /tiles/ paths to Tile or TileJSON.
func (s *Server) serveTiles(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, ".json") {
		s.TileJSON(w, r)
		return
	}
	s.Tile(w, r)
}

// tilePath is the part of the request path after /tiles/.
func tilePath(r *http.Request) string {
	if p := r.PathValue("path"); p != "" {
		return p
	}
	p, _ := strings.CutPrefix(r.URL.Path, "/tiles/")
	return p
}

// writeParseError maps ParseTilePath errors to 404 (unknown layer) or 400.
func writeParseError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrUnknownLayer) {
		httpx.Error(w, http.StatusNotFound, "unknown layer", err.Error())
		return
	}
	httpx.Error(w, http.StatusBadRequest, "bad tile path", err.Error())
}

// Tile answers GET /tiles/{layers}/{z}/{x}/{y}.mvt.
func (s *Server) Tile(w http.ResponseWriter, r *http.Request) {
	req, err := ParseTilePath(tilePath(r))
	if err == nil && req.Kind != KindTile {
		err = fmt.Errorf("%w: want {layers}/{z}/{x}/{y}.mvt", ErrBadPath)
	}
	if err == nil && r.URL.RawQuery != "" {
		req.Attrs, err = ParseAttrs(r.URL.Query())
	}
	if err != nil {
		s.metrics.requests.WithLabelValues("error").Inc()
		writeParseError(w, err)
		return
	}
	gz := acceptsGzip(r)
	e, raw, hit, err := s.tile(r.Context(), req, !gz)
	if err != nil {
		s.metrics.requests.WithLabelValues("error").Inc()
		if r.Context().Err() != nil {
			return // client went away
		}
		s.opts.Logger.Error("tiles: build", "z", req.Z, "x", req.X, "y", req.Y, "err", err)
		httpx.Error(w, http.StatusInternalServerError, "tile build failed", err.Error())
		return
	}
	h := w.Header()
	// The entry's header values are built once per tile and shared
	// (read-only; net/http never modifies them).
	h["Vary"] = hdrVary
	h["Content-Type"] = hdrMVT
	h["Cache-Control"] = e.cacheControl
	etag := e.etagRaw
	if gz {
		etag = e.etagGz
		h["Content-Encoding"] = hdrGzip
	}
	h["Etag"] = etag
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && (matchETag(inm[0], etag[0]) ||
		gz && e.etagFast != nil && matchETag(inm[0], e.etagFast[0])) {
		// A client holding the fast gzip body of a tile since gzipped
		// thoroughly (recompress.go) keeps it: it is the same tile, and a
		// 304 costs less than the bytes the thorough body saves. The 304
		// carries the tag of what the client holds, so that its cache
		// freshens that response (RFC 9111 §4.3.4).
		if !matchETag(inm[0], etag[0]) {
			h["Etag"] = e.etagFast
		}
		delete(h, "Content-Encoding")
		s.counters.notModified.Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	var body []byte
	var length []string
	switch {
	case gz && e.gz != nil:
		body, length = e.gz, e.lengthGz
	case gz:
		body = gzipBytes(e.raw)
		length = []string{strconv.Itoa(len(body))}
	case raw != nil:
		body = raw
		length = []string{strconv.Itoa(len(body))}
	case e.gz == nil:
		body = e.raw
		length = []string{strconv.Itoa(len(body))}
	default:
		if body, err = gunzipBytes(e.gz); err != nil {
			s.counters.errors.Inc()
			httpx.Error(w, http.StatusInternalServerError, "tile build failed", err.Error())
			return
		}
		length = []string{strconv.Itoa(len(body))}
	}
	if hit {
		s.counters.hit.Inc()
		if gz {
			s.offerRecompress(e)
		}
	} else {
		s.counters.miss.Inc()
	}
	h["Content-Length"] = length
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// Shared header values of tile responses (never modified).
var (
	hdrVary = []string{"Accept-Encoding"}
	hdrMVT  = []string{"application/vnd.mapbox-vector-tile"}
	hdrGzip = []string{"gzip"}
)

// tile returns the tile from the cache (after catching up with the feed)
// or builds it, caching it when the request's scope allows. With wantRaw
// (a client that does not accept gzip), a tile this request built comes
// with its raw bytes too, so that a cached one is not inflated again.
func (s *Server) tile(ctx context.Context, req Request, wantRaw bool) (e *entry, raw []byte, hit bool, err error) {
	cacheable := int(req.Z) <= s.opts.MaxCachedZoom && (s.opts.Filter == nil || s.opts.Scope != nil)
	var key cacheKey
	if cacheable {
		key = cacheKey{Layers: req.LayerKey(), Attrs: req.Attrs.key(), Tile: tileKey{Z: req.Z, X: req.X, Y: req.Y}}
		if s.opts.Scope != nil {
			key.Scope = s.opts.Scope(ctx)
		}
		s.Sync()
		if e, ok := s.cache.get(key); ok {
			return e, nil, true, nil
		}
		asked := s.tw.Feed().Last()
		s.flightMu.Lock()
		if f, ok := s.flight[key]; ok {
			f.waiters++
			s.flightMu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, nil, false, fmt.Errorf("wait for tile: %w", ctx.Err())
			}
			// Use the shared result only if it includes every change made
			// before this request arrived; else build afresh below.
			if f.err == nil && f.seq >= asked {
				return f.e, nil, true, nil
			}
		} else {
			f := &flight{done: make(chan struct{})}
			s.flight[key] = f
			s.flightMu.Unlock()
			defer func() {
				s.flightMu.Lock()
				delete(s.flight, key)
				s.flightMu.Unlock()
				close(f.done)
			}()
			e, raw, seq, err := s.buildEntry(ctx, req, key, true, wantRaw)
			f.e, f.seq, f.err = e, seq, err
			return e, raw, false, err
		}
	}
	e, raw, _, err = s.buildEntry(ctx, req, key, cacheable, wantRaw)
	return e, raw, false, err
}

// buildEntry builds a tile with its ETag (and gzip form when cacheable)
// and offers it to the cache; with wantRaw it returns the raw tile too
// (else nil).
func (s *Server) buildEntry(ctx context.Context, req Request, key cacheKey, cacheable, wantRaw bool) (*entry, []byte, uint64, error) {
	start := time.Now()
	w := writerPool.Get().(*writer)
	defer writerPool.Put(w)
	seq, err := s.buildTo(ctx, w, req)
	if err != nil {
		return nil, nil, 0, err
	}
	raw := w.out // the writer's: copied only when kept
	if !cacheable || wantRaw {
		raw = append([]byte(nil), raw...)
	}
	e := newEntry(key, req.Layers, raw, cacheable)
	s.metrics.generate.Observe(time.Since(start).Seconds())
	if cacheable {
		s.cache.put(e, seq)
	}
	if !wantRaw {
		raw = nil
	}
	return e, raw, seq, nil
}

// cacheControl is short for tiles with a live layer (positions move every
// few seconds) and long for the static city.
func cacheControl(ls []twin.Layer) string { return cacheControlHeader(ls)[0] }

// cacheControlHeader is cacheControl as a shared header value (never
// modified).
func cacheControlHeader(ls []twin.Layer) []string {
	for _, l := range ls {
		if l.Live() {
			return hdrCacheLive
		}
	}
	return hdrCacheStatic
}

var (
	hdrCacheLive   = []string{"public, max-age=2"}
	hdrCacheStatic = []string{"public, max-age=3600"}
)

// etagOf is a strong ETag from a 64-bit hash of the tile bytes: FNV-1a
// taken a little-endian 64-bit word at a time (then the tail a byte at a
// time) and mixed at the end, eight times fewer steps than bytewise
// FNV-1a (3% of a dense cold tile). The same on every server, so a
// client's If-None-Match holds across a cluster.
func etagOf(b []byte) string {
	const prime = 1099511628211
	h := uint64(fnvOffset)
	for ; len(b) >= 8; b = b[8:] {
		h = (h ^ binary.LittleEndian.Uint64(b)) * prime
	}
	for _, c := range b {
		h = (h ^ uint64(c)) * prime
	}
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	const hex = "0123456789abcdef"
	var q [18]byte
	q[0], q[17] = '"', '"'
	for i := 16; i >= 1; i-- {
		q[i] = hex[h&0xf]
		h >>= 4
	}
	return string(q[:])
}

// matchETag implements If-None-Match: "*" or any listed tag (weak or strong).
func matchETag(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip (q > 0).
func acceptsGzip(r *http.Request) bool {
	for rest := r.Header.Get("Accept-Encoding"); rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		params = strings.ReplaceAll(params, " ", "")
		return params != "q=0" && params != "q=0.0" && params != "q=0.00" && params != "q=0.000"
	}
	return false
}

// gzipLevel is klauspost/compress's level 2, one of its fast levels:
// several times faster than the default and an MVT (mostly varints and
// repeated strings) grows only a few percent. klauspost/compress's
// deflate takes about half the CPU of compress/flate's BestSpeed for a
// smaller output; its level 2 takes no more CPU than its level 1 on the
// demo city's dense tiles and is 2% smaller (centre z13, 137 KB raw: 56.3
// vs 57.6% of raw in 0.61-0.66 vs 0.69-0.83 cpu-ms; z15 60.7 vs 61.9%;
// pg_tileserv's level 6 makes 54.3%, in 4-5 cpu-ms with compress/gzip).
const gzipLevel = 2

// gzipper is a pooled gzip writer (~800 KB of state) with the buffer it
// writes into, which grows to the largest tile once: a buffer sized per
// tile from a guess grew and copied itself on every dense tile (6% of
// its CPU).
type gzipper struct {
	zw  *gzip.Writer
	buf bytes.Buffer
}

// maxPooledGzipBuf bounds the buffer a pooled gzipper keeps.
const maxPooledGzipBuf = 4 << 20

var gzipPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzipLevel)
	return &gzipper{zw: zw}
}}

// gzipBytes is b gzipped, in a slice of its own of the exact size.
func gzipBytes(b []byte) []byte {
	g := gzipPool.Get().(*gzipper)
	g.buf.Reset()
	g.zw.Reset(&g.buf)
	_, _ = g.zw.Write(b)
	_ = g.zw.Close()
	out := append([]byte(nil), g.buf.Bytes()...)
	if g.buf.Cap() > maxPooledGzipBuf {
		g.buf = bytes.Buffer{}
	}
	gzipPool.Put(g)
	return out
}

// gunzipBytes inflates a cached tile for a client that does not accept
// gzip (rare: browsers and MapLibre all do).
func gunzipBytes(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gunzip tile: %w", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("gunzip tile: %w", err)
	}
	return out, nil
}

// baseURL is Options.BaseURL or the request's scheme and host.
func (s *Server) baseURL(r *http.Request) string {
	if s.opts.BaseURL != "" {
		return s.opts.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}
