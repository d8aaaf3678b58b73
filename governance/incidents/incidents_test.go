package incidents

import (
	"errors"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

var (
	op    = auth.Principal{Subject: "op1", Role: auth.Operator, Region: "500105"}
	t0    = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	there = orb.Point{106.5600, 29.5800}
)

// fakeLocator puts everything in street 500105002; grid g1 west of 106.561, g2 east.
type fakeLocator struct{}

func (fakeLocator) Locate(g orb.Geometry) ([]uint64, *twin.Place) {
	grid := "g1"
	if g.Bound().Center()[0] > 106.561 {
		grid = "g2"
	}
	return []uint64{1}, twin.NewPlace([]string{"500000", "500105", "500105002"}, grid)
}

func setup(t *testing.T) (*twin.Twin, *Service, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk, Enricher: fakeLocator{}})
	workers := map[string]orb.Point{
		"near-other-grid": {106.5615, 29.5800}, // closest, but grid g2
		"grid-mate":       {106.5560, 29.5800}, // in g1, further
		"busy":            {106.5601, 29.5800},
	}
	for name, p := range workers {
		status := "available"
		if name == "busy" {
			status = "busy"
		}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Workers, name), Geometry: p, Props: twin.NewProps(map[string]any{"status": status})}); err != nil {
			t.Fatal(err)
		}
	}
	return tw, New(tw, Options{Clock: clk, AutoDispatch: true, Enricher: fakeLocator{}}), clk
}

