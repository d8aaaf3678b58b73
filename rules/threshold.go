package rules

import (
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
)

// thresholdState is, per subject, which tier is raised (index+1; 0 none).
type thresholdState struct{ level map[twin.ID]int }

// evalThreshold raises, changes or clears a reading alarm. The alert fires
// when the raised tier changes (not on every reading, which would flood at
// telemetry rates); it clears when no tier holds and, if the rule has a
// `clear` expression, that holds too (hysteresis).
func (e *Engine) evalThreshold(a *active, c *twin.Change, v *vars) {
	if ok, _ := a.c.filter.eval(v); !ok {
		return
	}
	best, known := -1, false
	for i, p := range a.c.tiers {
		ok, valid := p.eval(v)
		if !valid {
			continue
		}
		known = true
		if ok && (best < 0 || colourLevel(a.spec.Tiers[i].Severity) < colourLevel(a.spec.Tiers[best].Severity)) {
			best = i
		}
	}
	if !known {
		return // the readings this rule needs are absent: no information
	}
	id := c.New.ID
	cur := a.thr.level[id]
	at := c.New.Updated.Time()
	if c.Sample != nil {
		at = c.Sample.Time
	}
	if best >= 0 {
		if cur == best+1 {
			return
		}
		if ok, _ := a.c.cond.eval(v); !ok {
			return
		}
		a.thr.level[id] = best + 1
		msg := a.spec.Message
		if msg == "" {
			msg = fmt.Sprintf("%s: %s", id, a.spec.Tiers[best].When)
		}
		e.fire(firing{rule: a, subject: c.New, joined: v.joined, severity: a.spec.Tiers[best].Severity, at: at,
			message: msg, exact: true, detail: map[string]any{"values": c.New.Props.Get("values")}})
		return
	}
	if cur == 0 {
		return
	}
	if a.c.clear != nil {
		if ok, _ := a.c.clear.eval(v); !ok {
			return
		}
	}
	delete(a.thr.level, id)
	e.resolveAt(a, id, "readings back to normal", at)
}

// offlineState is the set of subjects currently reported offline, and when
// this server started watching: nobody is offline before it has itself
// waited `after`, so a restart or a freshly loaded city does not raise an
// alarm for every device at once.
type offlineState struct {
	down  map[twin.ID]bool
	since time.Time
}

// heard clears an offline alarm when the subject reports again.
func (e *Engine) heard(a *active, c *twin.Change) {
	if c.Sample == nil || !a.off.down[c.New.ID] {
		return
	}
	delete(a.off.down, c.New.ID)
	e.resolve(a, c.New.ID, "heard again")
}

// tickOffline fires for every subject not heard for the rule's `after`.
// Objects that never sent telemetry count from their last update, and
// nothing counts from before the rule started watching.
func (e *Engine) tickOffline(a *active, now time.Time) {
	after := time.Duration(a.spec.After)
	var late []*twin.Feature
	e.tw.Range(a.subj, func(f *twin.Feature) bool {
		last := f.Observed.Time()
		if last.IsZero() {
			last = f.Updated.Time()
		}
		if last.Before(a.off.since) {
			last = a.off.since
		}
		if now.Sub(last) >= after && !a.off.down[f.ID] {
			late = append(late, f)
		}
		return true
	})
	for _, f := range late {
		v := &vars{cur: f, now: now}
		if ok, _ := a.c.filter.eval(v); !ok {
			continue
		}
		if ok, _ := a.c.cond.eval(v); !ok {
			continue
		}
		a.off.down[f.ID] = true
		last := f.Observed.Time()
		if last.IsZero() {
			last = f.Updated.Time()
		}
		msg := a.spec.Message
		if msg == "" {
			msg = fmt.Sprintf("%s not heard for %s", f.ID, now.Sub(last).Round(time.Second))
		}
		if at, _ := f.Props.Get("attached_to").(string); at != "" {
			if jid, err := twin.ParseID(at); err == nil {
				v.joined, _ = e.tw.Get(jid)
			}
		}
		e.fire(firing{rule: a, subject: f, joined: v.joined, severity: a.severity(), at: now, message: msg,
			detail: map[string]any{"last_heard": ts(last)}})
	}
}
