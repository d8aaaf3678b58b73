package mqttin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/twin"
)

// mosquittoURL is the package's own Mosquitto (TestMain), "" when none.
var mosquittoURL string

func quiet() *slog.Logger {
	if os.Getenv("MQTTIN_DEBUG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// uniq makes topic-safe names that do not collide with other tests on the
// shared Mosquitto.
func uniq(t *testing.T) string {
	return fmt.Sprintf("t%x-%s", rand.Uint64()&0xffffffff, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
}

// brokers returns the brokers to run a test against: the shared Mosquitto
// (skipped when unreachable) and a fresh embedded broker.
func brokers(t *testing.T) map[string]string {
	out := map[string]string{}
	if mosquittoURL != "" {
		out["mosquitto"] = mosquittoURL
	} else {
		t.Log("no Mosquitto; embedded broker only")
	}
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	out["embedded"] = b.URL()
	out["handoff"] = handoffBroker(t)
	return out
}

// handoffBrokers maps the URL of an embedded broker started with Handoff
// to it: an Ingest for that URL takes telemetry in process (as in `twin
// serve`), not over TCP.
var handoffBrokers sync.Map

// handoffBroker starts an embedded broker that hands telemetry over and
// returns its URL (see embeddedFor).
func handoffBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.StartWith(context.Background(), "127.0.0.1:0", broker.Options{Logger: quiet(), Handoff: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	handoffBrokers.Store(b.URL(), b)
	t.Cleanup(func() { handoffBrokers.Delete(b.URL()) })
	return b.URL()
}

// embeddedFor is the handoff broker behind url, or nil.
func embeddedFor(url string) *broker.Broker {
	if b, ok := handoffBrokers.Load(url); ok {
		return b.(*broker.Broker)
	}
	return nil
}

type harness struct {
	tw  *twin.Twin
	ing *Ingest
	reg *prometheus.Registry
}

// startIngest runs an Ingest until the test ends and waits for it to subscribe.
func startIngest(t *testing.T, url string, opts Options) *harness {
	t.Helper()
	tw := twin.New(twin.Options{Logger: quiet()})
	reg := prometheus.NewRegistry()
	opts.BrokerURL, opts.Embedded = url, embeddedFor(url)
	if opts.ClientID == "" {
		opts.ClientID = "ingest-" + uniq(t)
	}
	opts.Logger = quiet()
	opts.Registerer = reg
	if opts.MaxReconnectInterval == 0 {
		opts.MaxReconnectInterval = 200 * time.Millisecond
	}
	ing := New(tw, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		cleanSession(url, opts.ClientID)
	})
	waitFor(t, 10*time.Second, "ingest subscribed", ing.Connected)
	return &harness{tw: tw, ing: ing, reg: reg}
}

// cleanSession removes the persistent session a test left on the broker.
func cleanSession(url, id string) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
		c.Disconnect(0)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition across goroutines; no clock to fake
	}
}

func client(t *testing.T, url string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("pub-" + uniq(t)).SetCleanSession(true).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func count(h *harness, outcome string) float64 {
	return testutil.ToFloat64(h.ing.Metrics().Messages.WithLabelValues("mqtt", outcome))
}

func register(t *testing.T, tw *twin.Twin, name string) twin.ID {
	id := twin.NewID(twin.Vehicles, name)
	if _, err := tw.Put(&twin.Feature{ID: id, Props: twin.NewProps(map[string]any{"kind": "patrol"})}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestApplyDuplicatesAndDisorder(t *testing.T) {
	for bname, url := range brokers(t) {
		t.Run(bname, func(t *testing.T) {
			h := startIngest(t, url, Options{})
			name := uniq(t)
			id := register(t, h.tw, name)
			pub := client(t, url)
			topic := TelemetryPrefix + name
			publish(t, pub, topic, []byte(`{"ts":"2026-03-01T10:00:10Z","lon":106.5,"lat":29.5,"speed_kmh":30,"heading":90}`))
			publish(t, pub, topic, []byte(`{"ts":"2026-03-01T10:00:10Z","lon":106.5,"lat":29.5}`)) // duplicate
			publish(t, pub, topic, []byte(`{"ts":"2026-03-01T10:00:00Z","lon":106.4,"lat":29.4}`)) // older: history
			publish(t, pub, topic, []byte(`{"ts":1772359220000,"lon":106.6,"lat":29.6}`))          // 10:00:20Z
			waitFor(t, 5*time.Second, "4 outcomes", func() bool {
				return count(h, "applied") == 2 && count(h, "duplicate") == 1 && count(h, "history") == 1
			})
			f, _ := h.tw.Get(id)
			if !f.Observed.Time().Equal(time.Date(2026, 3, 1, 10, 0, 20, 0, time.UTC)) || f.Geometry != (orb.Point{106.6, 29.6}) {
				t.Fatalf("state %v %v", f.Observed, f.Geometry)
			}
			if v, _ := f.Number("speed_kmh"); v != 30 {
				t.Fatalf("speed %v", v)
			}
			if f.Version != 3 { // put + 2 applied
				t.Fatalf("version %d", f.Version)
			}
		})
	}
}

// deadLetters subscribes to twin/deadletter and returns the letters whose
// topic contains tag, as they arrive.
func deadLetters(t *testing.T, url, tag string) <-chan DeadLetter {
	out := make(chan DeadLetter, 100)
	c := client(t, url)
	tok := c.Subscribe(DeadLetterTopic, 1, func(_ paho.Client, m paho.Message) {
		var d DeadLetter
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			t.Errorf("dead letter %q: %v", m.Payload(), err)
			return
		}
		if strings.Contains(d.Topic, tag) {
			out <- d
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return out
}

// deadLetterMetrics is the twin_deadletter_* series of reg, for a
// failure's message.
func deadLetterMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "twin_deadletter") {
			continue
		}
		for _, m := range mf.GetMetric() {
			fmt.Fprintf(&b, "%s%v=%v ", mf.GetName(), m.GetLabel(), m.GetCounter().GetValue())
		}
	}
	return b.String()
}

func TestDeadLetterEveryReason(t *testing.T) {
	for bname, url := range brokers(t) {
		t.Run(bname, func(t *testing.T) {
			h := startIngest(t, url, Options{Limits: telemetry.Limits{MaxBytes: 256}})
			tag := uniq(t)
			letters := deadLetters(t, url, tag)
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			cases := map[telemetry.Reason]string{
				telemetry.BadJSON:       `{"ts":`,
				telemetry.BadTS:         `{"ts":"noon"}`,
				telemetry.MissingTS:     `{"lon":1,"lat":2}`,
				telemetry.OutOfRange:    `{"ts":1700000000000,"lon":181,"lat":0}`,
				telemetry.NotFinite:     `{"ts":1700000000000,"lon":"NaN","lat":0}`,
				telemetry.FutureTS:      `{"ts":"` + future + `"}`,
				telemetry.Oversized:     `{"ts":1700000000000,"pad":"` + strings.Repeat("x", 300) + `"}`,
				telemetry.BadField:      `{"ts":1700000000000,"values":[1]}`,
				telemetry.UnknownDevice: `{"ts":1700000000000,"lon":1,"lat":2}`,
			}
			pub := client(t, url)
			for reason, payload := range cases {
				name := tag + "-" + string(reason)
				if reason != telemetry.UnknownDevice {
					register(t, h.tw, name)
				}
				publish(t, pub, TelemetryPrefix+name, []byte(payload))
			}
			binName := tag + "-binary"
			register(t, h.tw, binName)
			binary := []byte{0xff, 0xfe, 0x00, 0x01}
			publish(t, pub, TelemetryPrefix+binName, binary)

			// Every ingest on the shared Mosquitto (other test packages'
			// servers run at the same time) gets these messages too and
			// dead-letters them as unknown devices, on the same topics. So
			// wait for the letter with the expected reason on each topic
			// and ignore the others.
			want := map[string]string{"binary": string(telemetry.BadJSON)}
			for reason := range cases {
				want[string(reason)] = string(reason)
			}
			got := map[string]DeadLetter{}
			// Generous: CI once saw 4 of 10 within 10 s on a machine
			// loaded by other jobs; the metrics say where the rest were.
			timeout := time.After(30 * time.Second)
			for len(got) < len(want) {
				select {
				case d := <-letters:
					key := strings.TrimPrefix(d.Topic, TelemetryPrefix+tag+"-")
					if _, done := got[key]; !done && want[key] == d.Reason {
						got[key] = d
					}
				case <-timeout:
					t.Fatalf("got %d of %d dead letters with the expected reason: %v; ingest's dead-letter metrics: %s",
						len(got), len(want), got, deadLetterMetrics(t, h.reg))
				}
			}
			for reason, payload := range cases {
				d := got[string(reason)]
				if d.Reason != string(reason) || d.Payload != payload || d.PayloadBase64 != "" {
					t.Errorf("%s: dead letter %+v", reason, d)
				}
				if n := testutil.ToFloat64(h.ing.Metrics().DeadLetters.WithLabelValues(string(reason))); n < 1 {
					t.Errorf("twin_deadletter_total{reason=%s} = %v", reason, n)
				}
			}
			if d := got["binary"]; d.Reason != "bad_json" || d.Payload != "" || d.PayloadBase64 != base64.StdEncoding.EncodeToString(binary) {
				t.Errorf("binary dead letter %+v", d)
			}
			if count(h, "deadletter") < float64(len(cases)+1) {
				t.Errorf("deadletter outcome count %v", count(h, "deadletter"))
			}
		})
	}
}

func TestAutoRegisterAndPublish(t *testing.T) {
	for bname, url := range brokers(t) {
		t.Run(bname, func(t *testing.T) {
			h := startIngest(t, url, Options{AutoRegister: true})
			name := uniq(t)
			pub := client(t, url)
			got := make(chan string, 1)
			if tok := pub.Subscribe("twin/test/"+name, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			publish(t, pub, TelemetryPrefix+name, []byte(`{"ts":1700000000000,"lon":106.5,"lat":29.5}`))
			id := twin.NewID(twin.Vehicles, name)
			waitFor(t, 5*time.Second, "auto-registered vehicle", func() bool {
				f, ok := h.tw.Get(id)
				return ok && f.Geometry != nil
			})
			if err := h.ing.Publish(context.Background(), "twin/test/"+name, 1, false, []byte("alert")); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if s != "alert" {
					t.Fatalf("got %q", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Publish not delivered")
			}
		})
	}
}

func TestBrokerRestartResumes(t *testing.T) {
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	h := startIngest(t, b.URL(), Options{})
	name := uniq(t)
	id := register(t, h.tw, name)
	pub := client(t, b.URL())
	publish(t, pub, TelemetryPrefix+name, []byte(`{"ts":1700000000000,"lon":106.5,"lat":29.5}`))
	waitFor(t, 5*time.Second, "first fix", func() bool { return count(h, "applied") == 1 })

	b.Close()
	waitFor(t, 5*time.Second, "ingest notices the broker is gone", func() bool { return !h.ing.Connected() })
	b2, err := broker.Start(context.Background(), addr, quiet())
	if err != nil {
		t.Fatalf("restart broker on %s: %v", addr, err)
	}
	defer b2.Close()
	waitFor(t, 10*time.Second, "ingest reconnected and resubscribed", h.ing.Connected)
	pub2 := client(t, b2.URL())
	publish(t, pub2, TelemetryPrefix+name, []byte(`{"ts":1700000001000,"lon":106.6,"lat":29.6}`))
	waitFor(t, 5*time.Second, "fix after restart", func() bool { return count(h, "applied") == 2 })
	if f, _ := h.tw.Get(id); f.Geometry != (orb.Point{106.6, 29.6}) {
		t.Fatalf("geometry %v", f.Geometry)
	}
}

func TestNewDeadLetter(t *testing.T) {
	d := NewDeadLetter("twin/telemetry/x", []byte("{"), fmt.Errorf("wrapped: %w", telemetry.Errorf(telemetry.BadJSON, "offset 1")))
	if d.Reason != "bad_json" || d.Detail != "offset 1" || d.Payload != "{" {
		t.Fatalf("%+v", d)
	}
	if d := NewDeadLetter("t", nil, io.EOF); d.Reason != "apply_failed" {
		t.Fatalf("%+v", d)
	}
}

func TestDeadLetterFuncForHTTP(t *testing.T) {
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := startIngest(t, b.URL(), Options{})
	tag := uniq(t)
	letters := deadLetters(t, b.URL(), tag)
	h.ing.DeadLetterFunc()(context.Background(), "POST /api/telemetry "+tag, []byte(`{"id":"x"}`), "missing_ts")
	select {
	case d := <-letters:
		if d.Reason != "missing_ts" || d.Payload != `{"id":"x"}` {
			t.Fatalf("%+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dead letter not published")
	}
}

func TestDeadLetterTruncates(t *testing.T) {
	big := []byte(strings.Repeat("é", MaxDeadLetterPayload)) // 2 bytes a rune
	d := NewDeadLetter("t", big[1:], nil)                    // invalid UTF-8: base64
	if !d.Truncated || d.Payload != "" {
		t.Fatalf("binary: %+v", d.Truncated)
	}
	if raw, _ := base64.StdEncoding.DecodeString(d.PayloadBase64); len(raw) != MaxDeadLetterPayload {
		t.Fatalf("binary cut to %d", len(raw))
	}
	d = NewDeadLetter("t", append([]byte("x"), big...), nil)
	if !d.Truncated || !utf8.ValidString(d.Payload) || len(d.Payload) != MaxDeadLetterPayload-1 {
		t.Fatalf("text cut to %d bytes, valid %v", len(d.Payload), utf8.ValidString(d.Payload))
	}
}
