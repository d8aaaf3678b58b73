package incidents

import (
	"context"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// slaSteps maps the state an incident waits in to the step whose deadline
// runs and the deadline's key in props.sla.
var slaSteps = []struct{ state, step, key string }{
	{Dispatched, "accept", "accept_by"},
	{Accepted, "arrive", "arrive_by"},
	{Arrived, "report", "report_by"},
}

// nextTier is the escalation ladder and the alert colour of each tier.
var nextTier = map[string]string{"street": "district", "district": "city", "city": "city"}
var tierColour = map[string]string{"street": "yellow", "district": "orange", "city": "red"}

// Tick checks every open incident's running deadline against now. A breach
// escalates the incident one tier, counts it, and raises an alert; each step
// breaches at most once. It returns how many incidents escalated. Call it on
// a ticker (Run does) or directly with a fake clock in tests.
func (s *Service) Tick(now time.Time) int {
	type due struct {
		id   twin.ID
		step string
	}
	var dues []due
	s.tw.Range(twin.Incidents, func(f *twin.Feature) bool {
		st := f.Prop("state")
		for _, sd := range slaSteps {
			if st != sd.state || breached(f, sd.step) {
				continue
			}
			m, _ := f.Props.Get("sla").(map[string]any)
			by, _ := m[sd.key].(string)
			t, err := time.Parse(time.RFC3339Nano, by)
			if err == nil && now.After(t) {
				dues = append(dues, due{f.ID, sd.step})
			}
		}
		return true
	})
	n := 0
	for _, d := range dues {
		c, ok, err := s.tw.Update(d.id, func(f *twin.Feature) (*twin.Feature, error) {
			if f == nil || breached(f, d.step) {
				return nil, nil // resolved meanwhile, or another tick did it
			}
			tier := nextTier[f.Prop("tier")]
			if tier == "" {
				tier = "district"
			}
			b, _ := f.Number("sla_breaches")
			f.Props.Set("sla_breaches", b+1)
			f.Props.Set("breached", append(asList(f.Props.Get("breached")), d.step))
			f.Props.Set("tier", tier)
			f.Props.Set("tier_code", tierCode(f.Region(), tier))
			f.Props.Set("history", append(asList(f.Props.Get("history")), step("escalate:"+d.step, "system", now)))
			return f, nil
		})
		if err != nil || !ok {
			continue
		}
		n++
		s.raiseAlert(c.New, d.step, now)
	}
	return n
}

func breached(f *twin.Feature, step string) bool {
	for _, b := range asList(f.Props.Get("breached")) {
		if b == step {
			return true
		}
	}
	return false
}

// raiseAlert records an SLA breach as an alert visible to the new tier.
func (s *Service) raiseAlert(inc *twin.Feature, step string, now time.Time) {
	tier := inc.Prop("tier")
	name := fmt.Sprintf("incident-sla.%s.%s", inc.ID.Name, step)
	_, err := s.tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, name), Geometry: inc.Geometry, Props: twin.NewProps(map[string]any{
		"rule": "incident-sla", "severity": tierColour[tier], "subject": inc.ID.String(), "state": "open",
		"tier": tier, auth.AlsoRegionsProp: []any{tierCode(inc.Region(), tier)}, "count": 1.0,
		"message": fmt.Sprintf("incident %s (%s) missed its %s deadline; escalated to %s", inc.ID.Name, inc.Prop("type"), step, tier),
		"first":   stamp(now), "last": stamp(now),
	})})
	if err != nil {
		s.log.Error("raise SLA alert", "incident", inc.ID.String(), "err", err)
	}
}

// Run ticks every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n := s.Tick(s.opts.Clock.Now()); n > 0 {
				s.log.Info("incidents escalated", "count", n)
			}
		}
	}
}
