package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/boot"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/pgstore"
)

var errStop = errors.New("stop")

// runLoad stores the demo city in cfg.data when it is empty, then measures
// one load of the whole store into a fresh twin with the locator, the way
// `twin serve` starts.
func runLoad(ctx context.Context, cfg config, w io.Writer) error {
	dir := cfg.data
	if dir == "" && cfg.db == "" {
		d, err := os.MkdirTemp("", "twinbench-")
		if err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var st twin.Store
	if cfg.db != "" {
		pg, err := pgstore.Open(ctx, cfg.db, pgstore.Options{Migrate: true})
		if err != nil {
			return err
		}
		st = pg
	} else {
		bs, err := boltstore.Open(dir, boltstore.Options{})
		if err != nil {
			return err
		}
		st = bs
	}
	defer st.Close()
	empty := true
	if err := st.Load(ctx, func(*twin.Feature) error { empty = false; return errStop }); err != nil && !errors.Is(err, errStop) {
		return err
	}
	if empty {
		t0 := time.Now()
		city, err := demo.Generate(demo.Options{Scale: cfg.scale})
		if err != nil {
			return err
		}
		all := city.All()
		what := fmt.Sprintf("scale %d", cfg.scale)
		if cfg.points > 0 {
			// Only the regions and grids (to place the points) and the
			// points: the fleet case, as loaded into a peer by geobench.
			layer, err := twin.ParseLayer(cfg.pointsLayer)
			if err != nil {
				return err
			}
			all = append(append(append([]*twin.Feature(nil), city.Features[twin.Regions]...), city.Features[twin.Grids]...),
				demo.Points(layer, cfg.points, 1)...)
			what = fmt.Sprintf("%d %s points and the scale-%d regions and grids", cfg.points, layer, cfg.scale)
		}
		if cfg.placed {
			// Store cells, region and grid too, as the writer does for
			// changed objects: the load then places nothing.
			loc := locate.New()
			loc.Reset(city.Features[twin.Regions], city.Features[twin.Grids])
			twin.New(twin.Options{Enricher: loc, FeedSize: 16}).Load(all)
		}
		tg := time.Since(t0)
		const batch = 5000
		for i := 0; i < len(all); i += batch {
			if err := st.Upsert(ctx, all[i:min(i+batch, len(all))]); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "stored       %d objects (%s) in %s (generate %s)\n", len(all), what,
			time.Since(t0).Round(time.Millisecond), tg.Round(time.Millisecond))
		city, all = nil, nil
	}
	runtime.GC()
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rss0 := procStatus("VmRSS")

	stop := cfg.startCPU()
	t0 := time.Now()
	loc := locate.New()
	tw := twin.New(twin.Options{Enricher: loc})
	n, err := boot.Load(ctx, st, tw, loc)
	took := time.Since(t0)
	stop()
	if err != nil {
		return err
	}
	peak := procStatus("VmHWM")
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rssGC := procStatus("VmRSS")
	debug.FreeOSMemory()
	rssFree := procStatus("VmRSS")
	inuse := int64(after.HeapInuse) - int64(before.HeapInuse)
	alloc := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	b := tw.Count(twin.Buildings)
	fmt.Fprintf(w, "loaded       %d objects (%d buildings) in %s (%.0f objects/s), GOMAXPROCS %d, load average %s\n",
		n, b, took.Round(time.Millisecond), float64(n)/took.Seconds(), runtime.GOMAXPROCS(0), loadAvg())
	fmt.Fprintf(w, "heap in use  %d MB after GC (+%d MB for the twin, %d B/object)\n",
		after.HeapInuse>>20, inuse>>20, inuse/int64(max(n, 1)))
	// Allocated (live objects, without the free slots of the spans in
	// use) is what Tile38's SERVER heap_size reports (HeapAlloc).
	fmt.Fprintf(w, "heap alloc   %d MB after GC (+%d MB for the twin, %d B/object; Tile38's heap_size is this figure)\n",
		after.HeapAlloc>>20, alloc>>20, alloc/int64(max(n, 1)))
	fmt.Fprintf(w, "rss          before %d MB, peak %d MB, after GC %d MB, after FreeOSMemory %d MB = anonymous %d MB + file %d MB (the store's mmap, reclaimable)\n",
		rss0>>20, peak>>20, rssGC>>20, rssFree>>20, procStatus("RssAnon")>>20, procStatus("RssFile")>>20)
	if cfg.memprofile != "" {
		if err := writeHeap(cfg.memprofile); err != nil {
			return err
		}
	}
	runtime.KeepAlive(tw)
	return nil
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// procStatus reads one "kB" line of /proc/self/status, in bytes (0 when
// unavailable).
func procStatus(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
