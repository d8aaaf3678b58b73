// Command tileload measures tile throughput and latency of a running
// CityTwin server over loopback: it picks a fixed list of random tiles
// (seeded) over the layers' TileJSON bounds at the given zooms, optionally
// fetches each once to warm the server's cache, then has N workers request
// random tiles from the list (gzip accepted, keep-alive connections) for a
// duration, and reports tiles/s, p50/p99 latency and bytes.
//
//	go build -o /tmp/twin ./cmd/twin && /tmp/twin serve --demo --sim-rate 0 &
//	go run ./cmd/tileload -server http://127.0.0.1:8080 -concurrency 32 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "CityTwin server base URL")
	flag.StringVar(&cfg.Layers, "layers", "buildings,roads,bridges", "comma-separated layers of every tile")
	flag.IntVar(&cfg.MinZoom, "minzoom", 13, "lowest zoom of the tile list")
	flag.IntVar(&cfg.MaxZoom, "maxzoom", 16, "highest zoom of the tile list")
	flag.IntVar(&cfg.Tiles, "tiles", 2000, "tiles in the list")
	flag.IntVar(&cfg.Concurrency, "concurrency", 32, "parallel requests (one keep-alive connection each)")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to measure")
	flag.BoolVar(&cfg.Warm, "warm", true, "fetch every tile once before measuring (warm cache)")
	flag.Int64Var(&cfg.Seed, "seed", 1, "seed of the tile list and request order")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TWIN_TOKEN"), "bearer token (env TWIN_TOKEN); empty for anonymous loopback read")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tileload:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
}
