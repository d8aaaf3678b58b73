package tiles

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/wkt"
	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
)

// benchCentre is Jiefangbei, the densest part of the demo city.
var benchCentre = orb.Point{106.5775, 29.5580}

const benchLayers = "buildings,roads,bridges"

var benchZooms = []maptile.Zoom{10, 13, 15, 16}

var bench struct {
	once sync.Once
	tw   *twin.Twin
	err  error
}

// benchScale is the demo city scale (TWIN_TILES_BENCH_SCALE, default 2:
// about 100,000 buildings).
func benchScale() int {
	if n, err := strconv.Atoi(os.Getenv("TWIN_TILES_BENCH_SCALE")); err == nil && n > 0 {
		return n
	}
	return 2
}

// benchMemo is Options.MemoFeatures of the benchmark's servers
// (TWIN_TILES_BENCH_MEMO, default 0: the server's default), to compare
// memo table sizes in one binary.
func benchMemo() int {
	n, _ := strconv.Atoi(os.Getenv("TWIN_TILES_BENCH_MEMO"))
	return n
}

// benchTwin loads the demo city into a twin once per test binary.
func benchTwin(b *testing.B) *twin.Twin {
	bench.once.Do(func() {
		city, err := demo.Generate(demo.Options{Scale: benchScale(), NoGrids: true})
		if err != nil {
			bench.err = err
			return
		}
		tw := twin.New(twin.Options{FeedSize: 1 << 10})
		tw.Load(city.All())
		bench.tw = tw
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.tw
}

// benchTiles is the 3x3 block of tiles around the centre at zoom z.
func benchTiles(z maptile.Zoom) []maptile.Tile {
	c := maptile.At(benchCentre, z)
	var out []maptile.Tile
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			out = append(out, maptile.New(uint32(int(c.X)+dx), uint32(int(c.Y)+dy), z))
		}
	}
	return out
}

// latencies records per-tile times and reports p50, p99 and tiles/s.
type latencies []time.Duration

func (l latencies) report(b *testing.B, elapsed time.Duration, bytes int64, cpu0 time.Duration) {
	if len(l) == 0 {
		return
	}
	// CPU per tile (the process's user+system time) is the figure to
	// compare on a loaded machine, where wall times mostly measure the
	// other jobs. cpu0 < 0: the work is another process's.
	if cpu0 >= 0 {
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(len(l)), "cpu-ms/tile")
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	pct := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(l))/elapsed.Seconds(), "tiles/s")
	b.ReportMetric(float64(bytes)/float64(len(l)), "B/tile")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkTile measures GET /tiles/buildings,roads,bridges/z/x/y.mvt
// (gzip accepted) on the demo city: cold (cache purged before every
// request: build, gzip, ETag; per-feature memos kept, as in service after
// a change), first (memos cleared too: the first tile ever over these
// features) and warm (answered from the cache); "build" is the
// uncompressed MVT build alone, comparable with BenchmarkPostGISBaseline
// (B/tile is then uncompressed too); cold-pgattrs is what
// scripts/bench-tiles.sh asks over HTTP: pg_tileserv's attributes plus an
// attribute no feature has, new in every request, so that each misses
// the cache and is built, gzipped, hashed and cached (the memos warmed
// by one pass over the tiles first).
func BenchmarkTile(b *testing.B) {
	tw := benchTwin(b)
	for _, mode := range []string{"build", "build-noid", "build-pgattrs", "cold", "cold-pgattrs", "first", "warm"} {
		for _, z := range benchZooms {
			b.Run(fmt.Sprintf("%s/z%d", mode, z), func(b *testing.B) {
				opts := Options{MemoFeatures: benchMemo()}
				if mode == "build-noid" {
					// Without the string id and version: the attributes of
					// pgTileSQLNoID.
					opts.OmitID = map[twin.Layer]bool{twin.Buildings: true, twin.Roads: true, twin.Bridges: true}
				}
				s := New(tw, opts)
				h := s.Handler()
				ts := benchTiles(z)
				urls := make([]string, len(ts))
				for i, tl := range ts {
					urls[i] = tileURL(benchLayers, tl)
				}
				if mode == "warm" || mode == "cold-pgattrs" {
					for _, u := range urls {
						benchGet(b, h, u)
					}
				}
				lat := make(latencies, 0, b.N)
				var total int64
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					if mode == "cold" || mode == "first" {
						s.cache.mu.Lock()
						s.cache.purge()
						s.cache.mu.Unlock()
					}
					if mode == "first" {
						s.memo.clear()
					}
					t0 := time.Now()
					if strings.HasPrefix(mode, "build") {
						tl := ts[i%len(ts)]
						req := Request{Kind: KindTile, Z: uint8(tl.Z), X: tl.X, Y: tl.Y,
							Layers: []twin.Layer{twin.Buildings, twin.Roads, twin.Bridges}}
						if mode == "build-pgattrs" {
							// ?attrs= with exactly pgTileSQLNoID's columns.
							req.Attrs = Attrs{Only: true, Keys: []string{"class", "height_m", "high_rise", "levels", "name",
								"oneway", "risk_color", "risk_level"}}
						}
						raw, _, err := s.build(context.Background(), req)
						if err != nil {
							b.Fatal(err)
						}
						total += int64(len(raw))
					} else if mode == "cold-pgattrs" {
						total += int64(benchGet(b, h, urls[i%len(urls)]+"?attrs="+benchPgAttrs+",zz"+strconv.Itoa(i)))
					} else {
						total += int64(benchGet(b, h, urls[i%len(urls)]))
					}
					lat = append(lat, time.Since(t0))
				}
				lat.report(b, time.Since(start), total, cpu0)
			})
		}
	}
}

