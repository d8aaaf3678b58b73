package rules

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// Alert states.
const (
	StateOpen   = "open"
	StateAcked  = "acked"
	StateClosed = "closed"
)

// maxHistory bounds an alert's history list; the oldest entries go first.
const maxHistory = 50

type alertKey struct {
	rule    string
	subject twin.ID
}

// alertBook remembers, per (rule, subject), the name of the open alert and
// the next sequence number, so repeated firings update one alert and names
// stay unique after a close. Guarded by Engine.mu.
type alertBook struct {
	open map[alertKey]string
	next map[alertKey]int
}

func newAlertBook(tw *twin.Twin) *alertBook {
	b := &alertBook{open: map[alertKey]string{}, next: map[alertKey]int{}}
	tw.Range(twin.Alerts, func(f *twin.Feature) bool {
		sid, err := twin.ParseID(f.Prop("subject"))
		if err != nil {
			return true
		}
		k := alertKey{f.Prop("rule"), sid}
		if i := strings.LastIndexByte(f.ID.Name, '.'); i >= 0 {
			if n, err := strconv.Atoi(f.ID.Name[i+1:]); err == nil && n >= b.next[k] {
				b.next[k] = n + 1
			}
		}
		if f.Prop("state") != StateClosed {
			b.open[k] = f.ID.Name
		}
		return true
	})
	return b
}

