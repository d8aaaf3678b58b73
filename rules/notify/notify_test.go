package notify

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recPub records publishes; the first failN attempts fail (a broker away).
type recPub struct {
	mu     sync.Mutex
	topics []string
	failN  int
}

func (p *recPub) Publish(_ context.Context, topic string, _ byte, _ bool, _ []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failN > 0 {
		p.failN--
		return fmt.Errorf("broker away")
	}
	p.topics = append(p.topics, topic)
	return nil
}

func (p *recPub) count(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.topics {
		if strings.HasPrefix(t, prefix) {
			n++
		}
	}
	return n
}

// startBroker starts an embedded broker on a free port, closed when the
// test ends.
func startBroker(ctx context.Context, t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.Start(ctx, "127.0.0.1:0", quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// oneCity places everything in street 500105002.
type oneCity struct{}

func (oneCity) Locate(orb.Geometry) ([]uint64, *twin.Place) {
	return []uint64{1}, twin.NewPlace([]string{"500000", "500105", "500105002"}, "g")
}

// TestIncidentSLAAlertIsPublished (issue 11 item 16): the incident
// service's SLA alert, written straight into the twin, goes out on MQTT,
// and its owners-free escalation too; a retried publish is not lost.
func TestIncidentSLAAlertIsPublished(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	tw := twin.New(twin.Options{Clock: clk, Enricher: oneCity{}})
	pub := &recPub{failN: 2}
	n := New(tw, Options{Publisher: pub, Logger: quiet, Backoff: time.Millisecond})
	inc := incidents.New(tw, incidents.Options{Clock: clk, Enricher: oneCity{}})
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Workers, "w"), Geometry: orb.Point{106.56, 29.58}, Props: twin.NewProps(map[string]any{"status": "available"})}); err != nil {
		t.Fatal(err)
	}
	op := auth.Principal{Subject: "op", Role: auth.Operator, Region: "500105"}
	f, _, err := inc.Report(op, incidents.Report{Type: "litter", Lon: 106.56, Lat: 29.58})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inc.Act(op, f.ID.Name, "dispatch", incidents.Action{}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if inc.Tick(clk.Now()) != 1 {
		t.Fatal("no SLA breach")
	}
	n.Drain(context.Background())
	if got := pub.count("twin/alerts/orange/incident-sla"); got != 1 {
		t.Fatalf("incident-sla alert published %d times, want 1 (topics %v)", got, pub.topics)
	}
	if got := testutil.ToFloat64(n.m.failures); got != 2 {
		t.Errorf("publish failures counted %v, want 2", got)
	}
}

// TestBurstAllReachMQTT (issue 11 item 8): 10,000 alerts opened at once
// (devices going offline together) all reach a real MQTT broker, even
// though the notifier falls out of a small feed window meanwhile.
func TestBurstAllReachMQTT(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := startBroker(ctx, t)
	connect := func(id string) mqtt.Client {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetMaxResumePubInFlight(1024))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	const total = 10000
	var mu sync.Mutex
	got := map[string]bool{}
	sub := connect("burst-sub")
	if tok := sub.Subscribe("twin/alerts/red/offline", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got[string(m.Payload()[:min(len(m.Payload()), 80)])] = true
		mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	tw := twin.New(twin.Options{FeedSize: 1024}) // far smaller than the burst
	var published atomic.Int64
	pc := connect("burst-pub")
	n := New(tw, Options{Publisher: pahoPub{pc, &published}, Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	for i := range total {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, fmt.Sprintf("offline.devices.d%05d.0", i)), Geometry: orb.Point{106.5, 29.5},
			Props: twin.NewProps(map[string]any{"rule": "offline", "severity": "red", "state": "open", "count": 1.0})}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alerts reached MQTT (%d publishes acknowledged)", k, total, published.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	t.Logf("run: %v", <-done)
	if d := testutil.ToFloat64(n.m.dropped); d != 0 {
		t.Errorf("%v messages dropped", d)
	}
}

// pahoPub publishes with a real paho client.
type pahoPub struct {
	c mqtt.Client
	n *atomic.Int64
}

func (p pahoPub) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := p.c.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if tok.Error() == nil {
		p.n.Add(1)
	}
	return tok.Error()
}

// TestWebhookRetriesAndCountsFailures: a webhook that recovers gets the
// alert after retries; one that never does is counted once.
func TestWebhookRetriesAndCountsFailures(t *testing.T) {
	var calls atomic.Int32
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ok.Close()
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer dead.Close()
	tw := twin.New(twin.Options{})
	n := New(tw, Options{Webhooks: []string{ok.URL, dead.URL}, Logger: quiet, Backoff: time.Millisecond})
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, "gas.devices.s1.0"), Props: twin.NewProps(map[string]any{"rule": "gas", "severity": "red", "state": "open"})}); err != nil {
		t.Fatal(err)
	}
	n.Drain(context.Background())
	if calls.Load() != 3 {
		t.Errorf("calls = %d, want 3 (two retries)", calls.Load())
	}
	if got := testutil.ToFloat64(n.m.webhookFailures); got != 1 {
		t.Errorf("twin_webhook_failures_total = %v, want 1", got)
	}
}

