package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/tiles"
	"github.com/citytwin/citytwin/twin"
)

// TestRunAgainstTileServer drives a real tile server over a small city
// and checks the report adds up and every request succeeded.
func TestRunAgainstTileServer(t *testing.T) {
	tw := twin.New(twin.Options{})
	for i := 0; i < 200; i++ {
		x, y := 106.55+float64(i%20)*0.002, 29.55+float64(i/20)*0.002
		poly := orb.Polygon{{{x, y}, {x + 0.001, y}, {x + 0.001, y + 0.001}, {x, y + 0.001}, {x, y}}}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, "b"+string(rune('a'+i%26))+strings.Repeat("x", i/26)),
			Geometry: poly, Props: twin.NewProps(map[string]any{"height_m": 10.5})}); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(tiles.New(tw, tiles.Options{}).Handler())
	defer ts.Close()
	rep, err := Run(context.Background(), Config{Server: ts.URL, Layers: "buildings", MinZoom: 13, MaxZoom: 16,
		Tiles: 50, Concurrency: 4, Duration: 300 * time.Millisecond, Warm: true, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Errors != 0 || rep.Tiles == 0 || rep.Tiles > 50 {
		t.Fatalf("report %+v", rep)
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.Max < rep.P99 || rep.Bytes <= 0 || rep.TilesPerSecond() <= 0 {
		t.Errorf("report %+v", rep)
	}
	var out bytes.Buffer
	rep.Print(&out)
	if !strings.Contains(out.String(), "tiles/s") {
		t.Errorf("report text %q", out.String())
	}
}

// TestRunReportsServerErrors: a wrong layer name fails the TileJSON fetch.
func TestRunReportsServerErrors(t *testing.T) {
	ts := httptest.NewServer(tiles.New(twin.New(twin.Options{}), tiles.Options{}).Handler())
	defer ts.Close()
	if _, err := Run(context.Background(), Config{Server: ts.URL, Layers: "nosuch", Duration: 50 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("err %v, want the 404", err)
	}
}

// TestRunOnceColdTemplate requests every tile of a list drawn over given
// bounds exactly once through a URL template whose {n} busts the server's
// cache (an attribute no feature has), raw and counting features, and
// checks every request was a cache miss with the same features as the
// plain URL.
func TestRunOnceColdTemplate(t *testing.T) {
	tw := twin.New(twin.Options{})
	for i := 0; i < 100; i++ {
		x, y := 106.55+float64(i%10)*0.002, 29.55+float64(i/10)*0.002
		poly := orb.Polygon{{{x, y}, {x + 0.001, y}, {x + 0.001, y + 0.001}, {x, y + 0.001}, {x, y}}}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprint("b", i)),
			Geometry: poly, Props: twin.NewProps(map[string]any{"height_m": 10.5})}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	ts := httptest.NewServer(tiles.New(tw, tiles.Options{Registerer: reg}).Handler())
	defer ts.Close()
	b := orb.Bound{Min: orb.Point{106.55, 29.55}, Max: orb.Point{106.57, 29.57}}
	run := func(url string) Report {
		t.Helper()
		rep, err := Run(context.Background(), Config{URL: url, Bounds: &b, MinZoom: 14, MaxZoom: 16, Tiles: 20,
			Concurrency: 3, Once: true, NoGzip: true, Count: true, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests != int64(rep.Tiles) || rep.Errors != 0 || rep.Gzip {
			t.Fatalf("report %+v: want every tile once, raw", rep)
		}
		return rep
	}
	cold := run(ts.URL + "/tiles/buildings/{z}/{x}/{y}.mvt?attrs=height_m,zz{n}")
	if n := counter(t, reg, "miss"); n != float64(cold.Requests) {
		t.Errorf("%v cache misses, want one per request (%d)", n, cold.Requests)
	}
	plain := run(ts.URL + "/tiles/buildings/{z}/{x}/{y}.mvt?attrs=height_m")
	if cold.Features["buildings"] == 0 || cold.Features["buildings"] != plain.Features["buildings"] || cold.Bytes != plain.Bytes {
		t.Errorf("cold %v features %d bytes, plain %v %d", cold.Features, cold.Bytes, plain.Features, plain.Bytes)
	}
}

// counter reads twin_tiles_requests_total{result}.
func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "twin_tiles_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestParseFlags reads -bounds and -pids.
func TestParseFlags(t *testing.T) {
	var cfg Config
	if err := parseFlags(&cfg, "106.4, 29.4,106.7,29.7", "12,34"); err != nil {
		t.Fatal(err)
	}
	if cfg.Bounds == nil || cfg.Bounds.Min != (orb.Point{106.4, 29.4}) || cfg.Bounds.Max != (orb.Point{106.7, 29.7}) ||
		len(cfg.CPUPids) != 2 || cfg.CPUPids[1] != 34 {
		t.Fatalf("cfg %+v %v", cfg, cfg.Bounds)
	}
	for _, bad := range [][2]string{{"1,2,3", ""}, {"1,2,3,x", ""}, {"", "7,x"}} {
		if err := parseFlags(&Config{}, bad[0], bad[1]); err == nil {
			t.Errorf("parseFlags(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := procsCPU([]int{os.Getpid()}); err != nil {
		t.Errorf("procsCPU of this process: %v", err)
	}
}
