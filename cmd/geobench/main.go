// Command geobench puts the twin side by side with a peer geo server that
// speaks RESP (Tile38) on the same data (issue 16 goals 3 and 4):
//
//	geobench -mode load -resp 127.0.0.1:9851 -points 1000000 -pid PID
//	geobench -mode load -resp 127.0.0.1:9851 -scale 1 -pid PID
//	geobench -mode query -target resp://127.0.0.1:9851 -kind nearby -clients 8
//	geobench -mode query -target http://127.0.0.1:8080 -kind within -clients 8
//
// load SETs the demo city (-scale) or demo.Points (-points, the same points
// `twinbench -mode load -points` stores for the twin) into the peer, every
// prop a FIELD (nested lists and maps as JSON values), points as POINT and
// other geometries as OBJECT GeoJSON, then asks the peer to collect
// garbage and prints its heap (SERVER heap_size) and its process's RSS
// (/proc/PID/status) per object. query runs -clients connections, each
// sending one query after the other (HTTP keep-alive or one RESP
// connection) for -duration: nearby = the 10 nearest points (NEARBY
// ... LIMIT 10 / /api/nearby?limit=10), within = every point within 500 m
// nearest first (NEARBY ... LIMIT 1000 POINT lat lon 500 /
// radius_m=500&limit=1000), at random places in the demo city's box, and
// prints throughput and latency percentiles.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

type config struct {
	mode, resp, target, kind, layer, token string
	points, scale, clients, pid            int
	duration                               time.Duration
	ids                                    bool
	seed                                   uint64
}

func main() {
	var c config
	flag.StringVar(&c.mode, "mode", "query", "load or query")
	flag.StringVar(&c.resp, "resp", "127.0.0.1:9851", "load: the peer's RESP address")
	flag.IntVar(&c.points, "points", 0, "load: SET this many demo.Points (0: the demo city at -scale)")
	flag.IntVar(&c.scale, "scale", 1, "load: demo city scale when -points is 0")
	flag.IntVar(&c.pid, "pid", 0, "load: the peer's process id, to read its RSS")
	flag.StringVar(&c.target, "target", "resp://127.0.0.1:9851", "query: resp://host:port (Tile38) or http://host:port (twin serve)")
	flag.StringVar(&c.kind, "kind", "nearby", "query: nearby (k=10) or within (500 m)")
	flag.StringVar(&c.layer, "layer", "vehicles", "the layer (Tile38 key) of the points")
	flag.IntVar(&c.clients, "clients", 8, "query: connections, one query at a time each")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "query: how long to measure")
	flag.BoolVar(&c.ids, "ids", false, "query: ids and distances only (format=ids / IDS)")
	flag.StringVar(&c.token, "token", os.Getenv("TWIN_TOKEN"), "query: bearer token for http targets")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the points and of the query places")
	flag.Parse()
	var err error
	switch c.mode {
	case "load":
		err = runLoad(context.Background(), c, os.Stdout)
	case "query":
		err = runQuery(context.Background(), c, os.Stdout)
	default:
		err = fmt.Errorf("unknown -mode %q", c.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "geobench:", err)
		os.Exit(1)
	}
}
