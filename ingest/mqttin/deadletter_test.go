package mqttin

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/telemetry"
)

// countLetters counts dead letters whose topic contains tag. The callback
// never blocks, so the counting subscriber cannot fall behind the broker.
func countLetters(t *testing.T, url, tag string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	c := client(t, url)
	tok := c.Subscribe(DeadLetterTopic, 1, func(_ paho.Client, m paho.Message) {
		if strings.Contains(string(m.Payload()), tag) {
			n.Add(1)
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return &n
}

// privateMosquitto starts a Mosquitto of the test's own on a free port
// (skipped when the binary is missing) whose queues hold a whole burst:
// with the default max_queued_messages (1000) the broker itself drops
// messages for a subscriber that is slowed, which no client can prevent
// (the server reports it: twin_broker_dropped_messages).
func privateMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Log("no mosquitto binary; embedded broker only")
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
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
	return "tcp://" + addr
}

// TestDeadLetterBurstNeverDropped: a burst of bad messages far larger than
// the dead-letter queue all reach twin/deadletter: the intake waits for
// the queue instead of dropping (issue 11 item 7).
func TestDeadLetterBurstNeverDropped(t *testing.T) {
	const burst = 3000
	urls := map[string]string{}
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	urls["embedded"] = b.URL()
	if u := privateMosquitto(t); u != "" {
		urls["mosquitto"] = u
	}
	for bname, url := range urls {
		t.Run(bname, func(t *testing.T) {
			h := startIngest(t, url, Options{DeadLetterQueue: 4, Workers: 2, QueueSize: 16})
			tag := uniq(t)
			got := countLetters(t, url, tag)
			pub := client(t, url)
			// A window of publishes in flight, as a flood of devices would.
			toks := make([]paho.Token, 0, 500)
			for k := 0; k < burst; k++ {
				toks = append(toks, pub.Publish(fmt.Sprintf("%s%s-%d", TelemetryPrefix, tag, k%50), 1, false, []byte(`{"ts":`)))
				if len(toks) == cap(toks) || k == burst-1 {
					for _, tok := range toks {
						if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
							t.Fatalf("publish: %v", tok.Error())
						}
					}
					toks = toks[:0]
				}
			}
			waitFor(t, 120*time.Second, fmt.Sprintf("%d dead letters (have %d)", burst, got.Load()), func() bool { return got.Load() >= burst })
			if v := testutil.ToFloat64(h.ing.dead.dropped); v != 0 {
				t.Fatalf("twin_deadletter_dropped_total = %v, want 0", v)
			}
			if v := testutil.ToFloat64(h.ing.Metrics().DeadLetters.WithLabelValues(string(telemetry.BadJSON))); v != burst {
				t.Fatalf("twin_deadletter_total{bad_json} = %v, want %d", v, burst)
			}
		})
	}
}
