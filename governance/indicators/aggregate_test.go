package indicators

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin"
)

// refModel is the test's independent bookkeeping: every event the
// generator makes is written down when it is made (not derived from
// props), and gauges are recounted from the objects by a plain scan.
type refModel struct {
	loc    *time.Location
	flows  map[string]int     // "region|step|start|what|key" -> count
	dur    map[string][]int64 // "region|step|start|name" -> ms
	objs   map[string]*twin.Feature
	extras map[string][]string // alert id -> also-regions
}

func (m *refModel) add(path []string, t time.Time, what, key string) {
	for _, r := range path {
		for _, step := range []string{Hour, Day} {
			m.flows[fmt.Sprintf("%s|%s|%d|%s|%s", r, step, bucketStart(step, t, m.loc).Unix(), what, key)]++
		}
	}
}

func (m *refModel) addDur(path []string, t time.Time, name string, ms int64) {
	for _, r := range path {
		for _, step := range []string{Hour, Day} {
			k := fmt.Sprintf("%s|%s|%d|%s", r, step, bucketStart(step, t, m.loc).Unix(), name)
			m.dur[k] = append(m.dur[k], ms)
		}
	}
}

// paths is the attribution of an object: its path, and an alert's extras
// with their paths, without repeats.
func (m *refModel) paths(f *twin.Feature) []string {
	out := append([]string(nil), f.Region()...)
	for _, c := range m.extras[f.ID.String()] {
		cands := []string{"500000", c[:6]}
		if len(c) > 6 {
			cands = append(cands, c)
		}
		for _, p := range cands {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// gauges recounts every region's gauges from the objects at now.
func (m *refModel) gauges(now time.Time) map[string]*Gauges {
	out := map[string]*Gauges{}
	get := func(r string) *Gauges {
		if out[r] == nil {
			out[r] = &Gauges{AlertsOpen: map[string]int{}, IncidentsOpen: map[string]int{}, TasksOpen: map[string]int{}}
		}
		return out[r]
	}
	for _, f := range m.objs {
		for _, r := range m.paths(f) {
			g := get(r)
			st := f.Prop("state")
			switch f.ID.Layer {
			case twin.Alerts:
				if st == "open" || st == "acked" {
					g.AlertsOpen[f.Prop("severity")]++
				}
			case twin.Incidents:
				if st != "closed" {
					g.IncidentsOpen[st]++
				}
			case twin.Tasks:
				if st != "closed" {
					g.TasksOpen[st]++
					if due, ok := propTime(f, "due"); ok && due.Before(now) && now.UnixMilli() > due.UnixMilli() {
						g.TasksOverdue++
					}
				}
			case twin.Devices:
				g.DevicesTotal++
				if f.Prop("status") != "offline" {
					g.DevicesOnline++
				}
			case twin.Workers:
				g.WorkersTotal++
				if s := f.Prop("status"); s == "available" || s == "busy" {
					g.WorkersOnDuty++
				}
			}
		}
	}
	return out
}

// memStore is an in-memory row store standing in for the store's rows.
type memStore map[bkey][]byte

func (s memStore) load(k bkey) (*figures, error) {
	b, ok := s[k]
	if !ok {
		return nil, nil
	}
	return decodeFigures(b)
}

var streets = [][]string{
	{"500000", "500103", "500103001"}, {"500000", "500103", "500103002"},
	{"500000", "500105", "500105001"}, {"500000", "500105", "500105002"}, {"500000", "500106", "500106001"},
}

var colours = []string{"red", "orange", "yellow", "blue"}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// TestDifferential drives the aggregator with a seeded random sequence of
// object changes over two days of fake time (alerts raised, escalated,
// acked, closed; incidents through the 1-5-10 loop with breaches; tasks
// with due times; devices and workers changing status and moving; objects
// removed; duplicate applies; restarts from the stored summaries) and
// compares every bucket with the generator's own record of what happened.
// TWIN_TEST_SEED=n replays a run.
func TestDifferential(t *testing.T) {
	seed := testseed.Seed(t, "TWIN_TEST_SEED")
	for run := range 3 {
		differential(t, seed+uint64(run))
	}
}

func differential(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	loc := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, loc).Add(-30 * time.Minute)
	store := memStore{}
	const maxSamples = 8
	agg := newAggregator(loc, maxSamples, store.load)
	ref := &refModel{loc: loc, flows: map[string]int{}, dur: map[string][]int64{}, objs: map[string]*twin.Feature{}, extras: map[string][]string{}}
	flush := func() {
		rows, objs, keys, err := agg.takeDirty(encodeFigures, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			store[bkey{r.Region, r.Step, r.Start.Unix()}] = r.Data
		}
		agg.clean(keys, objs, now.Add(-3*time.Hour)) // forget old buckets: late events must load them
	}
	restart := func() {
		// What a restart keeps: the summaries of objects with events (as
		// stored), the rows; the gauges come back from the twin's objects.
		flush()
		enc := map[string][]byte{}
		for id, s := range agg.objs {
			if hasEvents(s.L) {
				b, _ := encodeSum(s)
				enc[id] = b
			}
		}
		agg = newAggregator(loc, maxSamples, store.load)
		for id, b := range enc {
			var o objSum
			if err := json.Unmarshal(b, &o); err != nil {
				t.Fatal(err)
			}
			agg.restore(id, &o)
		}
		for id, f := range ref.objs {
			agg.apply(id, f, now) // the reconciliation against the twin
		}
	}
	seq := 0
	put := func(f *twin.Feature) {
		f.Version++
		ref.objs[f.ID.String()] = f
		agg.apply(f.ID.String(), f, now)
		if rng.IntN(10) == 0 {
			agg.apply(f.ID.String(), f, now) // a duplicate
		}
	}
	clone := func(f *twin.Feature) *twin.Feature { c := f.Clone(); return c }
	pick := func(l twin.Layer, ok func(*twin.Feature) bool) *twin.Feature {
		var ids []string
		for id, f := range ref.objs {
			if f.ID.Layer == l && ok(f) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		slices.Sort(ids)
		return clone(ref.objs[ids[rng.IntN(len(ids))]])
	}
	state := func(s ...string) func(*twin.Feature) bool {
		return func(f *twin.Feature) bool { return slices.Contains(s, f.Prop("state")) }
	}
	for range 1500 {
		now = now.Add(time.Duration(rng.IntN(180)) * time.Second)
		seq++
		path := streets[rng.IntN(len(streets))]
		switch op := rng.IntN(20); op {
		case 0, 1: // raise an alert
			id := twin.NewID(twin.Alerts, fmt.Sprintf("a%d", seq))
			c := colours[rng.IntN(len(colours))]
			p := map[string]any{"state": "open", "severity": c, "first": ts(now), "history": []any{map[string]any{"severity": c}}}
			if rng.IntN(4) == 0 {
				other := streets[rng.IntN(len(streets))]
				extra := other[1]
				if rng.IntN(2) == 0 {
					extra = other[2]
				}
				p["regions"] = []any{extra}
				ref.extras[id.String()] = []string{extra}
			}
			f := &twin.Feature{ID: id, Place: twin.NewPlace(path, ""), Props: twin.NewProps(p)}
			ref.add(ref.paths(f), now, "raised", c)
			put(f)
		case 2: // escalate an alert
			if f := pick(twin.Alerts, state("open", "acked")); f != nil {
				f.Props.Set("severity", colours[max(0, slices.Index(colours, f.Prop("severity"))-1)])
				put(f)
			}
		case 3:
			if f := pick(twin.Alerts, state("open")); f != nil {
				f.Props.Set("state", "acked")
				put(f)
			}
		case 4, 5:
			if f := pick(twin.Alerts, state("open", "acked")); f != nil {
				f.Props.Set("state", "closed")
				f.Props.Set("closed_at", ts(now))
				ref.add(ref.paths(f), now, "closed", f.Prop("severity"))
				put(f)
			}
		case 6: // report an incident
			f := &twin.Feature{ID: twin.NewID(twin.Incidents, fmt.Sprintf("i%d", seq)), Place: twin.NewPlace(path, ""),
				Props: twin.NewProps(map[string]any{"state": "reported", "reported_at": ts(now), "sla": map[string]any{}, "breached": []any{}, "history": []any{}})}
			ref.add(f.Region(), now, "inc", "reported")
			put(f)
		case 7, 8, 9, 10: // move an incident one step
			f := pick(twin.Incidents, state("reported", "dispatched", "accepted", "arrived", "resolved"))
			if f == nil {
				break
			}
			sla := map[string]any{}
			for k, v := range f.Props.Get("sla").(map[string]any) {
				sla[k] = v
			}
			f.Props.Set("sla", sla)
			limit := map[string]time.Duration{"accept": time.Minute, "arrive": 5 * time.Minute, "report": 10 * time.Minute}
			next := map[string][4]string{ // state -> next state, its stamp, step ending, next step's deadline key
				"reported": {"dispatched", "dispatched_at", "", "accept_by"}, "dispatched": {"accepted", "accepted_at", "accept", "arrive_by"},
				"accepted": {"arrived", "arrived_at", "arrive", "report_by"}, "arrived": {"resolved", "resolved_at", "report", ""},
				"resolved": {"closed", "closed_at", "", ""},
			}[f.Prop("state")]
			if rng.IntN(6) == 0 && f.Prop("state") != "resolved" { // close early
				next = [4]string{"closed", "closed_at", "", ""}
			}
			if step := next[2]; step != "" && rng.IntN(3) == 0 && !slices.Contains(twin.PropStrings(f.Props.Get("breached")), step) {
				// The SLA clock escalates first (at a deadline in the past).
				by, _ := time.Parse(time.RFC3339Nano, sla[step+"_by"].(string))
				if by.Before(now) {
					f.Props.Set("breached", append(f.Props.Get("breached").([]any), step))
					f.Props.Set("history", append(f.Props.Get("history").([]any), map[string]any{"action": "escalate:" + step, "at": ts(now)}))
					ref.add(f.Region(), now, "breach", step)
					put(f)
					f = clone(f)
					now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
				}
			}
			f.Props.Set("state", next[0])
			f.Props.Set(next[1], ts(now))
			ref.add(f.Region(), now, "inc", next[0])
			if step := next[2]; step != "" && !slices.Contains(twin.PropStrings(f.Props.Get("breached")), step) {
				by, _ := time.Parse(time.RFC3339Nano, sla[step+"_by"].(string))
				if now.After(by) {
					ref.add(f.Region(), now, "breach", step)
				} else {
					ref.add(f.Region(), now, "met", step)
				}
			}
			if next[3] != "" {
				d := map[string]time.Duration{"accept_by": time.Minute, "arrive_by": 5 * time.Minute, "report_by": 10 * time.Minute}[next[3]]
				sla[next[3]] = ts(now.Add(d))
			}
			_ = limit
			for _, d := range durations {
				if d.to == next[1] {
					if from, ok := propTime(f, d.from); ok {
						ref.addDur(f.Region(), now, d.name, now.Sub(from).Milliseconds())
					}
				}
			}
			put(f)
		case 11: // issue a task
			f := &twin.Feature{ID: twin.NewID(twin.Tasks, fmt.Sprintf("t%d", seq)), Place: twin.NewPlace(path, ""),
				Props: twin.NewProps(map[string]any{"state": "issued", "issued_at": ts(now), "due": ts(now.Add(time.Duration(rng.IntN(240)) * time.Minute))})}
			if rng.IntN(3) == 0 { // a directive's task: no position, its assignee region in regions
				f.Place = nil
				code := path[1+rng.IntN(2)]
				f.Props.Set("regions", []any{code})
				ref.extras[f.ID.String()] = []string{code}
			}
			ref.add(ref.paths(f), now, "task", "issued")
			put(f)
		case 12: // move a task one step
			f := pick(twin.Tasks, state("issued", "acked", "reported"))
			if f == nil {
				break
			}
			nx := map[string]string{"issued": "acked", "acked": "reported", "reported": "closed"}[f.Prop("state")]
			f.Props.Set("state", nx)
			if rng.IntN(2) == 0 {
				f.Props.Set(nx+"_at", ts(now))
			}
			ref.add(ref.paths(f), now, "task", nx)
			put(f)
		case 13, 14: // a device or worker appears or changes status
			l, statuses := twin.Devices, []string{"online", "offline", "alarm"}
			if op == 14 {
				l, statuses = twin.Workers, []string{"available", "busy", "offline"}
			}
			f := pick(l, func(*twin.Feature) bool { return true })
			if f == nil || rng.IntN(3) == 0 {
				f = &twin.Feature{ID: twin.NewID(l, fmt.Sprintf("o%d", seq)), Place: twin.NewPlace(path, ""), Props: twin.NewProps(map[string]any{})}
			}
			f.Props.Set("status", statuses[rng.IntN(len(statuses))])
			put(f)
		case 15: // a worker or an incident moves to another street
			f := pick(twin.Workers, func(*twin.Feature) bool { return true })
			if rng.IntN(2) == 0 {
				f = pick(twin.Incidents, state("dispatched", "accepted"))
			}
			if f != nil {
				f.Place = twin.NewPlace(path, f.Grid())
				put(f)
			}
		case 16: // an object is removed
			l := []twin.Layer{twin.Devices, twin.Alerts, twin.Incidents}[rng.IntN(3)]
			if f := pick(l, func(*twin.Feature) bool { return true }); f != nil {
				delete(ref.objs, f.ID.String())
				agg.apply(f.ID.String(), nil, now)
			}
		case 17: // sample and compare the gauges
			agg.sampleGauges(now)
			want := ref.gauges(now)
			for r, w := range want {
				for _, step := range []string{Hour, Day} {
					g := agg.buckets[bkey{r, step, bucketStart(step, now, loc).Unix()}]
					if g == nil || !g.Gauges.sameCounts(w) {
						var got *Gauges
						if g != nil {
							got = g.Gauges
						}
						t.Fatalf("seed %d: gauges of %s %s at %v: got %+v, want %+v", seed, r, step, now, got, w)
					}
				}
			}
		case 18:
			flush()
		case 19:
			if rng.IntN(8) == 0 {
				restart()
			}
		}
	}
	flush()
	t.Logf("seed %d: %d flow keys, %d duration keys, %d objects", seed, len(ref.flows), len(ref.dur), len(ref.objs))
	compareFlows(t, seed, store, ref, maxSamples)
}

// compareFlows checks every stored bucket's flows and medians against the
// generator's record, both ways.
func compareFlows(t *testing.T, seed uint64, store memStore, ref *refModel, maxSamples int) {
	got := map[string]int{}
	gotDur := map[string]*samples{}
	for k, b := range store {
		g, err := decodeFigures(b)
		if err != nil {
			t.Fatal(err)
		}
		pre := fmt.Sprintf("%s|%s|%d|", k.region, k.step, k.start)
		add := func(what string, m map[string]int) {
			for c, n := range m {
				if n != 0 {
					got[pre+what+"|"+c] += n
				}
			}
		}
		add("raised", g.AlertsRaised)
		add("closed", g.AlertsClosed)
		add("inc", g.IncidentsEntered)
		add("task", g.TasksEntered)
		for step, o := range g.SLA {
			if o.Met != 0 {
				got[pre+"met|"+step] = o.Met
			}
			if o.Breached != 0 {
				got[pre+"breach|"+step] = o.Breached
			}
		}
		for name, d := range g.Durations {
			gotDur[pre+name] = d
		}
	}
	if !reflect.DeepEqual(got, ref.flows) {
		for k, v := range ref.flows {
			if got[k] != v {
				t.Errorf("seed %d: %s = %d, want %d", seed, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := ref.flows[k]; !ok {
				t.Errorf("seed %d: %s = %d, want none", seed, k, v)
			}
		}
		t.FailNow()
	}
	for k, want := range ref.dur {
		d := gotDur[k]
		if d == nil || d.N != len(want) {
			t.Fatalf("seed %d: durations %s: got %+v, want %d samples", seed, k, d, len(want))
		}
		if len(want) <= maxSamples && median(d.MS) != median(want) {
			t.Fatalf("seed %d: median %s = %v, want %v", seed, k, median(d.MS), median(want))
		}
	}
	if len(gotDur) != len(ref.dur) {
		t.Fatalf("seed %d: %d duration buckets, want %d", seed, len(gotDur), len(ref.dur))
	}
}
