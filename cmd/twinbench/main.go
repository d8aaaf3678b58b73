// Command twinbench measures the twin in process: how long the demo city
// takes to load from the embedded store into a twin with the locator, and
// how much memory it keeps resident (issue 2); and how many telemetry
// messages per second go through decode -> ApplySample -> feed (issue 3).
//
//	go run ./cmd/twinbench -mode load -scale 20 -data /tmp/tb20
//	go run ./cmd/twinbench -mode load -points 1000000 -data /tmp/tb1m
//	go run ./cmd/twinbench -mode ingest -objects 50000 -duration 10s
//	go run ./cmd/twinbench -mode storm -objects 200000 -rate 20000 -duration 10s
//	go run ./cmd/twinbench -mode failover -pid LEADER_PID -url http://SURVIVOR -token T -duration 60s
//
// The load mode generates and stores the city only when -data holds no
// store yet, so a second run measures the load alone, as a restarted
// `twin serve --demo` does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.mode, "mode", "load", "load, ingest, storm or failover")
	flag.IntVar(&cfg.scale, "scale", 1, "demo city scale (20 = about a million buildings)")
	flag.StringVar(&cfg.data, "data", "", "embedded store directory (default: a temporary directory, removed after)")
	flag.StringVar(&cfg.db, "db", "", "load: PostGIS URL to use instead of the embedded store (migrated on open)")
	flag.IntVar(&cfg.objects, "objects", 50000, "ingest: vehicles to drive")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "ingest: how long to run; failover: how long to wait for a write to be accepted")
	flag.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "ingest: goroutines applying telemetry")
	flag.Float64Var(&cfg.step, "step", 0.0002, "ingest: degrees a vehicle moves per message (0 = stands still)")
	flag.IntVar(&cfg.feed, "feed", 1<<20, "ingest: twin feed window (changes kept; the twin package's default, where twin serve's --feed-size is 1<<16)")
	flag.IntVar(&cfg.rate, "rate", 20000, "storm: samples applied a second, paced")
	flag.IntVar(&cfg.subscribes, "subscribes", 50, "storm: websocket-style snapshots of the city a second")
	flag.Float64Var(&cfg.viewport, "viewport", 0.25, "storm: a snapshot's viewport, as a fraction of the city's side (1 = the whole city)")
	flag.IntVar(&cfg.h3, "h3", 2, "storm: H3 aggregates of every vehicle a second")
	flag.IntVar(&cfg.ogc, "ogc", 2, "storm: OGC items requests over every vehicle a second")
	flag.BoolVar(&cfg.placed, "placed", false, "load: store the city with cells, region and grid (as the writer stores changed objects), so the load places nothing")
	flag.IntVar(&cfg.pid, "pid", 0, "failover: process id of the running twin's leader, killed with -9")
	flag.StringVar(&cfg.url, "url", "", "failover: base URL of a surviving server of the twin, written to")
	flag.StringVar(&cfg.token, "token", os.Getenv("TWIN_TOKEN"), "failover: bearer token of an operator (env TWIN_TOKEN)")
	flag.DurationVar(&cfg.every, "every", 50*time.Millisecond, "failover: least time between writes after the kill")
	flag.DurationVar(&cfg.attempt, "attempt-timeout", 10*time.Second, "failover: a client's timeout for one write")
	flag.BoolVar(&cfg.verbose, "v", false, "failover: log every write after the kill")
	flag.IntVar(&cfg.points, "points", 0, "load: store this many fleet points (demo.Points: kind, plate, status, speed_kmh, heading) with the demo's regions and grids instead of the whole city, when -data is empty")
	flag.StringVar(&cfg.pointsLayer, "points-layer", "vehicles", "load: the layer of -points")
	flag.StringVar(&cfg.memprofile, "memprofile", "", "write a heap profile after loading")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured phase")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "twinbench:", err)
			os.Exit(1)
		}
		cfg.cpu = f
	}
	var err error
	switch cfg.mode {
	case "load":
		err = runLoad(context.Background(), cfg, os.Stdout)
	case "ingest":
		err = runIngest(context.Background(), cfg, os.Stdout)
	case "storm":
		err = runStorm(context.Background(), cfg, os.Stdout)
	case "failover":
		err = runFailover(context.Background(), cfg, os.Stdout)
	default:
		err = fmt.Errorf("unknown -mode %q", cfg.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "twinbench:", err)
		os.Exit(1)
	}
}

type config struct {
	mode, data, memprofile  string
	db, pointsLayer         string
	points                  int
	scale, objects, workers int
	rate, subscribes, h3    int
	ogc                     int
	feed                    int
	duration                time.Duration
	step, viewport          float64
	placed                  bool
	pid                     int
	url, token              string
	every, attempt          time.Duration
	verbose                 bool
	cpu                     *os.File
}

func (c config) startCPU() func() {
	if c.cpu == nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(c.cpu); err != nil {
		fmt.Fprintln(os.Stderr, "twinbench: cpu profile:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); c.cpu.Close() }
}
