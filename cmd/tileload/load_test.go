package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"

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
