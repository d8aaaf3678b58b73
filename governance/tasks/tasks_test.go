package tasks

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func region(code, level, parent string) *twin.Feature {
	return &twin.Feature{ID: twin.NewID(twin.Regions, code), Props: twin.NewProps(map[string]any{"code": code, "level": level, "parent": parent, "name": "r" + code})}
}

// city builds a twin with the city, three districts, two streets of one of
// them, a building, a bridge joining two districts and cameras.
func city(t *testing.T) (*twin.Twin, *clock.Fake, *Service) {
	t.Helper()
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 4096})
	for _, r := range []*twin.Feature{region("500000", "city", ""), region("500103", "district", "500000"),
		region("500105", "district", "500000"), region("500106", "district", "500000"),
		region("500105001", "street", "500105"), region("500105002", "street", "500105")} {
		mustPut(t, tw, r)
	}
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Buildings, "b1"), Place: twin.NewPlace([]string{"500000", "500105", "500105002"}, ""),
		Geometry: orb.Polygon{{{106.50, 29.50}, {106.501, 29.50}, {106.501, 29.501}, {106.50, 29.501}, {106.50, 29.50}}},
		Props:    twin.NewProps(map[string]any{"name": "tower", "name_zh": "观音桥锦绣大厦", "owners": []any{"p1", "p2"}, "risk_level": 4.0})})
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Bridges, "qiansimen"), Place: twin.NewPlace([]string{"500000", "500103"}, ""),
		Geometry: orb.LineString{{106.570, 29.570}, {106.580, 29.570}}, Props: twin.NewProps(map[string]any{"name": "千厮门大桥"})})
	// A camera 20 m north of the deck's middle, one 200 m away.
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Devices, "cam1"), Geometry: orb.Point{106.575, 29.57018}, Props: twin.NewProps(map[string]any{"kind": "camera"})})
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Devices, "cam2"), Geometry: orb.Point{106.575, 29.572}, Props: twin.NewProps(map[string]any{"kind": "camera"})})
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Vehicles, "T1"), Geometry: orb.Point{106.560, 29.570},
		Props: twin.NewProps(map[string]any{"kind": "muck_truck", "plate": "渝A12345", "owners": []any{"boss"}})})
	s := New(tw, Options{Clock: clk, Period: time.Hour})
	return tw, clk, s
}

func mustPut(t *testing.T, tw *twin.Twin, f *twin.Feature) {
	t.Helper()
	if _, err := tw.Put(f); err != nil {
		t.Fatal(err)
	}
}

func op(region string) auth.Principal {
	return auth.Principal{Subject: "op-" + region, Role: auth.Operator, Region: region}
}

func num(f *twin.Feature, k string) int {
	n, _ := f.Number(k)
	return int(n)
}

