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
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/httpin"
	"github.com/citytwin/citytwin/ingest/mqttin"
	"github.com/citytwin/citytwin/twin"
)

// TestRunEndToEnd drives a real ingest stack (embedded broker, MQTT ingest,
// HTTP entities, /metrics) with a small load and checks the report.
func TestRunEndToEnd(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tw := twin.New(twin.Options{Logger: quiet})
	reg := prometheus.NewRegistry()
	ing := mqttin.New(tw, mqttin.Options{BrokerURL: b.URL(), ClientID: "twinload-test-ingest", Logger: quiet, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	defer func() { cancel(); t.Logf("ingest: %v", <-done) }()

	mux := http.NewServeMux()
	httpin.New(tw, nil, httpin.Options{Logger: quiet, Registerer: reg}).Mount(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for !ing.Connected() {
		time.Sleep(5 * time.Millisecond) // waiting for a real connection
	}

	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{Broker: b.URL(), Server: srv.URL, Prefix: "lt-", Objects: 200,
		Rate: 2000, Parallel: 8, Conns: 2, QoS: 1, Duration: time.Second, Drain: 10 * time.Second}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if rep.Registered != 200 || tw.Count(twin.Vehicles) != 200 {
		t.Fatalf("registered %d, twin has %d", rep.Registered, tw.Count(twin.Vehicles))
	}
	if rep.Published < 1000 || rep.Published > 2200 {
		t.Fatalf("published %d at 2000/s for 1s", rep.Published)
	}
	if rep.Applied != rep.Published || rep.Acked != rep.Published || rep.Lost() != 0 || !rep.Settled || rep.Deadletter != 0 {
		t.Fatalf("report %+v", rep)
	}
	var out bytes.Buffer
	rep.Print(&out)
	if !strings.Contains(out.String(), "applied rate") {
		t.Fatalf("print: %s", out.String())
	}
}

func TestParseCounts(t *testing.T) {
	in := `# HELP twin_ingest_messages_total x
twin_ingest_messages_total{outcome="applied",source="mqtt"} 1.5e+06
twin_ingest_messages_total{outcome="applied",source="http"} 7
twin_ingest_messages_total{outcome="history",source="mqtt"} 3
twin_ingest_messages_total{outcome="deadletter",source="mqtt"} 2
twin_broker_dropped_total 12
`
	c, err := parseCounts(strings.NewReader(in))
	if err != nil || c.applied != 1500000 || c.history != 3 || c.deadletter != 2 || c.total() != 1500005 || c.dropped != 12 {
		t.Fatalf("%+v %v", c, err)
	}
}