// firing is one rule firing on one subject.
type firing struct {
	rule     *active
	subject  *twin.Feature
	target   *twin.Feature // the fence, or nil
	joined   *twin.Feature // the object the subject is attached to, or nil
	severity string
	tier     string // "" keeps the alert's tier (new alerts: the rule's)
	at       time.Time
	message  string
	detail   map[string]any
	// exact sets severity and tier as given instead of only raising them
	// (risk alerts follow the computed level both ways).
	exact bool
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// fire opens an alert for (rule, subject) or updates the open one.
func (e *Engine) fire(f firing) {
	k := alertKey{f.rule.spec.Name, f.subject.ID}
	now := e.clk.Now()
	regions := e.regionsOf(f.subject, f.target, f.joined)
	geom := position(f.subject)
	at := ts(f.at) // the entry's "at" and the alert's "last"
	entry := map[string]any{"at": at, "event": "fired", "severity": f.severity}
	for kk, vv := range f.detail {
		entry[kk] = vv
	}
	if name, ok := e.al.open[k]; ok {
		var opened bool
		// Stamped with the event's time (the telemetry's ts), so a replay
		// shows the alert when its cause happened (twin/timeline).
		ch, _, err := e.tw.UpdateAt(twin.NewID(twin.Alerts, name), f.at, func(cur *twin.Feature) (*twin.Feature, error) {
			if cur == nil || cur.Prop("state") == StateClosed {
				return nil, nil
			}
			opened = true
			n, _ := cur.Number("count")
			cur.Props.Set("count", n+1)
			cur.Props.Set("last", at)
			sev := cur.Prop("severity")
			if f.exact {
				if f.severity != sev {
					cur.Props.Set("severity", f.severity)
				}
				if f.tier != "" && f.tier != cur.Prop("tier") {
					cur.Props.Set("tier", f.tier)
					cur.Props.Set("tier_since", ts(now))
				}
			} else if s := moreSevere(sev, f.severity); s != sev {
				cur.Props.Set("severity", s)
			}
			if had := cur.Props.Get("regions"); !hasAll(had, regions) {
				cur.Props.Set("regions", twin.PropList(mergeRegions(had, regions)))
			}
			if f.message != "" {
				cur.Props.Set("message", f.message)
			}
			for kk, vv := range f.detail {
				cur.Props.Set(kk, vv)
			}
			cur.Props.AppendList("history", entry, maxHistory)
			if geom != nil {
				cur.Geometry = geom
			}
			return cur, nil
		})
		if err != nil {
			e.log.Error("rules: update alert", "alert", name, "err", err)
			return
		}
		if opened {
			e.m.fired.WithLabelValues(f.rule.spec.Name).Inc()
			e.published(ch.New, f, false)
			return
		}
		delete(e.al.open, k)
	}
	n := e.al.next[k]
	e.al.next[k] = n + 1
	name := fmt.Sprintf("%s.%s.%s.%d", f.rule.spec.Name, f.subject.ID.Layer, f.subject.ID.Name, n)
	tier := f.tier
	if tier == "" {
		tier = f.rule.tier()
	}
	props := map[string]any{
		"rule": f.rule.spec.Name, "kind": f.rule.spec.Kind, "severity": f.severity, "subject": f.subject.ID.String(),
		"state": StateOpen, "tier": tier, "tier_since": ts(now), "message": f.message, "count": 1.0,
		"first": ts(f.at), "last": ts(f.at), "regions": twin.PropList(regions),
		"history": []any{entry},
	}
	if f.target != nil {
		props["target"] = f.target.ID.String()
	}
	if f.joined != nil {
		props["attached_to"] = f.joined.ID.String()
	}
	// The subject's (and its building's) display names travel with the
	// alert: a panel row shows 渝A·12345 or 解放碑锦绣大厦 without fetching
	// the subject, live or in a replay.
	copyNames(props, "subject_", f.subject)
	copyNames(props, "attached_", f.joined)
	for kk, vv := range f.detail {
		props[kk] = vv
	}
	ch, err := e.tw.PutAt(&twin.Feature{ID: twin.NewID(twin.Alerts, name), Geometry: geom, Props: twin.NewProps(props)}, f.at)
	if err != nil {
		e.log.Error("rules: open alert", "alert", name, "err", err)
		return
	}
	e.al.open[k] = name
	e.m.fired.WithLabelValues(f.rule.spec.Name).Inc()
	e.published(ch.New, f, true)
	if typ := f.rule.spec.Incident; typ != "" && e.opts.OpenIncident != nil {
		if at, ok := geom.(orb.Point); ok {
			desc := fmt.Sprintf("%s (alert %s)", f.message, name)
			if err := e.opts.OpenIncident(typ, at, desc); err != nil {
				e.log.Error("rules: open incident", "rule", f.rule.spec.Name, "alert", name, "err", err)
			}
		}
	}
}

// resolve closes the open alert of (rule, subject) because its condition
// cleared (actor "rule:<name>").
func (e *Engine) resolve(a *active, subject twin.ID, why string) {
	e.resolveAt(a, subject, why, time.Time{})
}

// resolveAt is resolve caused by an event at time at (the readings back
// to normal): the alert's Updated is at (see twin.UpdateAt); zero = now.
func (e *Engine) resolveAt(a *active, subject twin.ID, why string, at time.Time) {
	k := alertKey{a.spec.Name, subject}
	name, ok := e.al.open[k]
	if !ok {
		return
	}
	delete(e.al.open, k)
	now := e.clk.Now()
	ch, done, err := e.tw.UpdateAt(twin.NewID(twin.Alerts, name), at, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil || cur.Prop("state") == StateClosed {
			return nil, nil
		}
		actor := "rule:" + a.spec.Name
		cur.Props.Set("state", StateClosed)
		cur.Props.Set("closed_by", actor)
		cur.Props.Set("closed_at", ts(now))
		cur.Props.AppendList("history", map[string]any{"at": ts(now), "event": "cleared", "by": actor, "why": why}, maxHistory)
		return cur, nil
	})
	if err != nil {
		e.log.Error("rules: clear alert", "alert", name, "err", err)
		return
	}
	if done {
		e.alertStateChanged(ch.New)
	}
}

// escalate raises every open, unacknowledged alert that has stayed at its
// tier longer than the tier's SLA: one tier up and one colour more severe.
func (e *Engine) escalate(now time.Time) {
	keys := make([]alertKey, 0, len(e.al.open))
	for k := range e.al.open {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return e.al.open[keys[i]] < e.al.open[keys[j]] })
	for _, k := range keys {
		if e.risk.rule != nil && k.rule == e.risk.rule.spec.Name {
			continue // risk alerts follow the hazard clock instead
		}
		name := e.al.open[k]
		if cur, ok := e.tw.Get(twin.NewID(twin.Alerts, name)); !ok || !e.due(cur, now) {
			continue // checked on the shared snapshot first: no write lock for alerts not yet due
		}
		ch, done, err := e.tw.Update(twin.NewID(twin.Alerts, name), func(cur *twin.Feature) (*twin.Feature, error) {
			if cur == nil || cur.Prop("state") != StateOpen {
				return nil, nil
			}
			if !e.due(cur, now) {
				return nil, nil
			}
			tier := cur.Prop("tier")
			ti := tierIndex(tier)
			sla := e.sla(tier)
			sev := cur.Prop("severity")
			nsev := sev
			if l := colourLevel(sev); l > 1 {
				nsev = colours[l-1]
			}
			cur.Props.Set("tier", tiers[ti+1])
			cur.Props.Set("tier_since", ts(now))
			cur.Props.Set("severity", nsev)
			cur.Props.AppendList("history", map[string]any{"at": ts(now), "event": "escalated",
				"from": tier, "to": tiers[ti+1], "severity": nsev, "why": fmt.Sprintf("not acknowledged within %s", sla)}, maxHistory)
			return cur, nil
		})
		if err != nil {
			e.log.Error("rules: escalate", "alert", name, "err", err)
			continue
		}
		if done {
			e.alertStateChanged(ch.New)
		}
	}
}

