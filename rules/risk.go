package rules

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/citytwin/citytwin/twin"
)

// riskIndex tracks what a building's risk depends on: the open alarms of
// devices attached to it, and the hazards (its `hazards` prop, incidents
// attached to it) whose deadlines the clock can pass. Guarded by Engine.mu.
type riskIndex struct {
	rule      *active
	alarms    map[twin.ID]map[string]string // building -> alert name -> colour
	watch     map[twin.ID]bool              // buildings with hazards: re-evaluated on Tick
	incidents map[twin.ID]twin.ID           // incident -> building
	tasks     map[twin.ID]twin.ID           // rectification task -> building
	// at is the time of the event updateRisk is answering (an alarm's
	// updated: its telemetry's ts), stamped on the building's change so a
	// replay shows the colour when its cause happened; zero = the clock.
	at time.Time
}

func newRiskIndex() *riskIndex {
	return &riskIndex{alarms: map[twin.ID]map[string]string{}, watch: map[twin.ID]bool{}, incidents: map[twin.ID]twin.ID{},
		tasks: map[twin.ID]twin.ID{}}
}

// rectificationOf returns the building a rectification task is about.
func rectificationOf(f *twin.Feature, layer twin.Layer) (twin.ID, bool) {
	if f == nil || f.Prop("kind") != "rectification" {
		return twin.ID{}, false
	}
	bid, err := twin.ParseID(f.Prop("subject"))
	return bid, err == nil && bid.Layer == layer
}

// alertStateChanged updates the alarms of the building an alert is about.
func (e *Engine) alertStateChanged(al *twin.Feature) {
	if al == nil || (e.risk.rule != nil && al.Prop("rule") == e.risk.rule.spec.Name) {
		return
	}
	at := al.Prop("attached_to")
	if at == "" {
		return // most alerts concern no building (ParseID's error cost two allocations)
	}
	bid, err := twin.ParseID(at)
	if err != nil {
		return
	}
	m := e.risk.alarms[bid]
	if al.Prop("state") == StateClosed {
		delete(m, al.ID.Name)
		if len(m) == 0 {
			delete(e.risk.alarms, bid)
		}
	} else {
		if m == nil {
			m = map[string]string{}
			e.risk.alarms[bid] = m
		}
		m[al.ID.Name] = al.Prop("severity")
	}
	e.risk.at = al.Updated.Time()
	e.updateRisk(bid, e.clk.Now())
	e.risk.at = time.Time{}
}

// riskChanged notes hazards on buildings and incidents attached to them.
func (e *Engine) riskChanged(c *twin.Change) {
	if e.risk.rule == nil {
		return
	}
	layer := e.riskLayer()
	id := c.ID()
	switch id.Layer {
	case layer:
		_, has := c.New.Props.Lookup("hazards")
		if has {
			e.risk.watch[id] = true
		}
		if has || e.risk.watch[id] {
			e.updateRisk(id, e.clk.Now())
		}
	case twin.Tasks:
		bid, ok := rectificationOf(c.New, layer)
		if !ok {
			return
		}
		e.risk.tasks[id] = bid
		e.risk.watch[bid] = true
		e.updateRisk(bid, e.clk.Now())
	case twin.Incidents:
		ref := c.New.Prop("attached_to")
		if ref == "" {
			ref = c.New.Prop("building")
		}
		bid, err := twin.ParseID(ref)
		if err != nil || bid.Layer != layer {
			return
		}
		e.risk.incidents[id] = bid
		e.risk.watch[bid] = true
		e.updateRisk(bid, e.clk.Now())
	}
}

func (e *Engine) riskLayer() twin.Layer {
	if e.risk.rule != nil && e.risk.rule.spec.Layer != "" {
		return twin.Layer(e.risk.rule.spec.Layer)
	}
	return twin.Buildings
}

func (e *Engine) tickRisk(now time.Time) {
	if e.risk.rule == nil {
		return
	}
	ids := make([]twin.ID, 0, len(e.risk.watch))
	for id := range e.risk.watch {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Name < ids[j].Name })
	for _, id := range ids {
		e.updateRisk(id, now)
	}
}