func TestDirectiveLoop(t *testing.T) {
	tw, clk, s := city(t)
	due := stamp(t0.Add(time.Hour))
	if _, err := s.CreateDirective(op("500105"), DirectiveReq{Title: "x", Targets: []string{"500103"}, Due: due}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a district directing another district: %v, want not found", err)
	}
	if _, err := s.CreateDirective(auth.Principal{Role: auth.Field, Region: "500000"}, DirectiveReq{Title: "x", Targets: []string{"500103"}, Due: due}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a field token issuing: %v, want forbidden", err)
	}
	d, err := s.CreateDirective(op("500000"), DirectiveReq{Title: "防汛检查", Text: "today", Targets: []string{"500103", "500105", "500106"}, Due: due})
	if err != nil {
		t.Fatal(err)
	}
	if num(d, "total") != 3 || num(d, "acked") != 0 {
		t.Fatalf("roll-up after issue: %v", d.Props)
	}
	taskOf := d.Props.Get("tasks").(map[string]any)
	t105 := mustID(taskOf["500105"].(string)).Name
	t103 := mustID(taskOf["500103"].(string)).Name
	// A street sees nothing of its district's task until it is forwarded.
	if _, err := s.Get(op("500105001"), t105); !errors.Is(err, ErrNotFound) {
		t.Fatalf("street reads the district task: %v", err)
	}
	if _, err := s.Act(op("500103"), t105, "ack", ActionReq{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another district acks: %v, want not found", err)
	}
	if _, err := s.Forward(op("500105"), t105, ForwardReq{Targets: []string{"500105001", "500105002"}}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Directive(op("500000"), d.ID.Name)
	if err != nil {
		t.Fatal(err)
	}
	if v.Totals["total"] != 4.0 || len(v.Targets) != 3 {
		t.Fatalf("roll-up after forward: %v targets %d", v.Totals, len(v.Targets))
	}
	if n, m := len(s.Directives(op("500105001"), 0)), len(s.Directives(auth.Principal{Role: auth.Operator, Region: "500103001"}, 0)); n != 1 || m != 0 {
		t.Fatalf("directives listed: forwarded street %d, a street of 500103 %d; want 1, 0", n, m)
	}
	kids := s.List(op("500105001"), Filter{Directive: d.ID.String()})
	if len(kids) != 1 || kids[0].Prop("assignee") != "500105001" {
		t.Fatalf("street 001 sees %d tasks", len(kids))
	}
	if _, err := s.Act(op("500105002"), kids[0].ID.Name, "ack", ActionReq{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("sibling street acks: %v", err)
	}
	if _, err := s.Act(auth.Principal{Subject: "w", Role: auth.Field, Region: "500105001"}, kids[0].ID.Name, "ack", ActionReq{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Act(op("500105001"), kids[0].ID.Name, "report", ActionReq{}); !errors.Is(err, ErrBad) {
		t.Fatalf("empty report: %v", err)
	}
	if _, err := s.Act(op("500105001"), kids[0].ID.Name, "report", ActionReq{Note: "done", Photos: []string{"s3://p/1.jpg"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Act(op("500103"), t103, "ack", ActionReq{}); err != nil {
		t.Fatal(err)
	}
	v, _ = s.Directive(op("500000"), d.ID.Name)
	if v.Totals["acked"] != 2.0 || v.Totals["reported"] != 1.0 {
		t.Fatalf("roll-up after acks: %v", v.Totals)
	}
	dv, _ := tw.Get(d.ID)
	if row := dv.Props.Get("rollup").(map[string]any)["500105"].(map[string]any); row["total"] != 2.0 || row["reported"] != 1.0 {
		t.Fatalf("500105's row counts its children: %v", row)
	}
	sv, err := s.Directive(op("500105001"), d.ID.Name)
	if err != nil || len(sv.Targets) != 1 || sv.Totals["total"] != 1.0 {
		t.Fatalf("a street's drill-down: %+v %v", sv, err)
	}
	// Past due: every open leaf escalates once, to its issuing tier.
	clk.Advance(2 * time.Hour)
	if n := s.Tick(clk.Now()); n != 3 {
		t.Fatalf("escalated %d, want 3 (500103 acked but not reported, 500106, street 002)", n)
	}
	clk.Advance(5 * time.Hour)
	if n := s.Tick(clk.Now()); n != 0 {
		t.Fatalf("escalated again: %d", n)
	}
	kid2 := s.List(op("500105002"), Filter{Directive: d.ID.String()})[0]
	if kid2.Prop("tier_code") != "500105" || num(kid2, "escalations") != 1 {
		t.Fatalf("forwarded task escalates to its district: %v", kid2.Props)
	}
	dv, _ = tw.Get(d.ID)
	if num(dv, "overdue") != 3 {
		t.Fatalf("overdue in the roll-up: %v", dv.Props.Get("overdue"))
	}
	alerts := 0
	tw.Range(twin.Alerts, func(f *twin.Feature) bool {
		if f.Prop("rule") == "task-overdue" {
			alerts++
		}
		return true
	})
	if alerts != 3 {
		t.Fatalf("%d overdue alerts, want 3", alerts)
	}
}

func TestRectification(t *testing.T) {
	tw, clk, s := city(t)
	if _, err := s.CreateRectification(op("500103"), RectifyReq{Kind: KindRectification, Subject: "buildings/b1", Due: stamp(t0.Add(time.Hour))}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another district's building: %v", err)
	}
	f, err := s.CreateRectification(op("500105"), RectifyReq{Kind: KindRectification, Subject: "buildings/b1", Plan: "fix the doors", Due: stamp(t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if f.Prop("assignee") != "500105002" || f.Prop("tier") != "street" || len(twin.PropStrings(f.Props.Get("persons"))) != 2 {
		t.Fatalf("task: %v", f.Props)
	}
	if f.Prop("title") != "隐患整改 观音桥锦绣大厦" { // the building's Chinese name, as operators read it
		t.Fatalf("title %q", f.Prop("title"))
	}
	clk.Advance(50 * time.Minute)
	s.Tick(clk.Now())
	if g, _ := tw.Get(f.ID); g.Prop("reminded_at") == "" {
		t.Fatal("not reminded in the last quarter")
	}
	clk.Advance(15 * time.Minute)
	if n := s.Tick(clk.Now()); n != 1 {
		t.Fatalf("escalated %d at the deadline", n)
	}
	g, _ := tw.Get(f.ID)
	if g.Prop("tier") != "district" || g.Prop("tier_code") != "500105" {
		t.Fatalf("after the first step: %v %v", g.Prop("tier"), g.Prop("tier_code"))
	}
	clk.Advance(time.Hour)
	s.Tick(clk.Now())
	clk.Advance(time.Hour)
	s.Tick(clk.Now())
	g, _ = tw.Get(f.ID)
	if g.Prop("tier") != "city" || num(g, "escalations") != 2 {
		t.Fatalf("after two periods: %v %v", g.Prop("tier"), g.Props.Get("escalations"))
	}
	if _, err := s.Act(op("500105002"), f.ID.Name, "close", ActionReq{Outcome: Penalised}); !errors.Is(err, ErrBad) {
		t.Fatalf("outcome on rectification: %v", err)
	}
	c, err := s.Act(op("500105002"), f.ID.Name, "close", ActionReq{Note: "fixed"})
	if err != nil || c.Prop("state") != Closed || c.Props.Get("overdue") != false {
		t.Fatalf("close: %v %v", err, c)
	}
}

func TestEnforcementEvidence(t *testing.T) {
	tw, clk, s := city(t)
	drain := drainer(t, tw, s)
	vid := twin.NewID(twin.Vehicles, "T1")
	move := func(lon float64, sec int) {
		if _, _, err := tw.ApplySample(twin.Sample{ID: vid, Time: t0.Add(time.Duration(sec) * time.Second), HasPos: true,
			Pos: orb.Point{lon, 29.5701}, HasSpeed: true, SpeedKmh: 36}); err != nil {
			t.Fatal(err)
		}
		drain()
	}
	move(106.5690, 0)
	move(106.5710, 10)
	move(106.5740, 20)
	al := &twin.Feature{ID: twin.NewID(twin.Alerts, "bridge-muck.vehicles.T1.0"), Geometry: orb.Point{106.574, 29.5701},
		Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"kind": "geofence", "rule": "bridge-muck", "subject": vid.String(),
			"target": "bridges/qiansimen", "state": "open", "regions": []any{"500000", "500103", "500105"}, "first": stamp(t0.Add(20 * time.Second))})}
	mustPut(t, tw, al)
	drain()
	// The alert firing again opens nothing more.
	mustPut(t, tw, al)
	drain()
	move(106.5770, 30)
	move(106.5800, 40)
	move(106.5830, 50) // off the deck: the evidence is fixed
	clk.Advance(time.Minute)
	cases := s.List(op("500105"), Filter{Kind: KindEnforcement})
	if len(cases) != 1 {
		t.Fatalf("%d cases visible to 500105, want 1", len(cases))
	}
	if n := len(s.List(op("500103"), Filter{Kind: KindEnforcement})); n != 1 {
		t.Fatalf("%d cases visible to 500103", n)
	}
	if n := len(s.List(op("500106"), Filter{Kind: KindEnforcement})); n != 0 {
		t.Fatalf("%d cases visible to 500106", n)
	}
	c := cases[0]
	if c.Props.Get("evidence_complete") != true || c.Prop("plate") != "渝A12345" {
		t.Fatalf("case: %v", c.Props)
	}
	ev := c.Props.Get("evidence").([]any)
	var caps []map[string]any
	for _, x := range ev {
		if m := x.(map[string]any); m["type"] == "capture" {
			caps = append(caps, m)
		}
	}
	if len(caps) != 1 || caps[0]["camera"] != "devices/cam1" {
		t.Fatalf("captures: %v", caps)
	}
	if d := caps[0]["distance_m"].(float64); d < 5 || d > 15 {
		t.Fatalf("cam1 distance %v m, want about 9", d)
	}
	ts, _ := parseTime(caps[0]["ts"].(string))
	if want := t0.Add(23 * time.Second); ts.Sub(want) > 2*time.Second || want.Sub(ts) > 2*time.Second {
		t.Fatalf("passed cam1 at %v, want about %v", ts, want)
	}
	track := ev[0].(map[string]any)
	if n := len(track["times"].([]any)); n != 6 {
		t.Fatalf("track has %d fixes, want the 4 on the deck and one either side", n)
	}
	if _, err := s.Act(op("500103"), c.ID.Name, "close", ActionReq{}); !errors.Is(err, ErrBad) {
		t.Fatalf("close without outcome: %v", err)
	}
	done, err := s.Act(op("500103"), c.ID.Name, "close", ActionReq{Outcome: Penalised})
	if err != nil || done.Prop("outcome") != Penalised || done.Prop("closed_by") != "op-500103" {
		t.Fatalf("close: %v %v", err, done)
	}
}

func TestDemoSeeds(t *testing.T) {
	tw, _, s := city(t)
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Buildings, "b2"), Place: twin.NewPlace([]string{"500000", "500105", "500105001"}, ""),
		Geometry: orb.Point{106.51, 29.51}, Props: twin.NewProps(map[string]any{"high_rise": true, "owners": []any{"p3"}})})
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Bridges, "qiansimen"), Place: twin.NewPlace([]string{"500000", "500103"}, ""),
		Geometry: orb.LineString{{106.570, 29.570}, {106.580, 29.570}}, Props: twin.NewProps(map[string]any{"name": "千厮门大桥", "connects": []any{"500103", "500105"}})})
	r := rand.New(rand.NewPCG(1, 2))
	if n := s.seedRectification(r, 5); n != 1 {
		t.Fatalf("seeded %d rectification tasks, want 1 (one high-rise)", n)
	}
	if n := s.seedCases(r, 3); n != 1 {
		t.Fatalf("seeded %d cases, want 1 (one truck)", n)
	}
	c := s.List(op("500105"), Filter{Kind: KindEnforcement})
	if len(c) != 1 || len(s.List(op("500103"), Filter{Kind: KindEnforcement})) != 1 || c[0].Props.Get("evidence_complete") != true {
		t.Fatalf("demo case: %d visible to 500105", len(c))
	}
	s.demoDirective(r)
	for range 20 {
		s.demoStep(r)
	}
	ds := s.List(op("500000"), Filter{Kind: KindDirective})
	if len(ds) < 3 {
		t.Fatalf("%d directive tasks, want at least 3", len(ds))
	}
	moved := 0
	for _, f := range ds {
		if f.Prop("state") != Issued || len(twin.PropStrings(f.Props.Get("children"))) > 0 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the demo moved no task on")
	}
}

// TestEnforcementResumes: a case opened before a restart, its truck still
// on the deck, is completed by the next fix off the deck after it, keeping
// the track seen before (the new server's memory of fixes is empty).
func TestEnforcementResumes(t *testing.T) {
	tw, clk, s := city(t)
	vid := twin.NewID(twin.Vehicles, "T1")
	for i, lon := range []float64{106.569, 106.572, 106.575} {
		s.enf.addFix(vid, fix{at: t0.Add(time.Duration(i) * 10 * time.Second), p: orb.Point{lon, 29.5701}})
	}
	al := &twin.Feature{ID: twin.NewID(twin.Alerts, "bridge-muck.vehicles.T1.0"), Geometry: orb.Point{106.575, 29.5701},
		Props: twin.NewProps(map[string]any{"kind": "geofence", "rule": "bridge-muck", "subject": vid.String(), "target": "bridges/qiansimen",
			"regions": []any{"500103", "500105"}})}
	mustPut(t, tw, al)
	s.enf.openCase(al)
	s2 := New(tw, Options{Clock: clk}) // the restarted server
	s2.enf.resume()
	s2.enf.addFix(vid, fix{at: t0.Add(40 * time.Second), p: orb.Point{106.59, 29.5701}})
	c := s2.List(op("500000"), Filter{Kind: KindEnforcement})[0]
	if c.Props.Get("evidence_complete") != true || trackLen(asList(c.Props.Get("evidence"))) != 3 {
		t.Fatalf("resumed case: complete %v, track of %d fixes", c.Props.Get("evidence_complete"), trackLen(asList(c.Props.Get("evidence"))))
	}
}

// TestRectificationPersonsZH: a building's owners' display names
// (owners_zh, index for index) travel with the task as persons_zh.
func TestRectificationPersonsZH(t *testing.T) {
	tw, _, s := city(t)
	b, _ := tw.Get(twin.NewID(twin.Buildings, "b1"))
	c := b.Clone()
	c.Props.Set("owners_zh", []any{"张伟", "李娜"})
	mustPut(t, tw, c)
	f, err := s.CreateRectification(op("500000"), RectifyReq{Kind: KindRectification, Subject: "buildings/b1", Due: stamp(t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if got := twin.PropStrings(f.Props.Get("persons_zh")); len(got) != 2 || got[0] != "张伟" {
		t.Fatalf("persons_zh %v", f.Props.Get("persons_zh"))
	}
}

// TestEnforcementAlertAfterTheTruckLeft: the rules write the crossing
// alert after ingest applied the truck's fix off the deck (a burst of
// fixes outruns the rules engine); the case completes at once instead of
// waiting for a fix that never comes (seen as a flaky acceptance test).
func TestEnforcementAlertAfterTheTruckLeft(t *testing.T) {
	tw, _, s := city(t)
	drain := drainer(t, tw, s)
	vid := twin.NewID(twin.Vehicles, "T1")
	for i, lon := range []float64{106.5690, 106.5710, 106.5740, 106.5770, 106.5800, 106.5830} {
		if _, _, err := tw.ApplySample(twin.Sample{ID: vid, Time: t0.Add(time.Duration(10*i) * time.Second), HasPos: true,
			Pos: orb.Point{lon, 29.5701}, HasSpeed: true, SpeedKmh: 36}); err != nil {
			t.Fatal(err)
		}
	}
	drain() // every fix seen before the alert
	mustPut(t, tw, &twin.Feature{ID: twin.NewID(twin.Alerts, "bridge-muck.vehicles.T1.0"), Geometry: orb.Point{106.574, 29.5701},
		Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"kind": "geofence", "rule": "bridge-muck", "subject": vid.String(),
			"target": "bridges/qiansimen", "state": "open", "regions": []any{"500000", "500103", "500105"}, "first": stamp(t0.Add(20 * time.Second))})})
	drain()
	cases := s.List(op("500105"), Filter{Kind: KindEnforcement})
	if len(cases) != 1 || cases[0].Props.Get("evidence_complete") != true || trackLen(asList(cases[0].Props.Get("evidence"))) < 3 {
		t.Fatalf("cases %d, first %v", len(cases), cases)
	}
}

// drainer returns a func handing s every change of tw's feed since the
// last call (from now on), as the service's feed consumer would.
func drainer(t *testing.T, tw *twin.Twin, s *Service) func() {
	after := tw.Feed().Last()
	return func() {
		cs, err := tw.Feed().Since(after, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range cs {
			s.Handle(&cs[i])
			after = cs[i].Seq
		}
	}
}
