package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/maptile"
)

// Config is one load run.
type Config struct {
	Server      string // base URL, e.g. http://127.0.0.1:8080
	Layers      string // comma-separated layers
	MinZoom     int
	MaxZoom     int
	Tiles       int           // size of the random tile list
	Concurrency int           // workers, one connection each
	Duration    time.Duration // measuring time
	Warm        bool          // fetch each tile once first
	Seed        int64
	Token       string // bearer token; empty for anonymous
	// URL is the tile URL template, with {z}, {x} and {y} and optionally
	// {n}, replaced by a number unique to each request (a cache-busting
	// query value, so every request of a caching server is a cold build).
	// Empty: Server's /tiles/{Layers}/{z}/{x}/{y}.mvt. Another server's
	// template (pg_tileserv: /{schema}.{table}/{z}/{x}/{y}.pbf) makes the
	// same run against it.
	URL string
	// Bounds (lon/lat) the tile list is drawn over; empty: the layers'
	// TileJSON bounds from Server. Give it to compare two servers on the
	// same tiles.
	Bounds *orb.Bound
	// Once requests every tile of the list exactly once (workers share
	// the list) instead of random tiles for Duration.
	Once bool
	// NoGzip leaves out Accept-Encoding: gzip, so bodies are the raw MVT.
	NoGzip bool
	// CPUPids are server processes whose CPU (user+system, /proc) over the
	// run is reported per tile.
	CPUPids []int
	// Count decodes every tile and counts its features per layer.
	Count bool
}

// Report is the outcome of a run. Latencies are per request, from sending
// it to reading the last body byte.
type Report struct {
	Tiles       int           // distinct tiles in the list
	Concurrency int           // workers
	Requests    int64         // completed 200 responses while measuring
	Errors      int64         // failed requests or non-200 answers
	Bytes       int64         // body bytes (gzip) of those responses
	Elapsed     time.Duration // measuring time
	P50, P99    time.Duration
	Max         time.Duration
	WarmTime    time.Duration // time to fetch the list once (0 when not warmed)
	// CPU is the CPU time the CPUPids used over the run (0 without).
	CPU time.Duration
	// Features counts the decoded features per layer name (Count).
	Features map[string]int64
	Gzip     bool // bodies were gzip
}

// CPUPerTile is the servers' CPU per completed request.
func (r Report) CPUPerTile() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// TilesPerSecond is the throughput.
func (r Report) TilesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Print writes the report for humans.
func (r Report) Print(w io.Writer) {
	mean := int64(0)
	if r.Requests > 0 {
		mean = r.Bytes / r.Requests
	}
	if r.WarmTime > 0 {
		fmt.Fprintf(w, "warm-up      %d tiles in %s\n", r.Tiles, r.WarmTime.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "requests     %d (%d errors) in %s, concurrency %d\n", r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), r.Concurrency)
	enc := "raw"
	if r.Gzip {
		enc = "gzip"
	}
	fmt.Fprintf(w, "throughput   %.0f tiles/s, %.1f MB/s, mean %d B/tile (%s)\n", r.TilesPerSecond(),
		float64(r.Bytes)/1e6/max(r.Elapsed.Seconds(), 1e-9), mean, enc)
	fmt.Fprintf(w, "latency      p50 %s  p99 %s  max %s\n", r.P50, r.P99, r.Max)
	if r.CPU > 0 {
		fmt.Fprintf(w, "server cpu   %s, %.3f cpu-ms/tile\n", r.CPU.Round(time.Millisecond),
			float64(r.CPUPerTile().Microseconds())/1000)
	}
	if r.Features != nil {
		names := slices.Sorted(maps.Keys(r.Features))
		fmt.Fprintf(w, "features    ")
		for _, n := range names {
			fmt.Fprintf(w, " %s %.1f/tile", n, float64(r.Features[n])/float64(max(r.Requests, 1)))
		}
		fmt.Fprintln(w)
	}
}

