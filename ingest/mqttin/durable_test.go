package mqttin

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/writer"
)

// syncBuffer collects a child process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// defaultMosquitto starts a Mosquitto of the test's own on a free port
// with the default limits (max_inflight_messages 20, max_queued_messages
// 1000 per client): only a listener, anonymous access and $SYS every
// second. Its log is returned (it says when it drops messages).
func defaultMosquitto(t *testing.T) (string, *syncBuffer) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/mosquitto"); err != nil {
			t.Skip("no mosquitto binary")
		}
		bin = "/usr/sbin/mosquitto"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nsys_interval 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, 10*time.Second, "private mosquitto listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "tcp://" + addr, out
}

// natsMQTT starts a nats-server in process with JetStream and its MQTT
// listener on a free port (a second real broker, multi-threaded, v3.1.1
// only) and returns the MQTT URL.
func natsMQTT(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ns, err := server.NewServer(&server.Options{
		ServerName: "mqtt-" + uniq(t), Host: "127.0.0.1", Port: -1, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		MQTT: server.MQTTOpts{Host: "127.0.0.1", Port: port},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server with MQTT did not start")
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", port)
}

// durableRig is the durable ingest path of `twin serve`: MQTT ingest into
// the JetStream log (embedded NATS), the applier, the store writer on an
// embedded store.
type durableRig struct {
	tw  *twin.Twin
	st  *boltstore.Store
	ing *Ingest
	reg *prometheus.Registry
}

func startDurable(t *testing.T, url string, opts Options) *durableRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spine.Open(ctx, spine.Options{DataDir: dir, LeaseTTL: time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{tw: twin.New(twin.Options{Logger: quiet()}), st: st, reg: prometheus.NewRegistry()}
	wr := writer.New(r.tw, st, writer.Options{Logger: quiet(), FlushInterval: 50 * time.Millisecond})
	j := journal.New(sp, quiet(), r.reg)
	opts.BrokerURL, opts.Logger, opts.Registerer, opts.Journal = url, quiet(), r.reg, j
	opts.Embedded = embeddedFor(url)
	opts.ClientID = "durable-" + uniq(t)
	opts.MaxReconnectInterval = 200 * time.Millisecond
	r.ing = New(r.tw, opts)
	var wg sync.WaitGroup
	run := func(ctx context.Context, what string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}()
	}
	// Stop in serve's order: ingest, then the applier, then the writer.
	ingCtx, stopIng := context.WithCancel(ctx)
	appCtx, stopApp := context.WithCancel(ctx)
	run(ctx, "writer", wr.Run)
	run(appCtx, "applier", func(ctx context.Context) error {
		return j.RunApplier(ctx, r.tw, journal.ApplierOptions{Persisted: wr.Flushed, DeadLetter: r.ing.Reject, Metrics: r.ing.Metrics()})
	})
	run(ingCtx, "ingest", r.ing.Run)
	t.Cleanup(func() {
		stopIng()
		time.Sleep(100 * time.Millisecond) // let the last PUBACKed messages reach the applier
		stopApp()
		cancel()
		wg.Wait()
		sp.Close()
		_ = st.Close()
		cleanSession(url, opts.ClientID)
		for n := 1; n < opts.Connections; n++ {
			cleanSession(url, fmt.Sprintf("%s-%d", opts.ClientID, n))
		}
	})
	waitFor(t, 30*time.Second, "ingest subscribed", r.ing.Connected)
	waitFor(t, 30*time.Second, "applier leading", j.Leading)
	return r
}

// burst publishes every vehicle's fixes QoS 1 over conns connections as
// fast as the broker takes them (a window of 1,000 PUBACKs outstanding per
// connection, nothing paced on the ingest), and returns how many it sent.
func burst(t *testing.T, url string, names []string, perName, conns int, t0 time.Time) int {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		pub := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("burst-%d-%s", c, uniq(t))).
			SetCleanSession(true).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second).
			SetConnectionLostHandler(func(_ paho.Client, err error) { t.Logf("publisher %d lost its connection: %v", c, err) }))
		if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect publisher: %v", tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pub.Disconnect(100)
			var window []paho.Token
			for k := range perName {
				for v := c; v < len(names); v += conns { // each name on one connection: its order is kept
					ts := t0.Add(time.Duration(k) * time.Second)
					window = append(window, pub.Publish(TelemetryPrefix+names[v], 1, false, fix(ts, 106.5+float64(k)*1e-5, 29.5+float64(v)*1e-4)))
					if len(window) == 1000 {
						for _, tok := range window {
							if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
								errs <- fmt.Errorf("publish: %w", tok.Error())
								return
							}
						}
						window = window[:0]
					}
				}
			}
			for _, tok := range window {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("publish: %w", tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return len(names) * perName
}

func fix(ts time.Time, lon, lat float64) []byte {
	return fmt.Appendf(nil, `{"ts":%d,"lon":%.6f,"lat":%.6f,"speed_kmh":30}`, ts.UnixMilli(), lon, lat)
}

// TestQoS1BurstNoLoss: a burst of QoS 1 telemetry far beyond the broker's
// default per-client limits, published as fast as 4 publishers go, reaches
// the log through MQTT 5 subscriber connections (Receive Maximum lifts
// Mosquitto's 20 in flight; the broker then holds what we have not taken
// yet instead of queueing 1,000 and dropping the rest): every message is
// applied and stored exactly once, the broker dropped nothing. Against a
// Mosquitto with default limits and the embedded broker (mochi).
func TestQoS1BurstNoLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 20,000-message burst")
	}
	const vehicles, perVehicle = 200, 100
	urls := map[string]string{}
	var mosqLog *syncBuffer
	if u, log := defaultMosquitto(t); u != "" {
		urls["mosquitto"], mosqLog = u, log
	}
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	urls["embedded"] = b.URL()
	urls["handoff"] = handoffBroker(t)
	// nats-server's MQTT speaks v3.1.1 only and has no $share: one
	// connection, its messages through the v3.1.1 client into the same
	// group commit as the MQTT 5 links'. It holds QoS 1 messages in a
	// JetStream stream, so a burst waits there, never dropped.
	urls["nats-mqtt"] = natsMQTT(t)
	for bname, url := range urls {
		t.Run(bname, func(t *testing.T) {
			opts := Options{Connections: 2}
			if bname == "nats-mqtt" {
				opts = Options{Connections: 1, Protocol: 3}
			}
			r := startDurable(t, url, opts)
			names := make([]string, vehicles)
			tag := uniq(t)
			for v := range names {
				names[v] = fmt.Sprintf("%s-%d", tag, v)
				if _, err := r.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, names[v]), Geometry: orb.Point{106.5, 29.5}}); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			sent := burst(t, url, names, perVehicle, 4, t0)
			waitFor(t, 120*time.Second, fmt.Sprintf("%d messages applied", sent), func() bool {
				return count2(r, "applied")+count2(r, "history")+count2(r, "duplicate") >= float64(sent)
			})
			if d := count2(r, "deadletter"); d != 0 {
				t.Fatalf("%v dead letters", d)
			}
			for v, name := range names {
				id := twin.NewID(twin.Vehicles, name)
				var rows int
				waitFor(t, 60*time.Second, name+" history stored", func() bool {
					h, err := r.st.History(context.Background(), id, time.Time{}, time.Time{}, 0)
					if err != nil {
						t.Fatal(err)
					}
					rows = len(h)
					return rows >= perVehicle
				})
				if rows != perVehicle {
					t.Fatalf("%s: %d history rows, want %d", name, rows, perVehicle)
				}
				f, _ := r.tw.Get(id)
				if want := (orb.Point{106.5 + float64(perVehicle-1)*1e-5, 29.5 + float64(v)*1e-4}); !f.Observed.Time().Equal(t0.Add((perVehicle-1)*time.Second)) || f.Geometry != want {
					t.Fatalf("%s at %v %v, want its last fix", name, f.Observed, f.Geometry)
				}
			}
			if bname == "embedded" && b.Dropped() != 0 {
				t.Fatalf("the embedded broker dropped %d messages", b.Dropped())
			}
			if eb := embeddedFor(url); eb != nil && eb.Dropped() != 0 {
				t.Fatalf("the handoff broker dropped %d messages", eb.Dropped())
			}
			if mosqLog != nil && bname == "mosquitto" && strings.Contains(mosqLog.String(), "dropped") {
				t.Fatalf("Mosquitto dropped messages:\n%s", mosqLog.String())
			}
			if v := testutil.ToFloat64(r.ing.sys.dropped); v != 0 {
				t.Fatalf("twin_broker_dropped_messages = %v", v)
			}
		})
	}
}

