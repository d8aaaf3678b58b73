package rules

import (
	"io"
	"log/slog"
	"testing"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/twin"
)

// TestAlertGauges: twin_alerts_open and twin_alerts_acked count the alerts
// layer by severity and tier as it changes (an ack and a close move an
// alert), have every severity x tier series from start, and pass the
// Prometheus linter. Rule firing counters exist, at 0, once rules load.
func TestAlertGauges(t *testing.T) {
	tw := twin.New(twin.Options{FeedSize: 1 << 10})
	reg := prometheus.NewRegistry()
	e := New(tw, Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	value := func(name, sev, tier string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["severity"] == sev && l["tier"] == tier {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no %s{severity=%q,tier=%q}", name, sev, tier)
		return 0
	}
	if n := testutil.CollectAndCount(newAlertGauges(tw)); n != 2*5*3 {
		t.Errorf("%d series at start, want every state x severity x tier (30)", n)
	}
	put := func(name string, g orb.Geometry, state, sev, tier string) {
		t.Helper()
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, name), Geometry: g,
			Props: twin.NewProps(map[string]any{"state": state, "severity": sev, "tier": tier})}); err != nil {
			t.Fatal(err)
		}
	}
	p := orb.Point{106.57, 29.56}
	put("a1", p, StateOpen, "red", "street")
	put("a2", p, StateOpen, "red", "street")
	put("a3", p, StateAcked, "orange", "district")
	put("a4", p, StateClosed, "red", "street")
	if v := value("twin_alerts_open", "red", "street"); v != 2 {
		t.Errorf("open red street = %v, want 2", v)
	}
	if v := value("twin_alerts_acked", "orange", "district"); v != 1 {
		t.Errorf("acked orange district = %v, want 1", v)
	}
	if v := value("twin_alerts_open", "blue", "city"); v != 0 {
		t.Errorf("open blue city = %v, want 0", v)
	}
	put("a1", p, StateAcked, "red", "street")
	put("a2", p, StateClosed, "red", "street")
	put("a5", nil, StateOpen, "yellow", "city") // no geometry: still counted
	if v := value("twin_alerts_open", "red", "street"); v != 0 {
		t.Errorf("open red street after ack and close = %v, want 0", v)
	}
	if v := value("twin_alerts_acked", "red", "street"); v != 1 {
		t.Errorf("acked red street = %v, want 1", v)
	}
	if v := value("twin_alerts_open", "yellow", "city"); v != 1 {
		t.Errorf("open yellow city (no geometry) = %v, want 1", v)
	}
	rs, err := Parse("t.yaml", []byte(`rules:
  - name: hot
    kind: threshold
    subjects: {layer: devices}
    tiers: [{when: 'values.t > 50.0', severity: orange}]
`))
	if err != nil {
		t.Fatal(err)
	}
	e.Load(rs)
	if n := testutil.CollectAndCount(e.m.fired); n != 1 {
		t.Errorf("%d twin_alerts_fired_total series after loading one rule, want 1", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