func (c Config) withDefaults() Config {
	if c.Server == "" {
		c.Server = "http://127.0.0.1:8080"
	}
	c.Server = strings.TrimRight(c.Server, "/")
	if c.Layers == "" {
		c.Layers = "buildings,roads,bridges"
	}
	if c.MaxZoom < c.MinZoom {
		c.MaxZoom = c.MinZoom
	}
	if c.Tiles <= 0 {
		c.Tiles = 2000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.URL == "" {
		c.URL = c.Server + "/tiles/" + c.Layers + "/{z}/{x}/{y}.mvt"
	}
	return c
}

// Run performs one load run against cfg.Server (or cfg.URL).
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency,
		DisableCompression: true, // ask for gzip ourselves and count gzip bytes
	}}
	defer client.CloseIdleConnections()
	var bounds orb.Bound
	if cfg.Bounds != nil {
		bounds = *cfg.Bounds
	} else {
		var err error
		if bounds, err = fetchBounds(ctx, client, cfg); err != nil {
			return Report{}, err
		}
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7117e))
	urls := tileList(cfg, bounds, rng)
	if len(urls) == 0 {
		return Report{}, errors.New("load: no tiles in the bounds")
	}
	rep := Report{Tiles: len(urls), Concurrency: cfg.Concurrency, Gzip: !cfg.NoGzip}
	var serial atomic.Int64
	get := func(ctx context.Context, u string) (int64, map[string]int, error) {
		return fetch(ctx, client, cfg, expand(u, serial.Add(1)))
	}
	if cfg.Warm {
		start := time.Now()
		if err := warm(ctx, cfg, urls, get); err != nil {
			return Report{}, err
		}
		rep.WarmTime = time.Since(start)
	}
	type result struct {
		lat          []time.Duration
		bytes, fails int64
		features     map[string]int64
		err          error
	}
	results := make([]result, cfg.Concurrency)
	mctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	if cfg.Once {
		// Every tile once: the list, not the clock, ends the run.
		mctx, cancel = context.WithCancel(ctx)
		defer cancel()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0, err := procsCPU(cfg.CPUPids)
	if err != nil {
		return Report{}, err
	}
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := &results[i]
			wr := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i)+1))
			for mctx.Err() == nil {
				var u string
				if cfg.Once {
					k := next.Add(1) - 1
					if k >= int64(len(urls)) {
						return
					}
					u = urls[k]
				} else {
					u = urls[wr.IntN(len(urls))]
				}
				t0 := time.Now()
				n, feats, err := get(mctx, u)
				if err != nil {
					if mctx.Err() != nil {
						return // the run ended mid-request
					}
					r.fails++
					if r.err == nil {
						r.err = err
					}
					continue
				}
				r.lat = append(r.lat, time.Since(t0))
				r.bytes += n
				for l, c := range feats {
					if r.features == nil {
						r.features = map[string]int64{}
					}
					r.features[l] += int64(c)
				}
			}
		}(i)
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	cpu1, err := procsCPU(cfg.CPUPids)
	if err != nil {
		return Report{}, err
	}
	rep.CPU = cpu1 - cpu0
	var lat []time.Duration
	var firstErr error
	for _, r := range results {
		lat = append(lat, r.lat...)
		rep.Bytes += r.bytes
		rep.Errors += r.fails
		if firstErr == nil {
			firstErr = r.err
		}
		if cfg.Count {
			if rep.Features == nil {
				rep.Features = map[string]int64{}
			}
			for l, c := range r.features {
				rep.Features[l] += c
			}
		}
	}
	rep.Requests = int64(len(lat))
	if len(lat) == 0 {
		if firstErr == nil {
			firstErr = errors.New("no request completed")
		}
		return rep, fmt.Errorf("load: %w", firstErr)
	}
	slices.Sort(lat)
	rep.P50 = lat[len(lat)/2]
	rep.P99 = lat[(len(lat)-1)*99/100]
	rep.Max = lat[len(lat)-1]
	return rep, nil
}

// expand puts the request's serial number in place of {n}.
func expand(u string, n int64) string {
	if !strings.Contains(u, "{n}") {
		return u
	}
	return strings.ReplaceAll(u, "{n}", strconv.FormatInt(n, 10))
}

