package mqttin

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
