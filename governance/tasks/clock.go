package tasks

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// due is one piece of work Tick found.
type dueWork struct {
	id       twin.ID
	remind   bool
	escalate bool
	overdue  bool
}

// Tick checks every open task's due time against now: a task in the last
// quarter of its time (at most RemindBefore) is marked reminded once (its
// persons are notified by rules/notify); a task past due is marked overdue
// and escalates one tier with an alert, once per step: a directive's task
// once, to the tier that issued it; rectification and enforcement once per
// Period, up to the city. A forwarded task does not escalate itself: its
// children do. It returns how many tasks escalated. Run calls it on a
// ticker; tests call it with a fake clock.
func (s *Service) Tick(now time.Time) int {
	var work []dueWork
	s.tw.Range(twin.Tasks, func(f *twin.Feature) bool {
		if done(f) || len(twin.PropStrings(f.Props.Get("children"))) > 0 {
			return true
		}
		due, ok := parseTime(f.Prop("due"))
		if !ok {
			return true
		}
		w := dueWork{id: f.ID}
		if f.Prop("reminded_at") == "" && now.Before(due) {
			issued, ok := parseTime(f.Prop("issued_at"))
			lead := s.opts.RemindBefore
			if ok {
				lead = min(lead, due.Sub(issued)/4)
			}
			w.remind = !now.Before(due.Add(-lead))
		}
		if now.After(due) {
			o, _ := f.Props.Get("overdue").(bool)
			w.overdue = !o
			w.escalate = s.wantSteps(f, due, now) > escalations(f)
		}
		if w.remind || w.overdue || w.escalate {
			work = append(work, w)
		}
		return true
	})
	n := 0
	for _, w := range work {
		var from, toTier, toCode, atTier string
		if w.escalate {
			// Where it goes is read from the twin (region levels) before
			// Update: its fn must not call the twin.
			if f, ok := s.tw.Get(w.id); ok {
				atTier = f.Prop("tier_code")
				toTier, toCode = s.nextTier(f)
			}
		}
		c, ok, err := s.tw.Update(w.id, func(f *twin.Feature) (*twin.Feature, error) {
			if f == nil || done(f) {
				return nil, nil
			}
			changed := false
			if w.remind && f.Prop("reminded_at") == "" {
				f.Props.Set("reminded_at", stamp(now))
				f.Props.Set("history", append(asList(f.Props.Get("history")), step("remind", "system", now)))
				changed = true
			}
			if o, _ := f.Props.Get("overdue").(bool); w.overdue && !o {
				f.Props.Set("overdue", true)
				changed = true
			}
			if w.escalate && toTier != "" && f.Prop("tier_code") == atTier {
				due, _ := parseTime(f.Prop("due"))
				if s.wantSteps(f, due, now) > escalations(f) {
					from = f.Prop("tier")
					tier, code := toTier, toCode
					if tier != from || code != f.Prop("tier_code") {
						f.Props.Set("tier", tier)
						f.Props.Set("tier_code", code)
						f.Props.Set("escalations", float64(escalations(f)+1))
						f.Props.Set("escalated_at", stamp(now))
						h := step("escalate", "system", now)
						h["from"], h["to"] = from, tier
						f.Props.Set("history", append(asList(f.Props.Get("history")), h))
						changed = true
					} else {
						from = ""
					}
				} else {
					from = ""
				}
			}
			if !changed {
				return nil, nil
			}
			return f, nil
		})
		if err != nil {
			s.log.Error("tasks: due clock", "task", w.id.String(), "err", err)
			continue
		}
		if !ok {
			continue
		}
		if w.remind {
			s.m.reminded.Inc()
		}
		if from != "" {
			n++
			s.m.escalated.WithLabelValues(c.New.Prop("kind")).Inc()
			s.raiseAlert(c.New, now)
		}
		s.rollupOf(c.New)
	}
	return n
}

func escalations(f *twin.Feature) int {
	n, _ := f.Number("escalations")
	return int(n)
}

// wantSteps is how many escalations a task past due should have had by now.
func (s *Service) wantSteps(f *twin.Feature, due, now time.Time) int {
	if !now.After(due) {
		return 0
	}
	if f.Prop("kind") == KindDirective {
		if f.Prop("tier_code") == f.Prop("issuer") {
			return escalations(f) // already at the issuing tier
		}
		return 1
	}
	if f.Prop("tier") == "city" {
		return escalations(f)
	}
	return 1 + int(now.Sub(due)/s.opts.Period)
}

// nextTier is where an overdue task goes: a directive's task to its issuing
// tier; other work one tier up its region path.
func (s *Service) nextTier(f *twin.Feature) (tier, code string) {
	if f.Prop("kind") == KindDirective {
		iss := f.Prop("issuer")
		return s.tierOf(iss), iss
	}
	cur := f.Prop("tier")
	tier = "city"
	for i, t := range tiers {
		if t == cur && i+1 < len(tiers) {
			tier = tiers[i+1]
		}
	}
	code = auth.CityCode
	if tier == "district" {
		if len(f.Region()) > 1 {
			code = f.Region()[1]
		} else {
			code = s.parentCode(f.Prop("tier_code"))
		}
	}
	return tier, code
}

// raiseAlert records an escalation as an alert visible to the new tier;
// rules/notify publishes it (MQTT twin/alerts/…, webhooks).
func (s *Service) raiseAlert(t *twin.Feature, now time.Time) {
	tier := t.Prop("tier")
	name := fmt.Sprintf("task-overdue.%s.%d", t.ID.Name, escalations(t))
	_, err := s.tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, name), Geometry: t.Geometry, Props: twin.NewProps(map[string]any{
		"rule": "task-overdue", "kind": "task", "severity": tierColour[tier], "subject": t.ID.String(), "state": "open",
		"tier": tier, "tier_since": stamp(now), auth.AlsoRegionsProp: []any{t.Prop("tier_code")}, "count": 1.0,
		"message": fmt.Sprintf("%s task %q overdue since %s; escalated to the %s (%s)", t.Prop("kind"), t.Prop("title"),
			t.Prop("due"), tier, t.Prop("tier_code")),
		"first": stamp(now), "last": stamp(now), "task_kind": t.Prop("kind"),
	})})
	if err != nil {
		s.log.Error("tasks: raise overdue alert", "task", t.ID.String(), "err", err)
	}
}

// Run ticks the due clock and follows the feed for enforcement cases until
// ctx ends. It is the service's one moving part: the server starts it only
// where effects run (the cluster's leader), like the incidents' SLA loop.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.enf.run(ctx)
	}()
	t := time.NewTicker(s.opts.TickEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			if n := s.Tick(s.opts.Clock.Now()); n > 0 {
				s.log.Info("tasks escalated", "count", n)
			}
		}
	}
}