// procsCPU sums the user and system CPU time of the processes (Linux
// /proc; USER_HZ 100).
func procsCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, fmt.Errorf("cpu of %d: %w", pid, err)
		}
		// Fields after the command (which may hold spaces) in parentheses.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 13 {
			return 0, fmt.Errorf("cpu of %d: bad /proc stat", pid)
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / 100
	}
	return total, nil
}

// fetchBounds reads the layers' data bounds from their TileJSON.
func fetchBounds(ctx context.Context, client *http.Client, cfg Config) (orb.Bound, error) {
	req, err := newRequest(ctx, cfg, cfg.Server+"/tiles/"+cfg.Layers+".json")
	if err != nil {
		return orb.Bound{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return orb.Bound{}, fmt.Errorf("tilejson: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return orb.Bound{}, fmt.Errorf("tilejson: %s: %s", resp.Status, b)
	}
	var tj struct {
		Bounds []float64 `json:"bounds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tj); err != nil {
		return orb.Bound{}, fmt.Errorf("tilejson: %w", err)
	}
	if len(tj.Bounds) != 4 {
		return orb.Bound{}, fmt.Errorf("tilejson: bounds %v", tj.Bounds)
	}
	return orb.Bound{Min: orb.Point{tj.Bounds[0], tj.Bounds[1]}, Max: orb.Point{tj.Bounds[2], tj.Bounds[3]}}, nil
}

// tileList draws cfg.Tiles distinct tiles uniformly over b, zooms spread
// evenly over MinZoom..MaxZoom (fewer when a zoom has fewer tiles in b).
func tileList(cfg Config, b orb.Bound, rng *rand.Rand) []string {
	seen := map[maptile.Tile]bool{}
	var out []string
	for i := 0; len(out) < cfg.Tiles && i < cfg.Tiles*20; i++ {
		z := maptile.Zoom(cfg.MinZoom + i%(cfg.MaxZoom-cfg.MinZoom+1))
		p := orb.Point{b.Min[0] + rng.Float64()*(b.Max[0]-b.Min[0]), b.Min[1] + rng.Float64()*(b.Max[1]-b.Min[1])}
		t := maptile.At(p, z)
		if seen[t] {
			continue
		}
		seen[t] = true
		r := strings.NewReplacer("{z}", strconv.Itoa(int(t.Z)), "{x}", strconv.Itoa(int(t.X)), "{y}", strconv.Itoa(int(t.Y)))
		out = append(out, r.Replace(cfg.URL))
	}
	return out
}

// warm fetches every tile once, Concurrency at a time.
func warm(ctx context.Context, cfg Config, urls []string, get func(context.Context, string) (int64, map[string]int, error)) error {
	next := make(chan string)
	errs := make(chan error, cfg.Concurrency)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				if _, _, err := get(ctx, u); err != nil {
					errs <- fmt.Errorf("warm %s: %w", u, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, u := range urls {
		select {
		case next <- u:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	return err
}

func newRequest(ctx context.Context, cfg Config, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", u, err)
	}
	if !cfg.NoGzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	return req, nil
}

// fetch GETs one tile and returns its body size and, with cfg.Count,
// its features per layer.
func fetch(ctx context.Context, client *http.Client, cfg Config, u string) (int64, map[string]int, error) {
	req, err := newRequest(ctx, cfg, u)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("get tile: %w", err)
	}
	defer resp.Body.Close()
	if !cfg.Count {
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return 0, nil, fmt.Errorf("read tile: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return 0, nil, fmt.Errorf("get tile: %s", resp.Status)
		}
		return n, nil, nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("read tile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("get tile: %s", resp.Status)
	}
	var ls mvt.Layers
	if resp.Header.Get("Content-Encoding") == "gzip" {
		ls, err = mvt.UnmarshalGzipped(body)
	} else {
		ls, err = mvt.Unmarshal(body)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("decode tile: %w", err)
	}
	feats := make(map[string]int, len(ls))
	for _, l := range ls {
		feats[l.Name] += len(l.Features)
	}
	return int64(len(body)), feats, nil
}
