package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestLoadTwice: the first run stores the scale-1 demo city (placed), the
// second only loads it, and both report every object.
func TestLoadTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	dir := t.TempDir()
	cfg := config{mode: "load", scale: 1, data: dir, placed: true}
	var first, second bytes.Buffer
	if err := runLoad(context.Background(), cfg, &first); err != nil {
		t.Fatal(err)
	}
	if err := runLoad(context.Background(), cfg, &second); err != nil {
		t.Fatal(err)
	}
	loaded := regexp.MustCompile(`loaded +(\d+) objects \((\d+) buildings\)`)
	for i, out := range []string{first.String(), second.String()} {
		m := loaded.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("run %d: no load line in %q", i+1, out)
		}
		if n, _ := strconv.Atoi(m[2]); n != 50000 {
			t.Fatalf("run %d: %s buildings, want 50000", i+1, m[2])
		}
	}
	if !bytes.Contains(first.Bytes(), []byte("stored")) || bytes.Contains(second.Bytes(), []byte("stored")) {
		t.Fatalf("store once:\n%s\n%s", first.String(), second.String())
	}
}

// TestIngest: a short in-process run applies messages without failures and
// the feed consumer sees them.
func TestIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	var out bytes.Buffer
	cfg := config{mode: "ingest", scale: 1, objects: 200, workers: 2, duration: 200 * time.Millisecond, step: 0.0002, feed: 1 << 12}
	if err := runIngest(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`ingest +(\d+) msgs applied \((\d+) failed\)`).FindStringSubmatch(out.String())
	if m == nil || m[1] == "0" || m[2] != "0" {
		t.Fatalf("report %q", out.String())
	}
}

// TestStorm: a short storm run reports both phases and every reader kind.
func TestStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	var out bytes.Buffer
	cfg := config{mode: "storm", scale: 1, objects: 2000, rate: 500, duration: 300 * time.Millisecond, feed: 1 << 12,
		h3: 5, ogc: 5, subscribes: 20, viewport: 0.25}
	if err := runStorm(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quiet        lateness n ", "storm        lateness n ", "readers      h3", "readers      ogc", "readers      snapshots"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Fatalf("no %q in\n%s", want, out.String())
		}
	}
}