// TestTaskPersonsNotified (issue 15): a task's persons hear on
// twin/notify/{person} when it is issued, reminded, escalated and closed,
// once each, whoever wrote the change; other changes are no news.
func TestTaskPersonsNotified(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	tw := twin.New(twin.Options{Clock: clk})
	pub := &recPub{}
	n := New(tw, Options{Publisher: pub, Logger: quiet, Backoff: time.Millisecond})
	id := twin.NewID(twin.Tasks, "rect-1")
	set := func(k string, v any) {
		t.Helper()
		if _, _, err := tw.Update(id, func(f *twin.Feature) (*twin.Feature, error) {
			if f == nil {
				f = &twin.Feature{ID: id, Props: twin.NewProps(map[string]any{"kind": "rectification", "state": "issued", "tier": "street", "persons": []any{"p1", "p2"}})}
			}
			f.Props.Set(k, v)
			return f, nil
		}); err != nil {
			t.Fatal(err)
		}
		n.Drain(context.Background())
	}
	want := 0
	for _, step := range []struct {
		k    string
		v    any
		news bool
	}{
		{"title", "blocked exit", true}, // created: issued
		{"plan", "clear it", false},
		{"reminded_at", "2026-12-01T09:30:00Z", true},
		{"tier", "district", true},
		{"history", []any{"x"}, false},
		{"state", "closed", true},
	} {
		set(step.k, step.v)
		if step.news {
			want += 2
		}
		if got := pub.count("twin/notify/"); got != want {
			t.Fatalf("after %s: %d notifications, want %d (%v)", step.k, got, want, pub.topics)
		}
	}
}

// TestUnheardAlertsNotEncoded: with the embedded broker as publisher, an
// alert whose topic nobody subscribes to is not published (counted as
// unheard: a broker drops a message nobody subscribes to anyway); once a
// client subscribes, the next change of the same alert reaches it.
func TestUnheardAlertsNotEncoded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := startBroker(ctx, t)
	tw := twin.New(twin.Options{})
	n := New(tw, Options{Publisher: b, Logger: quiet})
	put := func(count float64) {
		t.Helper()
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, "fence.vehicles.v1.0"), Geometry: orb.Point{106.5, 29.5},
			Props: twin.NewProps(map[string]any{"rule": "fence", "severity": "yellow", "state": "open", "count": count})}); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	n.Drain(ctx)
	if u, p := testutil.ToFloat64(n.m.unheard), testutil.ToFloat64(n.m.published); u != 1 || p != 0 {
		t.Fatalf("no subscriber: unheard %v, published %v; want 1 and 0", u, p)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("unheard-sub"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	got := make(chan string, 4)
	if tok := c.Subscribe("twin/alerts/+/fence", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	put(2)
	n.Drain(ctx)
	select {
	case m := <-got:
		if !strings.Contains(m, `"count":2`) {
			t.Fatalf("received %s, want the alert with count 2", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscribed client received nothing")
	}
	if u, p := testutil.ToFloat64(n.m.unheard), testutil.ToFloat64(n.m.published); u != 1 || p != 1 {
		t.Fatalf("with a subscriber: unheard %v, published %v; want 1 and 1", u, p)
	}
}
