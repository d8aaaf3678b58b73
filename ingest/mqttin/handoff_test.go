package mqttin

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/twin"
)

// journaled reads twin_journal_appended_total{source="mqtt"}: messages
// JetStream has confirmed.
func journaled(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "twin_journal_appended_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == "mqtt" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestHandoffAcksAfterJournal: through the embedded broker's in-process
// handoff, a QoS 1 publish is PUBACKed to its device only once JetStream
// has it (so a kill -9 after the PUBACK loses nothing), and is applied.
func TestHandoffAcksAfterJournal(t *testing.T) {
	url := handoffBroker(t)
	r := startDurable(t, url, Options{})
	name := uniq(t)
	register(t, r.tw, name)
	pub := client(t, url)
	const n = 50
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for k := range n {
		publish(t, pub, TelemetryPrefix+name, fix(t0.Add(time.Duration(k)*time.Second), 106.5, 29.5+float64(k)*1e-4))
		if got := journaled(t, r.reg); got < float64(k+1) {
			t.Fatalf("publish %d PUBACKed with %v journaled", k+1, got)
		}
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d applied", n), func() bool { return count2(r, "applied") == n })
}

// TestHandoffQoS0AppliedOnLeader: with Options.Local true (this server
// applies the log), a QoS 0 publish handed over by the embedded broker is
// applied at once, never journaled, while QoS 1 still goes through the
// journal; a refused QoS 0 message is dead-lettered; with Local false
// QoS 0 is journaled again.
func TestHandoffQoS0AppliedOnLeader(t *testing.T) {
	var local atomic.Bool
	local.Store(true)
	url := handoffBroker(t)
	r := startDurable(t, url, Options{Local: local.Load})
	name := uniq(t)
	register(t, r.tw, name)
	pub := client(t, url)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	at := func(k int) time.Time { return t0.Add(time.Duration(k) * time.Second) }
	const q0, q1 = 30, 20
	for k := range q0 {
		if tok := pub.Publish(TelemetryPrefix+name, 0, false, fix(at(k), 106.5, 29.5+float64(k)*1e-4)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d QoS 0 applied", q0), func() bool { return count2(r, "applied") == q0 })
	if got := journaled(t, r.reg); got != 0 {
		t.Fatalf("%v QoS 0 messages journaled on the leader", got)
	}
	for k := q0; k < q0+q1; k++ {
		publish(t, pub, TelemetryPrefix+name, fix(at(k), 106.5, 29.5+float64(k)*1e-4))
	}
	waitFor(t, 30*time.Second, "QoS 1 applied", func() bool { return count2(r, "applied") == q0+q1 })
	if got := journaled(t, r.reg); got != q1 {
		t.Fatalf("%v journaled, want the %d QoS 1 messages", got, q1)
	}
	if o, _ := r.tw.Get(twin.NewID(twin.Vehicles, name)); o.Geometry.(orb.Point)[1] != 29.5+float64(q0+q1-1)*1e-4 {
		t.Fatalf("%s at %v", name, o.Geometry)
	}
	// Refused by the twin: dead-lettered, as the applier would.
	pub.Publish(TelemetryPrefix+"nobody-"+name, 0, false, fix(at(0), 106.5, 29.5)).Wait()
	waitFor(t, 30*time.Second, "the unknown device dead-lettered", func() bool { return count2(r, "deadletter") == 1 })
	// Not the leader: QoS 0 is journaled.
	local.Store(false)
	pub.Publish(TelemetryPrefix+name, 0, false, fix(at(q0+q1), 106.6, 29.6)).Wait()
	waitFor(t, 30*time.Second, "QoS 0 journaled off the leader", func() bool { return journaled(t, r.reg) == q1+1 })
	waitFor(t, 30*time.Second, "and applied", func() bool { return count2(r, "applied") == q0+q1+1 })
}

// TestPahoAcksAfterJournal: a message paho's MQTT 3.1.1 client took (the
// client of websocket and unix broker URLs; here handed to the workers as
// paho would, with an ack that records when it ran) is PUBACKed only once
// the log holds its group, so a kill -9 after the PUBACK loses nothing:
// each ack finds its message counted as journaled. The rig's broker is
// nats-server's MQTT listener, a v3.1.1-only broker.
func TestPahoAcksAfterJournal(t *testing.T) {
	r := startDurable(t, natsMQTT(t), Options{Protocol: 3})
	name := uniq(t)
	register(t, r.tw, name)
	const n = 300
	var acked, early atomic.Int64
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for k := range n {
		r.ing.dispatch(inbound{topic: TelemetryPrefix + name, payload: fix(t0.Add(time.Duration(k)*time.Second), 106.5, 29.5+float64(k)*1e-4), ack: func() {
			if journaled(t, r.reg) < float64(acked.Add(1)) {
				early.Add(1)
			}
		}})
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d acked", n), func() bool { return acked.Load() == n })
	if e := early.Load(); e != 0 {
		t.Fatalf("%d of %d messages acked before the log had them", e, n)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d applied", n), func() bool { return count2(r, "applied") == n })
}