// benchPgAttrs are the attributes of pg_tileserv's tables in
// scripts/bench-tiles.sh (and pgTileSQLNoID's columns).
const benchPgAttrs = "class,height_m,high_rise,levels,name,oneway,risk_color,risk_level"

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchGet(b *testing.B, h http.Handler, u string) int {
	r := httptest.NewRequest(http.MethodGet, u, nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := benchWriterPool.Get().(*benchWriter)
	defer benchWriterPool.Put(w)
	w.reset()
	h.ServeHTTP(w, r)
	if w.code != http.StatusOK {
		b.Fatalf("%s: %d", u, w.code)
	}
	return w.n
}

// benchWriter is a ResponseWriter that counts the body's bytes and keeps
// none: httptest.ResponseRecorder grows a new buffer to every tile's
// size, which a server writing to a connection does not (5% of a cold
// z15 tile's CPU, and a 49 KB buffer each).
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

var benchWriterPool = sync.Pool{New: func() any { return &benchWriter{h: http.Header{}} }}

func (w *benchWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}

// BenchmarkPostGISBaseline renders the same tiles from the same features
// with ST_AsMVT(ST_AsMVTGeom(...)) in PostGIS (a GiST index on a
// pre-transformed EPSG:3857 column, as pg_tileserv serves them), for
// comparison with BenchmarkTile/cold. It needs the test PostgreSQL server
// (internal/pgtest).
func BenchmarkPostGISBaseline(b *testing.B) {
	tw := benchTwin(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.New(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	loadPostGIS(b, ctx, conn, tw)
	for _, q := range []struct{ name, sql string }{{"", pgTileSQL}, {"noid/", pgTileSQLNoID}} {
		for _, z := range benchZooms {
			benchPostGIS(b, conn, q.name, q.sql, z)
		}
	}
}

// benchPostGIS runs one sub-benchmark of BenchmarkPostGISBaseline. Its
// CPU is PostgreSQL's, not this process's: no cpu-ms/tile.
func benchPostGIS(b *testing.B, conn *pgx.Conn, name, sql string, z maptile.Zoom) {
	ctx := context.Background()
	b.Run(fmt.Sprintf("%sz%d", name, z), func(b *testing.B) {
		ts := benchTiles(z)
		lat := make(latencies, 0, b.N)
		var total int64
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			tl := ts[i%len(ts)]
			t0 := time.Now()
			var mvt []byte
			if err := conn.QueryRow(ctx, sql, int(tl.Z), int(tl.X), int(tl.Y)).Scan(&mvt); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			total += int64(len(mvt))
		}
		lat.report(b, time.Since(start), total, -1)
	})
}

// pgTileSQL is one tile of buildings, roads and bridges with the same
// attributes and minimum zooms as the Go path (no pixel culling and no
// budget: the plain pg_tileserv-style query).
const pgTileSQL = `
WITH env AS (SELECT ST_TileEnvelope($1, $2, $3) AS e, ST_TileEnvelope($1, $2, $3, margin => 64.0/4096) AS m)
SELECT
 COALESCE((SELECT ST_AsMVT(q, 'buildings', 4096, 'geom', 'fid') FROM (
   SELECT fid, id, version, props->>'name' AS name, (props->>'height_m')::float8 AS height_m,
     (props->>'levels')::int AS levels, (props->>'high_rise')::bool AS high_rise, props->>'risk_color' AS risk_color,
     (props->>'risk_level')::int AS risk_level, ST_AsMVTGeom(g, env.e, 4096, 64, true) AS geom
   FROM tile_bench, env WHERE $1 >= 13 AND layer = 'buildings' AND g && env.m) q), ''::bytea)
 || COALESCE((SELECT ST_AsMVT(q, 'roads', 4096, 'geom', 'fid') FROM (
   SELECT fid, id, version, props->>'name' AS name, props->>'class' AS class, (props->>'oneway')::bool AS oneway,
     ST_AsMVTGeom(g, env.e, 4096, 64, true) AS geom
   FROM tile_bench, env WHERE layer = 'roads' AND g && env.m
     AND ($1 >= 10 OR ($1 >= 8 AND props->>'class' IN ('motorway','trunk','primary','motorway_link','trunk_link','primary_link')))) q), ''::bytea)
 || COALESCE((SELECT ST_AsMVT(q, 'bridges', 4096, 'geom', 'fid') FROM (
   SELECT fid, id, version, props->>'name' AS name, ST_AsMVTGeom(g, env.e, 4096, 64, true) AS geom
   FROM tile_bench, env WHERE $1 >= 8 AND layer = 'bridges' AND g && env.m) q), ''::bytea)`

// pgTileSQLNoID is pgTileSQL without the id and version columns (only
// the integer feature id identifies a feature), for BenchmarkTile/build-noid.
var pgTileSQLNoID = strings.ReplaceAll(pgTileSQL, "SELECT fid, id, version,", "SELECT fid,")

// loadPostGIS copies the twin's buildings, roads and bridges into
// tile_bench(id, layer, fid, version, props, g EPSG:3857) with a GiST index.
func loadPostGIS(b *testing.B, ctx context.Context, conn *pgx.Conn, tw *twin.Twin) {
	b.Helper()
	if _, err := conn.Exec(ctx, `CREATE TABLE tile_bench (id text, layer text, fid bigint, version bigint, props jsonb,
		g geometry(Geometry, 3857))`); err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	esc := strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)
	for _, l := range []twin.Layer{twin.Buildings, twin.Roads, twin.Bridges} {
		tw.Range(l, func(f *twin.Feature) bool {
			if f.Geometry == nil {
				return true
			}
			props := map[string]any{}
			for k, v := range f.Props.All() {
				if s, ok := scalar(v); ok {
					props[k] = s
				}
			}
			pj, _ := jsonMarshal(props)
			fmt.Fprintf(&sb, "%s\t%s\t%d\t%d\t%s\tSRID=4326;%s\n", esc.Replace(f.ID.String()), l, FeatureID(f.ID), f.Version,
				esc.Replace(string(pj)), wkt.MarshalString(f.Geometry))
			return true
		})
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE tile_bench_in (id text, layer text, fid bigint, version bigint, props jsonb, g geometry)`); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(sb.String()), "COPY tile_bench_in FROM STDIN"); err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO tile_bench SELECT id, layer, fid, version, props, ST_Transform(g, 3857) FROM tile_bench_in`,
		`CREATE INDEX ON tile_bench USING gist (g)`,
		`CREATE INDEX ON tile_bench (layer)`,
		`ANALYZE tile_bench`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
}

// BenchmarkNewMemo measures making the per-feature memo (attributes,
// world coordinates, rank) of demo buildings: the cost of a feature's
// first tile.
func BenchmarkNewMemo(b *testing.B) {
	tw := benchTwin(b)
	var fs []*twin.Feature
	tw.Range(twin.Buildings, func(f *twin.Feature) bool {
		fs = append(fs, f)
		return len(fs) < 4096
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		newMemo(fs[i%len(fs)], nil)
	}
}