func TestLoopDispatchMergeAndSLA(t *testing.T) {
	tw, s, clk := setup(t)
	inc, merged, err := s.Report(op, Report{Type: "litter", Lon: there[0], Lat: there[1], Description: "bags"})
	if err != nil || merged {
		t.Fatalf("report: %v %v", err, merged)
	}
	if inc.Prop("state") != Dispatched || inc.Prop("assignee") != "workers/grid-mate" {
		t.Fatalf("dispatch picked %q in state %q, want the grid-mate", inc.Prop("assignee"), inc.Prop("state"))
	}
	if w, _ := tw.Get(twin.NewID(twin.Workers, "grid-mate")); w.Prop("status") != "busy" {
		t.Fatal("dispatched worker not busy")
	}
	// A second report 20 m away within 30 minutes merges.
	clk.Advance(10 * time.Second)
	dup, merged, err := s.Report(op, Report{Type: "litter", Lon: there[0] + 0.0002, Lat: there[1]})
	if err != nil || !merged || dup.ID != inc.ID {
		t.Fatalf("duplicate not merged: %v %v %v", err, merged, dup.ID)
	}
	if n, _ := dup.Number("reports"); n != 2 {
		t.Fatalf("reports %v", n)
	}
	// Another type at the same place does not merge.
	if _, merged, _ := s.Report(op, Report{Type: "pothole", Lon: there[0], Lat: there[1]}); merged {
		t.Fatal("different type merged")
	}

	// Accept deadline (1 min) passes: one escalation to district, one alert.
	clk.Advance(55 * time.Second)
	if n := s.Tick(clk.Now()); n != 1 { // the pothole incident went to near-other-grid? no: it is still within its minute
		t.Fatalf("first tick escalated %d, want 1", n)
	}
	if n := s.Tick(clk.Now().Add(time.Second)); n != 0 {
		t.Fatalf("second tick escalated again: %d", n)
	}
	cur, _ := tw.Get(inc.ID)
	if cur.Prop("tier") != "district" || cur.Prop("tier_code") != "500105" {
		t.Fatalf("tier %q code %q", cur.Prop("tier"), cur.Prop("tier_code"))
	}
	if a, ok := tw.Get(twin.NewID(twin.Alerts, "incident-sla."+inc.ID.Name+".accept")); !ok || a.Prop("severity") != "orange" {
		t.Fatal("no SLA alert raised")
	}

	// Field worker acts on its own incident only.
	mate := auth.Principal{Subject: "grid-mate", Role: auth.Field, Region: "500105002"}
	other := auth.Principal{Subject: "busy", Role: auth.Field, Region: "500105002"}
	if _, err := s.Act(other, inc.ID.Name, "accept", Action{}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other worker accepted: %v", err)
	}
	if _, err := s.Act(mate, inc.ID.Name, "accept", Action{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Act(mate, inc.ID.Name, "arrive", Action{}); !errors.Is(err, ErrTooFar) {
		t.Fatalf("arrive from 370 m accepted: %v", err)
	}
	if _, err := s.Act(mate, inc.ID.Name, "resolve", Action{}); !errors.Is(err, ErrTransition) {
		t.Fatalf("resolve before arrive: %v", err)
	}
	// Restart: a new twin and service from the old objects keep the clocks.
	var objs []*twin.Feature
	for _, l := range []twin.Layer{twin.Incidents, twin.Workers, twin.Alerts} {
		tw.Range(l, func(f *twin.Feature) bool { objs = append(objs, f); return true })
	}
	tw2 := twin.New(twin.Options{Clock: clk, Enricher: fakeLocator{}})
	tw2.Load(objs)
	s2 := New(tw2, Options{Clock: clk})
	clk.Advance(5*time.Minute + time.Second)
	s2.Tick(clk.Now())
	cur, _ = tw2.Get(inc.ID)
	if cur.Prop("tier") != "city" || len(asList(cur.Props.Get("breached"))) != 2 {
		t.Fatalf("after restart: tier %q breached %v", cur.Prop("tier"), cur.Props.Get("breached"))
	}
	// Walk to the incident, arrive, resolve, close.
	if _, _, err := tw2.Update(twin.NewID(twin.Workers, "grid-mate"), func(w *twin.Feature) (*twin.Feature, error) {
		w.Geometry = orb.Point{there[0] + 0.0001, there[1]}
		return w, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Act(mate, inc.ID.Name, "arrive", Action{}); err != nil {
		t.Fatalf("arrive: %v", err)
	}
	if _, err := s2.Act(mate, inc.ID.Name, "resolve", Action{}); !errors.Is(err, ErrBadReport) {
		t.Fatalf("resolve without a note: %v", err)
	}
	if _, err := s2.Act(mate, inc.ID.Name, "resolve", Action{Note: "bags collected"}); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	f, err := s2.Act(op, inc.ID.Name, "close", Action{})
	if err != nil || f.Prop("state") != Closed || len(asList(f.Props.Get("history"))) < 7 {
		t.Fatalf("close: %v %v", err, f.Props.Get("history"))
	}
	if w, _ := tw2.Get(twin.NewID(twin.Workers, "grid-mate")); w.Prop("status") != "available" {
		t.Fatal("worker not released")
	}
	// Out of scope: another district's operator sees nothing.
	if _, err := s2.Act(auth.Principal{Role: auth.Operator, Region: "500103"}, inc.ID.Name, "close", Action{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("out-of-scope action: %v", err)
	}
}

// TestArriveFromSentPosition: arrive takes the position the field page sent
// (its GPS), checked against the incident, not the worker object's stale
// tracker position; a position too far is refused and changes nothing.
func TestArriveFromSentPosition(t *testing.T) {
	tw, s, _ := setup(t)
	inc, _, err := s.Report(op, Report{Type: "litter", Lon: there[0], Lat: there[1]})
	if err != nil || inc.Prop("assignee") != "workers/grid-mate" {
		t.Fatalf("report: %v %q", err, inc.Prop("assignee"))
	}
	mate := auth.Principal{Subject: "grid-mate", Role: auth.Field, Region: "500105002"}
	if _, err := s.Act(mate, inc.ID.Name, "accept", Action{}); err != nil {
		t.Fatal(err)
	}
	f64 := func(v float64) *float64 { return &v }
	// The worker object is 390 m away; the phone says 1 km away: refused.
	if _, err := s.Act(mate, inc.ID.Name, "arrive", Action{Lon: f64(there[0] + 0.01), Lat: f64(there[1])}); !errors.Is(err, ErrTooFar) {
		t.Fatalf("arrive from 1 km: %v", err)
	}
	if _, err := s.Act(mate, inc.ID.Name, "arrive", Action{Lon: f64(there[0])}); !errors.Is(err, ErrBadReport) {
		t.Fatalf("arrive with lon only: %v", err)
	}
	// The phone says 30 m away: arrived, and the position is on record.
	f, err := s.Act(mate, inc.ID.Name, "arrive", Action{Lon: f64(there[0] + 0.0003), Lat: f64(there[1])})
	if err != nil || f.Prop("state") != Arrived {
		t.Fatalf("arrive from 30 m: %v", err)
	}
	pos, _ := f.Props.Get("arrived_position").([]any)
	if len(pos) != 2 || pos[0] != there[0]+0.0003 {
		t.Fatalf("arrived_position %v", f.Props.Get("arrived_position"))
	}
	f, err = s.Act(mate, inc.ID.Name, "resolve", Action{Note: "swept"})
	if err != nil || f.Prop("resolution") != "swept" {
		t.Fatalf("resolve: %v %v", err, f.Props.Get("resolution"))
	}
	h := asList(f.Props.Get("history"))
	if last, _ := h[len(h)-1].(map[string]any); last["note"] != "swept" || last["action"] != "resolve" {
		t.Fatalf("last step %v", h[len(h)-1])
	}
	if w, _ := tw.Get(twin.NewID(twin.Workers, "grid-mate")); w.Prop("status") != "available" {
		t.Fatal("worker not released by resolve")
	}
}

// TestOperatorEscalates (issue 14 item 4): an operator hands an incident up
// a tier from the inspector; it climbs street -> district -> city, no
// further, and never once resolved; field workers may not.
func TestOperatorEscalates(t *testing.T) {
	_, s, _ := setup(t)
	inc, _, err := s.Report(op, Report{Type: "litter", Lon: there[0], Lat: there[1]})
	if err != nil {
		t.Fatal(err)
	}
	field := auth.Principal{Subject: "grid-mate", Role: auth.Field, Region: "500105002"}
	if _, err := s.Act(field, inc.ID.Name, "escalate", Action{}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("field escalate: %v", err)
	}
	f, err := s.Act(op, inc.ID.Name, "escalate", Action{Note: "needs the district's crew"})
	if err != nil || f.Prop("tier") != "district" || f.Prop("tier_code") != "500105" {
		t.Fatalf("escalate: %v tier %q code %q", err, f.Prop("tier"), f.Prop("tier_code"))
	}
	if h := asList(f.Props.Get("history")); len(h) == 0 || h[len(h)-1].(map[string]any)["note"] != "needs the district's crew" {
		t.Fatalf("history %v", h)
	}
	if n, _ := f.Number("sla_breaches"); n != 0 {
		t.Fatalf("a decision counted as a breach: %v", n)
	}
	if f, err = s.Act(op, inc.ID.Name, "escalate", Action{}); err != nil || f.Prop("tier") != "city" || f.Prop("tier_code") != "500000" {
		t.Fatalf("second escalate: %v %q", err, f.Prop("tier"))
	}
	if _, err := s.Act(op, inc.ID.Name, "escalate", Action{}); !errors.Is(err, ErrTransition) {
		t.Fatalf("escalate past the city: %v", err)
	}
	if _, err := s.Act(op, inc.ID.Name, "close", Action{}); err != nil {
		t.Fatal(err)
	}
}
