// Command twinload is a load generator for a running CityTwin server: it
// registers many vehicles over HTTP (PUT /api/entities, in parallel), then
// publishes tracker telemetry over MQTT at a fixed rate, and reads the
// server's /metrics (twin_ingest_messages_total) before and after to report
// how many messages per second the server applied. With -qos 1 it counts
// what the broker PUBACKed and reports as lost what the broker acknowledged
// and the server never accounted for, next to the broker's own drops
// (twin_broker_dropped_total) and the machine's load average.
//
//	go run ./cmd/twinload -broker tcp://127.0.0.1:1883 -objects 50000 -rate 50000 -duration 60s -server http://127.0.0.1:8080
//	go run ./cmd/twinload -qos 1 -conns 4 -objects 5000 -rate 30000 -duration 30s -drain 60s
//
// With -mode http or -mode resp it measures the server's CPU per position
// update with K square geofences instead (fences.go): CityTwin through
// POST /api/telemetry NDJSON bodies, or a RESP server such as Tile38
// through pipelined SET with SETCHAN fences, the same vehicles, walk,
// fences and batch size for both:
//
//	go run ./cmd/twinload -mode http -fences 1000 -batch 500 -pid PID -token ADMIN
//	go run ./cmd/twinload -mode resp -resp 127.0.0.1:9851 -fences 1000 -batch 500 -pid PID
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	flag.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "CityTwin server base URL (registration and /metrics); mqtt: \"none\" publishes to the broker alone (its ceiling with plain subscribers such as mosquitto_sub)")
	flag.IntVar(&cfg.Objects, "objects", 50000, "vehicles to register and drive")
	flag.IntVar(&cfg.Rate, "rate", 50000, "telemetry messages per second (all objects together)")
	flag.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to publish")
	flag.StringVar(&cfg.Prefix, "prefix", "load-", "object name prefix (vehicles/{prefix}{n})")
	flag.IntVar(&cfg.Parallel, "parallel", 32, "parallel registration requests")
	flag.IntVar(&cfg.Conns, "conns", 4, "MQTT connections to publish on")
	flag.IntVar(&cfg.QoS, "qos", 0, "MQTT QoS for telemetry (0 or 1)")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TWIN_TOKEN"), "bearer token for the server (env TWIN_TOKEN)")
	flag.BoolVar(&cfg.Jump, "jump", false, "mqtt: send each fix at a random place (vehicles teleport: the worst case for the server's same-cell fast paths) instead of driving 5-50 m from the last one")
	flag.BoolVar(&cfg.SkipRegister, "skip-register", false, "assume the objects are already registered")
	flag.DurationVar(&cfg.Drain, "drain", 10*time.Second, "how long to wait for the server to catch up after publishing")
	mode := flag.String("mode", "mqtt", "mqtt (MQTT telemetry, the default), http (POST /api/telemetry with -fences) or resp (pipelined SET to a RESP server such as Tile38, fences by SETCHAN)")
	var fc FenceConfig
	flag.IntVar(&fc.Fences, "fences", 0, "http/resp: square geofences (enter, exit) to make")
	flag.Float64Var(&fc.FenceM, "fence-m", 100, "http/resp: side of a fence in metres")
	flag.IntVar(&fc.Batch, "batch", 500, "http/resp: lines per POST body, or SETs per pipelined write")
	flag.StringVar(&fc.RESP, "resp", "127.0.0.1:9851", "resp: the RESP server's address")
	flag.IntVar(&fc.PID, "pid", 0, "http/resp: the server's process id, to report its CPU per update (from /proc)")
	flag.DurationVar(&fc.Settle, "settle", 3*time.Second, "http/resp: wait after driving before reading the server's CPU (its writers finish)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *mode != "mqtt" {
		fc.Mode, fc.Server, fc.Token, fc.Prefix, fc.Objects = *mode, cfg.Server, cfg.Token, cfg.Prefix, cfg.Objects
		fc.Conns, fc.Duration, fc.Skip = cfg.Conns, cfg.Duration, cfg.SkipRegister
		rep, err := RunFences(ctx, fc, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "twinload:", err)
			os.Exit(1)
		}
		rep.Print(os.Stdout, fc)
		return
	}
	rep, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "twinload:", err)
		os.Exit(1)
	}
	if cfg.brokerOnly() {
		rep.PrintBrokerOnly(os.Stdout)
		return
	}
	rep.Print(os.Stdout)
}

// PrintBrokerOnly writes the publishing half of the report (-server none).
func (r Report) PrintBrokerOnly(w io.Writer) {
	fmt.Fprintf(w, "published    %d msgs in %s (%.0f msgs/s), broker only\n", r.Published, r.PublishTime.Round(time.Millisecond), rate(r.Published, r.PublishTime))
	if r.Acked > 0 || r.PubErrors > 0 {
		fmt.Fprintf(w, "pubacked     %d by the broker, %d failed\n", r.Acked, r.PubErrors)
	}
	fmt.Fprintf(w, "load average %s before, %s after (1 min)\n", r.LoadBefore, r.LoadAfter)
	if r.Published > 0 && r.ToolCPU > 0 {
		fmt.Fprintf(w, "tool CPU     %.2f s publishing (%.1f us per message)\n", r.ToolCPU.Seconds(), float64(r.ToolCPU.Microseconds())/float64(r.Published))
	}
}

// Print writes the report for humans.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "registered   %d objects in %s (%.0f/s)\n", r.Registered, r.RegisterTime.Round(time.Millisecond), rate(r.Registered, r.RegisterTime))
	fmt.Fprintf(w, "published    %d msgs in %s (%.0f msgs/s)\n", r.Published, r.PublishTime.Round(time.Millisecond), rate(r.Published, r.PublishTime))
	if r.Acked > 0 || r.PubErrors > 0 {
		fmt.Fprintf(w, "pubacked     %d by the broker, %d failed\n", r.Acked, r.PubErrors)
	}
	fmt.Fprintf(w, "server       applied %d, history %d, duplicate %d, deadletter %d (mqtt) in %s\n",
		r.Applied, r.History, r.Duplicate, r.Deadletter, r.IngestTime.Round(time.Millisecond))
	fmt.Fprintf(w, "journaled    %d taken into the server's log, %d found there already\n", r.Journaled, r.JournalDup)
	fmt.Fprintf(w, "applied rate %.0f msgs/s (all outcomes: %.0f msgs/s)\n", rate(r.Applied, r.IngestTime), rate(r.Processed(), r.IngestTime))
	if r.Settled {
		fmt.Fprintf(w, "lost         %d (acknowledged by the broker, never seen by the server); broker dropped %d (twin_broker_dropped_total)\n", r.Lost(), r.BrokerDropped)
	} else {
		fmt.Fprintf(w, "not settled  %d not yet seen by the server when -drain ran out (still catching up: not a loss figure); broker dropped %d\n", r.Lost(), r.BrokerDropped)
	}
	fmt.Fprintf(w, "load average %s before, %s after (1 min)\n", r.LoadBefore, r.LoadAfter)
	if r.Published > 0 && r.ToolCPU > 0 {
		fmt.Fprintf(w, "tool CPU     %.2f s publishing (%.1f us per message)\n", r.ToolCPU.Seconds(), float64(r.ToolCPU.Microseconds())/float64(r.Published))
	}
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
