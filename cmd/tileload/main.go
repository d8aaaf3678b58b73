// Command tileload measures tile throughput and latency of a running
// tile server over loopback: it picks a fixed list of random tiles
// (seeded) over the layers' TileJSON bounds (or -bounds) at the given
// zooms, optionally fetches each once to warm the server's cache, then has
// N workers request random tiles from the list (gzip accepted, keep-alive
// connections) for a duration, or every tile once (-once), and reports
// tiles/s, p50/p99 latency, bytes and, with -pids, the servers' CPU per
// tile.
//
//	go build -o /tmp/twin ./cmd/twin && /tmp/twin serve --demo --sim-rate 0 &
//	go run ./cmd/tileload -server http://127.0.0.1:8080 -concurrency 32 -duration 10s
//
// Cold tiles, the same list against CityTwin and pg_tileserv: {n} is a
// number unique to each request, here an attribute no feature has, so
// every CityTwin request misses its cache with the same content
// (scripts/bench-tiles.sh):
//
//	tileload -warm=false -bounds 106.4,29.4,106.7,29.7 -minzoom 13 -maxzoom 13 \
//	  -url 'http://127.0.0.1:8080/tiles/buildings,roads/{z}/{x}/{y}.mvt?attrs=name,zz{n}'
//	tileload -warm=false -bounds 106.4,29.4,106.7,29.7 -minzoom 13 -maxzoom 13 \
//	  -url 'http://127.0.0.1:7800/public.buildings,public.roads/{z}/{x}/{y}.pbf'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/paulmach/orb"
)

func main() {
	var cfg Config
	var bounds, pids, pgLoad string
	var scale int
	var citySeed int64
	flag.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "CityTwin server base URL")
	flag.StringVar(&cfg.Layers, "layers", "buildings,roads,bridges", "comma-separated layers of every tile")
	flag.StringVar(&cfg.URL, "url", "", "tile URL template with {z}, {x}, {y} and optionally {n} (a number unique to each request); default SERVER/tiles/LAYERS/{z}/{x}/{y}.mvt")
	flag.StringVar(&bounds, "bounds", "", "minlon,minlat,maxlon,maxlat the tiles are drawn over (default: the layers' TileJSON bounds from -server)")
	flag.IntVar(&cfg.MinZoom, "minzoom", 13, "lowest zoom of the tile list")
	flag.IntVar(&cfg.MaxZoom, "maxzoom", 16, "highest zoom of the tile list")
	flag.IntVar(&cfg.Tiles, "tiles", 2000, "tiles in the list")
	flag.IntVar(&cfg.Concurrency, "concurrency", 32, "parallel requests (one keep-alive connection each)")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to measure")
	flag.BoolVar(&cfg.Warm, "warm", true, "fetch every tile once before measuring (warm cache)")
	flag.BoolVar(&cfg.Once, "once", false, "request every tile of the list once instead of random tiles for -duration")
	flag.BoolVar(&cfg.NoGzip, "nogzip", false, "do not accept gzip (bodies are the raw MVT)")
	flag.BoolVar(&cfg.Count, "count", false, "decode every tile and report its features per layer")
	flag.StringVar(&pids, "pids", "", "comma-separated server process ids whose CPU per tile is reported (/proc)")
	flag.Int64Var(&cfg.Seed, "seed", 1, "seed of the tile list and request order")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TWIN_TOKEN"), "bearer token (env TWIN_TOKEN); empty for anonymous loopback read")
	flag.StringVar(&pgLoad, "pg-load", "", "instead of a run: write the demo city into PostGIS tables buildings, roads, bridges for pg_tileserv at this URL")
	flag.IntVar(&scale, "scale", 1, "-pg-load: demo city scale (as twin serve --scale)")
	flag.Int64Var(&citySeed, "city-seed", 2016, "-pg-load: demo city seed (as twin serve --seed)")
	flag.Parse()
	if err := parseFlags(&cfg, bounds, pids); err != nil {
		fmt.Fprintln(os.Stderr, "tileload:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if pgLoad != "" {
		if err := LoadPostGIS(ctx, pgLoad, scale, citySeed); err != nil {
			fmt.Fprintln(os.Stderr, "tileload:", err)
			os.Exit(1)
		}
		return
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tileload:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
}

// parseFlags reads -bounds and -pids into cfg.
func parseFlags(cfg *Config, bounds, pids string) error {
	if bounds != "" {
		f := strings.Split(bounds, ",")
		if len(f) != 4 {
			return fmt.Errorf("-bounds %q: want minlon,minlat,maxlon,maxlat", bounds)
		}
		var v [4]float64
		for i, s := range f {
			x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return fmt.Errorf("-bounds %q: %w", bounds, err)
			}
			v[i] = x
		}
		cfg.Bounds = &orb.Bound{Min: orb.Point{v[0], v[1]}, Max: orb.Point{v[2], v[3]}}
	}
	for _, s := range strings.Split(pids, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("-pids %q: %w", pids, err)
		}
		cfg.CPUPids = append(cfg.CPUPids, pid)
	}
	return nil
}
