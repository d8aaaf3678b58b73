package rules

import (
	"errors"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/twin"
)

// alertGauges exports the alerts not yet closed, by state, severity and
// tier: twin_alerts_open{severity,tier} (unacknowledged) and
// twin_alerts_acked{severity,tier}. They are counted from the alerts layer
// when scraped, not kept by hand from the changes, so they cannot drift
// from what the layer holds whoever changed it (engine, SLA escalation, an
// operator's ack through the API, a restart). Every severity x tier pair
// is exported, at 0 when none is open, so rate(), absent() and alerts on
// them work from start.
type alertGauges struct {
	tw          *twin.Twin
	open, acked *prometheus.Desc
}

func newAlertGauges(tw *twin.Twin) *alertGauges {
	return &alertGauges{tw: tw,
		open: prometheus.NewDesc("twin_alerts_open",
			"Alerts open and not acknowledged, by severity and current tier.", []string{"severity", "tier"}, nil),
		acked: prometheus.NewDesc("twin_alerts_acked",
			"Alerts acknowledged and not yet closed, by severity and current tier.", []string{"severity", "tier"}, nil),
	}
}

// registerAlertGauges registers the gauges; a second engine on the same
// registry keeps the first one's.
func registerAlertGauges(reg prometheus.Registerer, tw *twin.Twin) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(newAlertGauges(tw))
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return nil
	}
	return err
}

func (g *alertGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.open
	ch <- g.acked
}

type gaugeKey struct{ state, severity, tier string }

// counts tallies the alerts layer. Alerts are drawn at their subject, so
// the layer's spatial index holds them all unless some subject had no
// geometry; only then is the whole twin walked.
func (g *alertGauges) counts() map[gaugeKey]int {
	n := map[gaugeKey]int{}
	for _, st := range []string{StateOpen, StateAcked} {
		for _, sev := range colours[1:] {
			for _, tier := range tiers {
				n[gaugeKey{st, sev, tier}] = 0
			}
		}
	}
	count := func(f *twin.Feature) bool {
		if st := f.Prop("state"); st == StateOpen || st == StateAcked {
			n[gaugeKey{st, f.Prop("severity"), f.Prop("tier")}]++
		}
		return true
	}
	if g.tw.Unlocated(twin.Alerts) > 0 {
		g.tw.Range(twin.Alerts, count)
	} else {
		g.tw.Search(twin.Alerts, orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}, count)
	}
	return n
}

func (g *alertGauges) Collect(ch chan<- prometheus.Metric) {
	for k, v := range g.counts() {
		d := g.open
		if k.state == StateAcked {
			d = g.acked
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), k.severity, k.tier)
	}
}