// due reports whether an alert is open, unacknowledged and past its tier's SLA.
func (e *Engine) due(al *twin.Feature, now time.Time) bool {
	if al.Prop("state") != StateOpen {
		return false
	}
	tier := al.Prop("tier")
	ti := tierIndex(tier)
	sla := e.sla(tier)
	since, err := time.Parse(time.RFC3339Nano, al.Prop("tier_since"))
	return ti >= 0 && ti < len(tiers)-1 && sla > 0 && err == nil && now.Sub(since) >= sla
}

func (e *Engine) published(al *twin.Feature, f firing, isNew bool) {
	e.alertStateChanged(al)
}

// regionsOf lists every region code an alert concerns (auth.AlsoRegionsProp),
// all computed by the server from geometry, never read from props: the
// region paths of the subject, the target and the joined object, and of
// every vertex of a line target (both districts a bridge joins; the bridge's
// `connects` prop is client-written, so it only labels the direction).
// Sorted, unique.
func (e *Engine) regionsOf(fs ...*twin.Feature) []string {
	set := map[string]bool{}
	for _, f := range fs {
		if f == nil {
			continue
		}
		for _, c := range f.Region() {
			set[c] = true
		}
		if e.opts.Place == nil {
			continue
		}
		switch g := f.Geometry.(type) {
		case orb.LineString:
			for _, p := range g {
				for _, c := range e.opts.Place(p) {
					set[c] = true
				}
			}
		case orb.MultiLineString:
			for _, ls := range g {
				for _, p := range ls {
					for _, c := range e.opts.Place(p) {
						set[c] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// hasAll reports whether the list cur (an alert's regions) holds every
// code of add: most firings of an alert add none, and the list is then
// left as it is rather than rebuilt.
func hasAll(cur any, add []string) bool {
	have := twin.PropStrings(cur)
	for _, c := range add {
		if !slices.Contains(have, c) {
			return false
		}
	}
	return true
}

func mergeRegions(cur any, add []string) []string {
	return sortedUnique(append(twin.PropStrings(cur), add...))
}

func sortedUnique(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, s := range l {
		if i == 0 || s != l[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// position is where an alert is drawn: the subject's point, or a
// representative point of a line or polygon subject.
func position(f *twin.Feature) orb.Geometry {
	switch g := f.Geometry.(type) {
	case nil:
		return nil
	case orb.Point:
		return g
	default:
		if p, ok := planar.Centroid(g); ok {
			return p
		}
		return g.Bound().Center()
	}
}

// metrics of the engine.
type metrics struct {
	fired       *prometheus.CounterVec
	evalSeconds prometheus.Histogram
	skipped     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_alerts_fired_total",
			Help: "Rule firings (new alerts and repeats on an open alert), by rule."}, []string{"rule"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_rule_eval_seconds",
			Help:    "Rule evaluation time per twin change (mean over each drained batch).",
			Buckets: prometheus.ExponentialBuckets(1e-7, 4, 10)}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_rules_skipped_changes_total",
			Help: "Changes the rules engine skipped because it fell behind the feed window."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.fired, m.evalSeconds, m.skipped} {
			if err := reg.Register(c); err != nil {
				slog.Default().Warn("rules: register metric", "err", err)
			}
		}
	}
	return m
}

func jsonOf(r *Rule) ([]byte, error) { return json.Marshal(r) }

// displayProps are the properties an operator reads an object by.
var displayProps = []string{"name", "name_zh", "title", "plate"}

// copyNames copies src's display properties into props, prefixed.
func copyNames(props map[string]any, prefix string, src *twin.Feature) {
	if src == nil {
		return
	}
	for _, k := range displayProps {
		if v := src.Prop(k); v != "" {
			props[prefix+k] = v
		}
	}
}
