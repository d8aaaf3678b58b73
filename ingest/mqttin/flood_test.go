package mqttin

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citytwin/citytwin/ingest/broker"
)

// TestEmbeddedBrokerFloodNeverDrops: a publisher floods the embedded
// broker with QoS 1 telemetry as fast as it can (every publish pipelined,
// none awaited) while the ingest applies to the twin; every message is
// applied exactly once and the broker drops none, however slowly the
// twin keeps up (issue 16 goal 2: the broker holds the publisher back
// instead of dropping). No rate is asserted. When the twin keeps up no
// publish is held back (logged); the broker's TestBackPressureInsteadOfDrops
// covers a subscriber that stops acknowledging.
func TestEmbeddedBrokerFloodNeverDrops(t *testing.T) {
	b, err := broker.Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	h := startIngest(t, b.URL(), Options{})
	const objects, per = 100, 300
	names := make([]string, objects)
	for k := range names {
		names[k] = fmt.Sprintf("%s-%d", uniq(t), k)
		register(t, h.tw, names[k])
	}
	pub := client(t, b.URL())
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	toks := make([]paho.Token, 0, objects*per)
	for i := range per {
		ts := base.Add(time.Duration(i) * time.Second).UnixMilli()
		for _, n := range names {
			payload := fmt.Sprintf(`{"ts":%d,"lon":%.5f,"lat":29.5}`, ts, 106.5+float64(i)*1e-5)
			toks = append(toks, pub.Publish(TelemetryPrefix+n, 1, false, payload))
		}
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	waitFor(t, 3*time.Minute, "every message applied", func() bool { return count(h, "applied") >= objects*per })
	if n := count(h, "applied"); n != objects*per {
		t.Fatalf("applied %v of %d", n, objects*per)
	}
	if d := b.Dropped(); d != 0 {
		t.Fatalf("broker dropped %d", d)
	}
	for _, o := range []string{"duplicate", "history", "deadletter"} {
		if n := count(h, o); n != 0 {
			t.Errorf("%s %v", o, n)
		}
	}
	t.Logf("held back %d publishes", b.HeldBack())
}
