package indicators

import (
	"hash/fnv"
	"slices"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// bkey names one bucket.
type bkey struct {
	region, step string
	start        int64 // unix seconds
}

// aggregator holds the running state: per-object summaries, gauges per
// region and the buckets touched since the last flush. It is not safe for
// concurrent use (Service locks around it).
type aggregator struct {
	loc        *time.Location
	maxSamples int
	// load fetches a bucket that is not in memory (a late event for an old
	// hour); nil, nil when the store has none.
	load func(bkey) (*figures, error)

	objs      map[string]*objSum  // by object id
	objDirty  map[string]struct{} // summaries changed since the last flush
	gauges    map[string]*Gauges  // running counts by region (At unused)
	openTasks map[string]*objSum  // tasks not closed, for the overdue gauge
	buckets   map[bkey]*figures
	dirty     map[bkey]struct{}
	loadErr   error // first failed load since the last flush
}

func newAggregator(loc *time.Location, maxSamples int, load func(bkey) (*figures, error)) *aggregator {
	return &aggregator{loc: loc, maxSamples: maxSamples, load: load,
		objs: map[string]*objSum{}, objDirty: map[string]struct{}{}, gauges: map[string]*Gauges{},
		openTasks: map[string]*objSum{}, buckets: map[bkey]*figures{}, dirty: map[bkey]struct{}{}}
}

// restore installs stored summaries (at start, before any apply) and
// rebuilds the gauges from them.
func (a *aggregator) restore(id string, s *objSum) {
	a.objs[id] = s
	a.gauge(id, s, 1)
}

// apply brings the object id to its new state f (nil: removed), counting
// every event of f not yet counted at the time the object records for it
// (at: the change's time, for events without one).
func (a *aggregator) apply(id string, f *twin.Feature, at time.Time) {
	old := a.objs[id]
	if f == nil {
		if old == nil {
			return
		}
		a.gauge(id, old, -1)
		delete(a.objs, id)
		if hasEvents(old.L) {
			a.objDirty[id] = struct{}{}
		}
		return
	}
	if !tracked(f.ID.Layer) {
		return
	}
	s := &objSum{L: f.ID.Layer, R: attribution(f)}
	if old != nil {
		s.Done = old.Done
	}
	switch f.ID.Layer {
	case twin.Alerts:
		a.alert(s, f, at)
	case twin.Incidents:
		a.incident(s, f, at)
	case twin.Tasks:
		a.task(s, f, at)
	case twin.Devices, twin.Workers:
		s.S = f.Prop("status")
	}
	if s.equal(old) {
		return
	}
	if old != nil {
		a.gauge(id, old, -1)
	}
	a.gauge(id, s, 1)
	a.objs[id] = s
	if hasEvents(s.L) {
		a.objDirty[id] = struct{}{}
	}
}

// hasEvents reports whether the layer's objects have counted events, so
// their summaries are stored; devices' and workers' are only gauges,
// rebuilt from the twin at start.
func hasEvents(l twin.Layer) bool { return l == twin.Alerts || l == twin.Incidents || l == twin.Tasks }

// attribution is every region code the object counts in: its region path,
// and for alerts and tasks the regions they also concern
// (auth.AlsoRegionsProp: the other district of a bridge, a task's assignee
// region when it has no position) with their paths, as scope reads them.
func attribution(f *twin.Feature) []string {
	r := append([]string(nil), f.Region()...)
	if f.ID.Layer == twin.Alerts || f.ID.Layer == twin.Tasks {
		for _, c := range twin.PropStrings(f.Props.Get(auth.AlsoRegionsProp)) {
			if c == "" || len(c) > 12 {
				continue
			}
			for _, p := range regionPath(c) {
				if !slices.Contains(r, p) {
					r = append(r, p)
				}
			}
		}
	}
	return r
}

func propTime(f *twin.Feature, key string) (time.Time, bool) {
	s := f.Prop(key)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func timeOr(f *twin.Feature, key string, def time.Time) time.Time {
	if t, ok := propTime(f, key); ok {
		return t
	}
	return def
}

func (a *aggregator) alert(s *objSum, f *twin.Feature, at time.Time) {
	s.S, s.C = f.Prop("state"), f.Prop("severity")
	if s.Done&doneRaised == 0 {
		s.Done |= doneRaised
		a.count(s.R, timeOr(f, "first", at), func(g *figures) { inc(&g.AlertsRaised, raisedColour(f), 1) })
	}
	if s.S == "closed" && s.Done&doneClosed == 0 {
		s.Done |= doneClosed
		a.count(s.R, timeOr(f, "closed_at", at), func(g *figures) { inc(&g.AlertsClosed, s.C, 1) })
	}
}

// raisedColour is the colour an alert was raised in: the first entry of its
// history (rules' alerts escalate their severity later), else its severity.
func raisedColour(f *twin.Feature) string {
	if h, ok := f.Props.Get("history").([]any); ok && len(h) > 0 {
		if e, ok := h[0].(map[string]any); ok {
			if c, ok := e["severity"].(string); ok && c != "" {
				return c
			}
		}
	}
	return f.Prop("severity")
}

func (a *aggregator) incident(s *objSum, f *twin.Feature, at time.Time) {
	s.S = f.Prop("state")
	for i, st := range incidentStates {
		if s.Done&(1<<i) != 0 {
			continue
		}
		t, ok := propTime(f, st.at)
		if !ok && s.S != st.state {
			continue
		}
		if !ok {
			t = at
		}
		s.Done |= 1 << i
		state := st.state
		a.count(s.R, t, func(g *figures) { inc(&g.IncidentsEntered, state, 1) })
		for _, d := range durations {
			if d.to != st.at {
				continue
			}
			if from, ok := propTime(f, d.from); ok && !t.Before(from) {
				ms := t.Sub(from).Milliseconds()
				name := d.name
				a.count(s.R, t, func(g *figures) { a.sample(g, name, ms) })
			}
		}
	}
	sla, _ := f.Props.Get("sla").(map[string]any)
	breached := twin.PropStrings(f.Props.Get("breached"))
	for j, st := range slaSteps {
		bit := uint32(1) << (slaBit + j)
		if s.Done&bit != 0 {
			continue
		}
		by, hasBy := time.Time{}, false
		if v, ok := sla[st.by].(string); ok {
			t, err := time.Parse(time.RFC3339Nano, v)
			by, hasBy = t, err == nil
		}
		if slices.Contains(breached, st.step) {
			s.Done |= bit
			a.count(s.R, breachTime(f, st.step, by, hasBy, at), func(g *figures) { outcome(g, st.step).Breached++ })
			continue
		}
		done, ok := propTime(f, st.at)
		if !ok || !hasBy {
			continue
		}
		s.Done |= bit
		met := !done.After(by)
		a.count(s.R, done, func(g *figures) {
			if met {
				outcome(g, st.step).Met++
			} else {
				outcome(g, st.step).Breached++
			}
		})
	}
}

// breachTime is when a step was breached: its escalation in the incident's
// history, else its deadline, else the change.
func breachTime(f *twin.Feature, step string, by time.Time, hasBy bool, at time.Time) time.Time {
	if h, ok := f.Props.Get("history").([]any); ok {
		for _, e := range h {
			m, _ := e.(map[string]any)
			if a, _ := m["action"].(string); a == "escalate:"+step {
				if s, _ := m["at"].(string); s != "" {
					if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
						return t
					}
				}
			}
		}
	}
	if hasBy {
		return by
	}
	return at
}

func outcome(g *figures, step string) *Outcome {
	if g.SLA == nil {
		g.SLA = map[string]*Outcome{}
	}
	o := g.SLA[step]
	if o == nil {
		o = &Outcome{}
		g.SLA[step] = o
	}
	return o
}

func (a *aggregator) task(s *objSum, f *twin.Feature, at time.Time) {
	s.S = f.Prop("state")
	if t, ok := propTime(f, "due"); ok && s.S != "closed" {
		s.Due = t.UnixMilli()
	}
	for i, st := range taskStates {
		if s.Done&(1<<i) != 0 {
			continue
		}
		t, ok := propTime(f, st.at)
		if !ok && s.S != st.state {
			continue
		}
		if !ok {
			t = at
		}
		s.Done |= 1 << i
		state := st.state
		a.count(s.R, t, func(g *figures) { inc(&g.TasksEntered, state, 1) })
	}
}

// sample records one duration, keeping a uniform reservoir beyond
// maxSamples (the slot is chosen by a hash of the count, so a replayed
// flush picks the same one).
func (a *aggregator) sample(g *figures, name string, ms int64) {
	if g.Durations == nil {
		g.Durations = map[string]*samples{}
	}
	d := g.Durations[name]
	if d == nil {
		d = &samples{}
		g.Durations[name] = d
	}
	d.N++
	if len(d.MS) < a.maxSamples {
		d.MS = append(d.MS, ms)
		return
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte{byte(d.N), byte(d.N >> 8), byte(d.N >> 16), byte(d.N >> 24)})
	if j := h.Sum64() % uint64(d.N); j < uint64(len(d.MS)) {
		d.MS[j] = ms
	}
}

// count applies fn to the hour and day buckets holding t of every region.
func (a *aggregator) count(regions []string, t time.Time, fn func(*figures)) {
	for _, r := range regions {
		for _, step := range []string{Hour, Day} {
			if g := a.bucket(bkey{r, step, bucketStart(step, t, a.loc).Unix()}); g != nil {
				fn(g)
			}
		}
	}
}

// bucket returns a bucket for writing, loading it from the store when it
// is not in memory, and marks it dirty.
func (a *aggregator) bucket(k bkey) *figures {
	g, ok := a.buckets[k]
	if !ok {
		if a.load != nil {
			var err error
			g, err = a.load(k)
			if err != nil && a.loadErr == nil {
				a.loadErr = err
			}
		}
		if g == nil {
			g = &figures{}
		}
		a.buckets[k] = g
	}
	a.dirty[k] = struct{}{}
	return g
}

// gauge adds (d = 1) or removes (d = -1) an object's contribution to the
// running counts of its regions.
func (a *aggregator) gauge(id string, s *objSum, d int) {
	if s.L == twin.Tasks {
		if d > 0 && s.S != "closed" {
			a.openTasks[id] = s
		} else if d < 0 {
			delete(a.openTasks, id)
		}
	}
	for _, r := range s.R {
		g := a.gauges[r]
		if g == nil {
			g = &Gauges{}
			a.gauges[r] = g
		}
		switch s.L {
		case twin.Alerts:
			if s.S == "open" || s.S == "acked" {
				inc(&g.AlertsOpen, s.C, d)
			}
		case twin.Incidents:
			if s.S != "closed" {
				inc(&g.IncidentsOpen, s.S, d)
			}
		case twin.Tasks:
			if s.S != "closed" {
				inc(&g.TasksOpen, s.S, d)
			}
		case twin.Devices:
			g.DevicesTotal += d
			if s.S != "offline" {
				g.DevicesOnline += d
			}
		case twin.Workers:
			g.WorkersTotal += d
			if s.S == "available" || s.S == "busy" {
				g.WorkersOnDuty += d
			}
		}
	}
}

// sampleGauges writes every region's running counts (and its overdue tasks
// at now) into the hour and day buckets holding now, where they differ
// from what the bucket holds.
func (a *aggregator) sampleGauges(now time.Time) {
	overdue := map[string]int{}
	for _, s := range a.openTasks {
		if s.Due != 0 && s.Due < now.UnixMilli() {
			for _, r := range s.R {
				overdue[r]++
			}
		}
	}
	for r, g := range a.gauges {
		cur := g.clone()
		cur.TasksOverdue = overdue[r]
		cur.At = now.UTC()
		for _, step := range []string{Hour, Day} {
			k := bkey{r, step, bucketStart(step, now, a.loc).Unix()}
			b, ok := a.buckets[k]
			if ok && b.Gauges.sameCounts(cur) {
				continue
			}
			b = a.bucket(k)
			if b.Gauges.sameCounts(cur) {
				continue // loaded from the store with these counts
			}
			b.Gauges = cur
		}
	}
}

// takeDirty returns the dirty buckets as rows and the changed summaries,
// and clears the dirty marks (the caller restores them with putBack if the
// write fails).
func (a *aggregator) takeDirty(encode func(*figures) ([]byte, error), seq uint64) ([]twin.IndicatorRow, map[string][]byte, []bkey, error) {
	rows := make([]twin.IndicatorRow, 0, len(a.dirty))
	keys := make([]bkey, 0, len(a.dirty))
	for k := range a.dirty {
		b, err := encode(a.buckets[k])
		if err != nil {
			return nil, nil, nil, err
		}
		rows = append(rows, twin.IndicatorRow{Region: k.region, Step: k.step, Start: time.Unix(k.start, 0).UTC(), Seq: seq, Data: b})
		keys = append(keys, k)
	}
	objs := make(map[string][]byte, len(a.objDirty))
	for id := range a.objDirty {
		s := a.objs[id]
		if s == nil {
			objs[id] = nil
			continue
		}
		b, err := encodeSum(s)
		if err != nil {
			return nil, nil, nil, err
		}
		objs[id] = b
	}
	return rows, objs, keys, nil
}

// clean forgets the dirty marks of a successful write, and buckets that
// are clean and older than keep (they are in the store).
func (a *aggregator) clean(keys []bkey, ids map[string][]byte, keep time.Time) {
	for _, k := range keys {
		delete(a.dirty, k)
	}
	for id := range ids {
		delete(a.objDirty, id)
	}
	for k := range a.buckets {
		if _, d := a.dirty[k]; !d && k.start < keep.Unix() {
			delete(a.buckets, k)
		}
	}
	a.loadErr = nil
}
