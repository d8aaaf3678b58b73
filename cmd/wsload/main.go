// Command wsload measures websocket delta latency end to end on a running
// CityTwin server: it registers vehicles over HTTP (PUT
// /api/entities/vehicles/{name}), connects N websocket clients to /ws with
// seeded random viewports over a bbox (-seed), then publishes telemetry over MQTT
// (twin/telemetry/{name}) at a fixed rate for a duration. Each payload
// carries its publish time in values.sent_ms, so every client measures
// publish -> receive latency; at the end it prints latency percentiles,
// messages and bytes per client, and version gaps (versions of an object a
// client never saw: coalescing, or moves outside its view).
//
//	go run ./cmd/wsload -server http://127.0.0.1:8080 -broker tcp://127.0.0.1:1883 -clients 200 -rate 20000 -duration 30s
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
	cfg := Config{}
	flag.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "CityTwin server base URL (registration; /ws is derived from it)")
	flag.StringVar(&cfg.WS, "ws", "", "websocket URL (default ws://{server host}/ws)")
	flag.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	flag.IntVar(&cfg.Clients, "clients", 200, "websocket clients")
	flag.IntVar(&cfg.Objects, "objects", 2000, "vehicles to register and drive")
	flag.IntVar(&cfg.Rate, "rate", 20000, "telemetry messages per second (all objects together)")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish")
	flag.DurationVar(&cfg.Drain, "drain", 3*time.Second, "how long clients keep reading after publishing stops")
	flag.StringVar(&cfg.BBox, "bbox", "106.35,29.45,106.75,29.75", "area for objects and viewports: west,south,east,north")
	flag.StringVar(&cfg.Prefix, "prefix", "wsl-", "object name prefix (vehicles/{prefix}{n})")
	flag.IntVar(&cfg.Conns, "conns", 4, "MQTT connections to publish on")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TWIN_TOKEN"), "bearer token (env TWIN_TOKEN)")
	flag.BoolVar(&cfg.SkipRegister, "skip-register", false, "assume the objects are already registered")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the start positions, viewports and walks (the same seed drives the same load)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
}
