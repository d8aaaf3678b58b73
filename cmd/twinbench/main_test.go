package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
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

// TestFailover: the write before the kill must work; the process is
// killed; writes answered 503 are retried until one is accepted, and the
// report says after how long and how many were refused.
func TestFailover(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if n := calls.Add(1); n > 1 && n < 4 { // the write before the kill, then two refusals
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Twin-Seq", "42")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	leader := exec.Command("sleep", "60")
	if err := leader.Start(); err != nil {
		t.Skip("no sleep(1):", err)
	}
	done := make(chan error, 1)
	go func() { done <- leader.Wait() }()
	var out bytes.Buffer
	cfg := config{mode: "failover", pid: leader.Process.Pid, url: srv.URL, token: "tok", every: time.Millisecond, attempt: time.Second, duration: 10 * time.Second}
	if err := runFailover(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the leader's process was not killed")
	}
	if !regexp.MustCompile(`first write accepted on .* after .* \(seq 42\)`).Match(out.Bytes()) || !bytes.Contains(out.Bytes(), []byte("2 answered 503")) {
		t.Fatalf("report:\n%s", out.String())
	}
}