// hazard is one open rectification item with a deadline. A rectification
// task (governance/tasks) carries its own level and its escalation count:
// the task's due clock steps it, so the colour follows the task.
type hazard struct {
	name     string
	deadline time.Time
	level    int // the hazard's own level while open (1 red .. 5 green); 0: none
	steps    int // escalation steps taken; -1: count periods past the deadline
}

func (e *Engine) hazardsOf(b *twin.Feature) []hazard {
	var out []hazard
	if l, ok := b.Props.Get("hazards").([]any); ok {
		for i, x := range l {
			m, ok := x.(map[string]any)
			if !ok {
				continue
			}
			if fixed, _ := m["fixed"].(bool); fixed {
				continue
			}
			if s, _ := m["state"].(string); s == "fixed" || s == "closed" || s == "resolved" {
				continue
			}
			ds, _ := m["deadline"].(string)
			d, err := time.Parse(time.RFC3339, ds)
			if err != nil {
				continue
			}
			name, _ := m["name"].(string)
			if name == "" {
				name = fmt.Sprintf("hazards[%d]", i)
			}
			out = append(out, hazard{name: name, deadline: d, steps: -1})
		}
	}
	for tid, bid := range e.risk.tasks {
		if bid != b.ID {
			continue
		}
		t, ok := e.tw.Get(tid)
		if !ok {
			delete(e.risk.tasks, tid)
			continue
		}
		if t.Prop("state") == "closed" {
			delete(e.risk.tasks, tid)
			continue
		}
		d, err := time.Parse(time.RFC3339Nano, t.Prop("due"))
		if err != nil {
			continue
		}
		h := hazard{name: tid.String(), deadline: d}
		if l, ok := t.Number("risk_level"); ok && l >= 1 && l <= 5 {
			h.level = int(l)
		}
		n, _ := t.Number("escalations")
		h.steps = int(n)
		if o, _ := t.Props.Get("overdue").(bool); o && h.steps == 0 {
			h.steps = 1
		}
		out = append(out, h)
	}
	for iid, bid := range e.risk.incidents {
		if bid != b.ID {
			continue
		}
		inc, ok := e.tw.Get(iid)
		if !ok {
			delete(e.risk.incidents, iid)
			continue
		}
		if s := inc.Prop("state"); s == "resolved" || s == "closed" {
			continue
		}
		if d, err := time.Parse(time.RFC3339, inc.Prop("deadline")); err == nil {
			out = append(out, hazard{name: iid.String(), deadline: d, steps: -1})
		}
	}
	return out
}

