package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/httpin"
	"github.com/citytwin/citytwin/ingest/mqttin"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/wshub"
)

// TestRunEndToEnd drives a real stack (embedded broker, MQTT ingest, HTTP
// entities, websocket hub) with a small load and checks the report.
func TestRunEndToEnd(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tw := twin.New(twin.Options{Logger: quiet})
	reg := prometheus.NewRegistry()
	ing := mqttin.New(tw, mqttin.Options{BrokerURL: b.URL(), ClientID: "wsload-test-ingest", Logger: quiet, Registerer: reg})
	hub := wshub.New(tw, wshub.Options{Logger: quiet, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ing.Run(ctx) }()
	go func() { done <- hub.Run(ctx) }()

	mux := http.NewServeMux()
	httpin.New(tw, nil, httpin.Options{Logger: quiet, Registerer: reg}).Mount(mux)
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	defer func() { cancel(); t.Logf("stopped: %v, %v", <-done, <-done); srv.Close() }()
	for !ing.Connected() {
		time.Sleep(5 * time.Millisecond) // waiting for a real connection
	}

	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{Server: srv.URL, Broker: b.URL(), Clients: 20, Objects: 200,
		Rate: 2000, Duration: time.Second, Drain: time.Second, BBox: "106.35,29.45,106.75,29.75", Prefix: "wl-", Conns: 2}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	// Something published and measured; how much in the second depends on
	// the machine (a loaded CI published fewer than 1,000 once): no rate.
	if rep.Connected != 20 || rep.Published == 0 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Latency) == 0 || rep.Regressions != 0 {
		t.Fatalf("latencies %d, regressions %d", len(rep.Latency), rep.Regressions)
	}
	var out bytes.Buffer
	rep.Print(&out)
	if !strings.Contains(out.String(), "p99") {
		t.Fatalf("print: %s", out.String())
	}
	t.Log("\n" + out.String())
}

// TestPrintBySecond: deltas are grouped by the second of the run they
// were published in (from the first publish), and an empty second shows.
func TestPrintBySecond(t *testing.T) {
	r := Report{
		Sent:    []float64{1000, 1500, 1999, 3100},
		Latency: []float64{10, 20, 30, 400},
	}
	var b strings.Builder
	r.printBySecond(&b)
	want := "by second    p50/p99 ms of the deltas published in each second: 20/30 - 400/400\n"
	if b.String() != want {
		t.Fatalf("got %q\nwant %q", b.String(), want)
	}
	var none strings.Builder
	Report{Latency: []float64{1}}.printBySecond(&none)
	if none.Len() != 0 {
		t.Fatalf("printed %q without publish times", none.String())
	}
}
