package acceptance

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestKill9EmbeddedBrokerKeepsAcked: through the embedded broker, which
// hands telemetry to the ingest in process (ingest/broker's handoff), a
// QoS 1 publish is PUBACKed to the device only once it is in the
// JetStream log: the server is killed with -9 while a device streams,
// and after a restart on the same data every message the device had a
// PUBACK for is in history. (Before the handoff the broker PUBACKed on
// receipt, from memory.)
func TestKill9EmbeddedBrokerKeepsAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: kill -9 and restart")
	}
	const vehicles, rounds = 10, 300
	o := serveOpts{data: t.TempDir(), key: writeKey(t)}
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	sfx := suffix(t)
	names := make([]string, vehicles)
	for v := range names {
		names[v] = fmt.Sprintf("acc-ho-%d-%s", v, sfx)
		s.putVehicle(t, tok, names[v], 106.5, 29.5, nil)
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(s.mqttURL).SetClientID("acc-ho-pub-" + sfx).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true))
	if ct := pub.Connect(); !ct.WaitTimeout(10*time.Second) || ct.Error() != nil {
		t.Fatalf("connect to the embedded broker: %v", ct.Error())
	}
	defer pub.Disconnect(0)

	type sent struct {
		v   int
		ts  time.Time
		tok paho.Token
	}
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	var all []sent
	window := 0
	for k := range rounds {
		for v, name := range names {
			ts := t0.Add(time.Duration(k) * time.Second)
			all = append(all, sent{v, ts, pub.Publish("twin/telemetry/"+name, 1, false, fix(ts, 106.5+float64(k)*1e-5, 29.5))})
		}
		if k == rounds/2 {
			// Half way, with publishes in flight: kill -9.
			if !all[len(all)/2].tok.WaitTimeout(30 * time.Second) {
				t.Fatal("no PUBACK for the first half")
			}
			s.kill9(t)
			break
		}
		for ; window < len(all)-200; window++ { // at most 200 awaiting their PUBACK
			if !all[window].tok.WaitTimeout(30 * time.Second) {
				t.Fatalf("publish %d not acknowledged", window)
			}
		}
	}
	acked := map[int]map[time.Time]bool{}
	n := 0
	for _, m := range all {
		if m.tok.WaitTimeout(5*time.Second) && m.tok.Error() == nil {
			if acked[m.v] == nil {
				acked[m.v] = map[time.Time]bool{}
			}
			acked[m.v][m.ts] = true
			n++
		}
	}
	t.Logf("%d of %d publishes PUBACKed before the kill", n, len(all))

	s2 := startServer(t, o)
	for v, name := range names {
		eventually(t, 60*time.Second, name+": every acknowledged fix in history", func() bool {
			have := map[time.Time]bool{}
			for _, ts := range s2.historyTimes(t, tok, "vehicles", name) {
				have[ts.UTC()] = true
			}
			for ts := range acked[v] {
				if !have[ts.UTC()] {
					return false
				}
			}
			return true
		})
	}
}