func count2(r *durableRig, outcome string) float64 {
	return testutil.ToFloat64(r.ing.Metrics().Messages.WithLabelValues("mqtt", outcome))
}

// TestBrokerDropsRaiseMetric: when Mosquitto drops messages (here for an
// offline persistent session past max_queued_messages, 1000 by default),
// the ingest sees its $SYS counter rise and exports it: the gauge with the
// broker's total, the counter with what dropped while we watched.
func TestBrokerDropsRaiseMetric(t *testing.T) {
	url, _ := defaultMosquitto(t)
	h := startIngest(t, url, Options{})
	w := h.ing.sys
	waitFor(t, 30*time.Second, "the broker's dropped counter seen", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := w.last[sysDroppedTopics[0]]
		return ok
	})
	// A persistent session that subscribes and goes away: the broker
	// queues 1,000 messages for it and drops the rest.
	id, topic := "offline-"+uniq(t), "drops/"+uniq(t)
	off := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false))
	if tok := off.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := off.Subscribe(topic, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	off.Disconnect(0)
	t.Cleanup(func() { cleanSession(url, id) })
	pub := client(t, url)
	const n = 1300
	toks := make([]paho.Token, 0, n)
	for k := range n {
		toks = append(toks, pub.Publish(topic, 1, false, fmt.Appendf(nil, "%d", k)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	waitFor(t, 30*time.Second, "twin_broker_dropped_total to rise", func() bool {
		return testutil.ToFloat64(w.rises) >= n-1000
	})
	if g := testutil.ToFloat64(w.dropped); g < n-1000 {
		t.Fatalf("twin_broker_dropped_messages = %v, want >= %d", g, n-1000)
	}
	if v := testutil.ToFloat64(w.rises); v != n-1000 {
		t.Errorf("twin_broker_dropped_total = %v, want %d", v, n-1000)
	}
}