// updateRisk recomputes a building's risk level, colour and supervising
// tier, writes them when they changed, notifies the owners, and keeps one
// risk alert open while the level is raised above the building's base.
//
// Level: the base (risk_base, else the level found the first time) lowered
// to the colour of any open alarm of an attached device (hydrant pressure 0
// -> orange), and for each hazard past its deadline one step per period
// (the first step at the deadline), each step also moving the tier up
// street -> district -> city.
func (e *Engine) updateRisk(bid twin.ID, now time.Time) {
	a := e.risk.rule
	if a == nil || bid.Layer != e.riskLayer() {
		return
	}
	b, ok := e.tw.Get(bid)
	if !ok {
		delete(e.risk.watch, bid)
		delete(e.risk.alarms, bid)
		return
	}
	base := 5
	if n, ok := b.Number("risk_base"); ok {
		base = int(n)
	} else if n, ok := b.Number("risk_level"); ok {
		base = int(n)
	}
	base = max(1, min(5, base))
	lvl, ti := base, 0
	var why []string
	for name, sev := range e.risk.alarms[bid] {
		if l := colourLevel(sev); l > 0 && l < lvl {
			lvl = l
			why = append(why, "alarm "+name)
		}
	}
	period := time.Duration(a.spec.Period)
	if period <= 0 {
		period = 24 * time.Hour
	}
	for _, h := range e.hazardsOf(b) {
		from := base
		if h.level > 0 && h.level < from {
			from = h.level
			if from < lvl {
				lvl = from
				why = append(why, "open "+h.name)
			}
		}
		steps := h.steps
		if steps < 0 {
			if now.Before(h.deadline) {
				continue
			}
			steps = 1 + int(now.Sub(h.deadline)/period)
		}
		if steps == 0 {
			continue
		}
		if l := max(1, from-steps); l < lvl {
			lvl = l
		}
		ti = max(ti, min(steps, len(tiers)-1))
		why = append(why, fmt.Sprintf("hazard %s overdue since %s", h.name, h.deadline.Format(time.RFC3339)))
	}
	tier := tiers[ti]
	colour := colours[lvl]
	curLvl, _ := b.Number("risk_level")
	curTier := b.Prop("risk_tier")
	if curTier == "" {
		curTier = tiers[0]
	}
	if int(curLvl) == lvl && b.Prop("risk_color") == colour && curTier == tier {
		return
	}
	ch, done, err := e.tw.UpdateAt(bid, e.risk.at, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil {
			return nil, nil
		}
		if _, ok := cur.Props.Lookup("risk_base"); !ok {
			cur.Props.Set("risk_base", float64(base))
		}
		cur.Props.Set("risk_level", float64(lvl))
		cur.Props.Set("risk_color", colour)
		cur.Props.Set("risk_tier", tier)
		return cur, nil
	})
	if err != nil || !done {
		if err != nil {
			e.log.Error("rules: risk update", "building", bid, "err", err)
		}
		return
	}
	sort.Strings(why)
	if a.spec.Notify == nil || *a.spec.Notify {
		e.notifyPersons(twin.PropStrings(ch.New.Props.Get("owners")), map[string]any{"event": "risk", "building": bid.String(),
			"risk_level": lvl, "risk_color": colour, "tier": tier, "reasons": why})
	}
	if lvl < base {
		msg := a.spec.Message
		if msg == "" {
			msg = fmt.Sprintf("%s risk %s", bid, colour)
		}
		e.fire(firing{rule: a, subject: ch.New, severity: colour, tier: tier, at: now, message: msg, exact: true,
			detail: map[string]any{"risk_level": float64(lvl), "reasons": toAny(why)}})
	} else {
		e.resolve(a, bid, "risk back to base level")
	}
}

func toAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// seedRisk learns, at Load, what risk depends on in the twin as it stands:
// buildings with hazards, incidents attached to buildings, and open alarms
// of attached devices (the feed only tells about later changes).
func (e *Engine) seedRisk() {
	layer := e.riskLayer()
	e.tw.Range(layer, func(f *twin.Feature) bool {
		if _, ok := f.Props.Lookup("hazards"); ok {
			e.risk.watch[f.ID] = true
		}
		return true
	})
	e.tw.Range(twin.Incidents, func(f *twin.Feature) bool {
		ref := f.Prop("attached_to")
		if ref == "" {
			ref = f.Prop("building")
		}
		if bid, err := twin.ParseID(ref); err == nil && bid.Layer == layer {
			e.risk.incidents[f.ID] = bid
			e.risk.watch[bid] = true
		}
		return true
	})
	e.tw.Range(twin.Tasks, func(f *twin.Feature) bool {
		if bid, ok := rectificationOf(f, layer); ok && f.Prop("state") != "closed" {
			e.risk.tasks[f.ID] = bid
			e.risk.watch[bid] = true
		}
		return true
	})
	e.tw.Range(twin.Alerts, func(al *twin.Feature) bool {
		if al.Prop("state") == StateClosed || al.Prop("rule") == e.risk.rule.spec.Name {
			return true
		}
		if bid, err := twin.ParseID(al.Prop("attached_to")); err == nil && bid.Layer == layer {
			m := e.risk.alarms[bid]
			if m == nil {
				m = map[string]string{}
				e.risk.alarms[bid] = m
			}
			m[al.ID.Name] = al.Prop("severity")
		}
		return true
	})
}

// notifyPersons hands a risk notification to the Notifier (blocking while
// its outbox is full: back-pressure, never a drop).
func (e *Engine) notifyPersons(persons []string, msg map[string]any) {
	if e.opts.Notifier == nil || len(persons) == 0 {
		return
	}
	e.opts.Notifier.Notify(context.Background(), persons, msg)
}
