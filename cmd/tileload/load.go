package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paulmach/orb"
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
	fmt.Fprintf(w, "throughput   %.0f tiles/s, %.1f MB/s, mean %d B/tile (gzip)\n", r.TilesPerSecond(),
		float64(r.Bytes)/1e6/max(r.Elapsed.Seconds(), 1e-9), mean)
	fmt.Fprintf(w, "latency      p50 %s  p99 %s  max %s\n", r.P50, r.P99, r.Max)
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
	return c
}

// Run performs one load run against cfg.Server.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency,
		DisableCompression: true, // ask for gzip ourselves and count gzip bytes
	}}
	defer client.CloseIdleConnections()
	bounds, err := fetchBounds(ctx, client, cfg)
	if err != nil {
		return Report{}, err
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7117e))
	urls := tileList(cfg, bounds, rng)
	rep := Report{Tiles: len(urls), Concurrency: cfg.Concurrency}
	if cfg.Warm {
		start := time.Now()
		if err := warm(ctx, client, cfg, urls); err != nil {
			return Report{}, err
		}
		rep.WarmTime = time.Since(start)
	}
	type result struct {
		lat          []time.Duration
		bytes, fails int64
		err          error
	}
	results := make([]result, cfg.Concurrency)
	mctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := &results[i]
			wr := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i)+1))
			for mctx.Err() == nil {
				u := urls[wr.IntN(len(urls))]
				t0 := time.Now()
				n, err := fetch(mctx, client, cfg, u)
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
			}
		}(i)
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	var lat []time.Duration
	var firstErr error
	for _, r := range results {
		lat = append(lat, r.lat...)
		rep.Bytes += r.bytes
		rep.Errors += r.fails
		if firstErr == nil {
			firstErr = r.err
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
		out = append(out, fmt.Sprintf("%s/tiles/%s/%d/%d/%d.mvt", cfg.Server, cfg.Layers, t.Z, t.X, t.Y))
	}
	return out
}

// warm fetches every tile once, Concurrency at a time.
func warm(ctx context.Context, client *http.Client, cfg Config, urls []string) error {
	next := make(chan string)
	errs := make(chan error, cfg.Concurrency)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				if _, err := fetch(ctx, client, cfg, u); err != nil {
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
	req.Header.Set("Accept-Encoding", "gzip")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	return req, nil
}

// fetch GETs one tile and returns its body size.
func fetch(ctx context.Context, client *http.Client, cfg Config, u string) (int64, error) {
	req, err := newRequest(ctx, cfg, u)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get tile: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read tile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get tile: %s", resp.Status)
	}
	return n, nil
}
