package acceptance

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/maptile"
)

// directiveView is GET /api/directives/{name} (README "Work loops").
type directiveView struct {
	Directive feature        `json:"directive"`
	Targets   []targetView   `json:"targets"`
	Totals    map[string]int `json:"totals"`
}

type targetView struct {
	Code     string         `json:"code"`
	Counts   map[string]int `json:"counts"`
	Task     *feature       `json:"task"`
	Children []targetView   `json:"children"`
}

func (v directiveView) target(code string) targetView {
	for _, t := range v.Targets {
		if t.Code == code {
			return t
		}
	}
	return targetView{}
}

func taskName(f feature) string { return strings.TrimPrefix(f.ID, "tasks/") }

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// TestWorkLoops drives the three work loops of CONTRACT §8 against the demo
// binary with a short escalation period (--task-period 3s): a city directive
// to three districts, forwarded by one to two streets, acted on and refused
// by tokens of those regions and others, with the roll-up at each step and
// one escalation per overdue target; a rectification task on a high-rise
// notified to its owners, escalated twice (the building's colour stepping
// with it) and closed (the colour restored); a muck truck crossing
// Qiansimen in forbidden hours yielding one enforcement case with the
// cameras it passed, seen and closed by both districts; each object scoped
// on REST, OGC, the websocket and tiles.
func TestWorkLoops(t *testing.T) {
	s := startServer(t, serveOpts{demo: true, args: []string{"--task-period", "3s"}})
	city := s.token(t, "operator", "500000")
	mc := dialMQTT(t, s.mqttURL)
	mc.subscribe(t, "twin/notify/#")
	t.Run("directive", func(t *testing.T) { testDirective(t, s, city) })
	t.Run("rectification", func(t *testing.T) { testRectification(t, s, city, mc) })
	t.Run("enforcement", func(t *testing.T) { testEnforcement(t, s, city, mc) })
}

func streetsOf(t *testing.T, s *server, token, district string, n int) []string {
	t.Helper()
	var fc featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/regions/items?parent="+district+"&limit="+fmt.Sprint(n), token, nil).json(t, &fc)
	if len(fc.Features) < n {
		t.Fatalf("district %s has %d streets, want %d", district, len(fc.Features), n)
	}
	out := make([]string, n)
	for i, f := range fc.Features {
		out[i] = f.Props["code"].(string)
	}
	return out
}

func testDirective(t *testing.T, s *server, city string) {
	streets := streetsOf(t, s, city, "500105", 2)
	s1, s2 := streets[0], streets[1]
	d105, d103, d106 := s.token(t, "operator", "500105"), s.token(t, "operator", "500103"), s.token(t, "operator", "500106")
	f1, f2 := s.token(t, "field", s1), s.token(t, "field", s2)
	due := time.Now().Add(12 * time.Second).UTC().Format(time.RFC3339Nano)
	body := map[string]any{"title": "汛前隐患排查", "text": "排查辖区内易涝点", "targets": []string{"500103", "500105", "500106"},
		"due": due, "requires": []string{"ack", "report"}}

	// Refusals: outside the issuer's region (404), a role that does not issue (403).
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/directives", d103, map[string]any{"title": "x", "targets": []string{"500105"}, "due": due})
	s.must(t, http.StatusForbidden, http.MethodPost, "/api/directives", s.token(t, "planner", "500000"), body)
	s.must(t, http.StatusForbidden, http.MethodPost, "/api/directives", s.token(t, "field", "500000"), body)
	s.must(t, http.StatusBadRequest, http.MethodPost, "/api/directives", city, map[string]any{"title": "x", "target": []string{"500105"}, "due": due})

	var v directiveView
	s.must(t, http.StatusCreated, http.MethodPost, "/api/directives", city, body).json(t, &v)
	name := strings.TrimPrefix(v.Directive.ID, "directives/")
	if v.Totals["total"] != 3 || v.Totals["acked"] != 0 || len(v.Targets) != 3 {
		t.Fatalf("roll-up at issue: %v, %d targets", v.Totals, len(v.Targets))
	}
	roll := func(token string) directiveView {
		var v directiveView
		s.must(t, http.StatusOK, http.MethodGet, "/api/directives/"+name, token, nil).json(t, &v)
		return v
	}
	task105, task103, task106 := *v.target("500105").Task, *v.target("500103").Task, *v.target("500106").Task

	// A street sees nothing of its district's task until it is forwarded.
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/tasks/"+taskName(task105), f1, nil)
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/tasks/"+taskName(task105)+"/ack", d106, nil)
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/tasks/"+taskName(task105)+"/forward", d103, map[string]any{"targets": []string{s1}})
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/tasks/"+taskName(task105)+"/forward", d105, map[string]any{"targets": []string{"500103001"}})
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(task105)+"/forward", d105, map[string]any{"targets": []string{s1, s2}})

	v = roll(city)
	row := v.target("500105")
	if v.Totals["total"] != 4 || row.Counts["total"] != 2 || len(row.Children) != 2 {
		t.Fatalf("roll-up after forward: totals %v, 500105 %v with %d children", v.Totals, row.Counts, len(row.Children))
	}
	child := map[string]feature{}
	for _, c := range row.Children {
		child[c.Code] = *c.Task
	}
	c1, c2 := child[s1], child[s2]

	// Acts from the tokens of those regions, refusals from others.
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/tasks/"+taskName(c1)+"/ack", f2, nil)
	s.must(t, http.StatusForbidden, http.MethodPost, "/api/tasks/"+taskName(c1)+"/ack", s.token(t, "planner", s1), nil)
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(c1)+"/ack", f1, nil)
	s.must(t, http.StatusConflict, http.MethodPost, "/api/tasks/"+taskName(c1)+"/ack", f1, nil)
	if v = roll(city); v.Totals["acked"] != 1 || v.Totals["reported"] != 0 {
		t.Errorf("roll-up after one ack: %v", v.Totals)
	}
	s.must(t, http.StatusBadRequest, http.MethodPost, "/api/tasks/"+taskName(c1)+"/report", f1, map[string]any{})
	var rep feature
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(c1)+"/report", f1,
		map[string]any{"note": "已排查 3 处", "photos": []string{"photos/a.jpg", "photos/b.jpg"}}).json(t, &rep)
	if r, _ := rep.Props["report"].(map[string]any); r["note"] != "已排查 3 处" || len(r["photos"].([]any)) != 2 || r["by"] != "field@"+s1 {
		t.Errorf("report: %v", rep.Props["report"])
	}
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(task103)+"/ack", d103, nil)
	v = roll(city)
	if v.Totals["acked"] != 2 || v.Totals["reported"] != 1 || v.target("500105").Counts["reported"] != 1 {
		t.Errorf("roll-up after acks and a report: %v, 500105 %v", v.Totals, v.target("500105").Counts)
	}
	// Drill-down is scoped: the street sees its own row only.
	if sv := roll(f1); len(sv.Targets) != 1 || sv.Targets[0].Code != s1 || sv.Totals["total"] != 1 {
		t.Errorf("street's view of the directive: %+v", sv)
	}
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/directives/"+name, s.token(t, "operator", "500108"), nil)

	// OGC: the street sees its task only; the district its own and its children.
	count := func(token string) int {
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/tasks/items?limit=1000&directive="+url.QueryEscape(v.Directive.ID), token, nil).json(t, &fc)
		return len(fc.Features)
	}
	if a, b, c := count(f1), count(d105), count(city); a != 1 || b != 3 || c != 5 {
		t.Errorf("OGC tasks of the directive: street %d, district %d, city %d; want 1, 3, 5", a, b, c)
	}
	// Websocket: a street subscribed to the tasks layer over the city gets its task, not its sibling's.
	ws := dialWS(t, s, f1)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"tasks", "directives"}, "bbox": []float64{105, 28, 108, 31}})
	snap := ws.next(t, "tasks snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	seen := map[string]bool{}
	for _, f := range snap.Features {
		seen[f.ID] = true
	}
	if !seen[c1.ID] || seen[c2.ID] || seen[task105.ID] {
		t.Errorf("street's websocket snapshot: own %v, sibling %v, district %v; want true, false, false", seen[c1.ID], seen[c2.ID], seen[task105.ID])
	}
	// Tiles: the sibling street's task is drawn at its street's centre; only its street sees it there.
	tileHas := func(token string, f feature) bool {
		p := f.point(t)
		tile := maptile.At(orb.Point{p[0], p[1]}, 14)
		r := s.must(t, http.StatusOK, http.MethodGet, fmt.Sprintf("/tiles/tasks/%d/%d/%d.mvt", tile.Z, tile.X, tile.Y), token, nil)
		layers, err := mvt.Unmarshal(r.body)
		if err != nil {
			if layers, err = mvt.UnmarshalGzipped(r.body); err != nil {
				t.Fatalf("tile: %v", err)
			}
		}
		for _, l := range layers {
			for _, g := range l.Features {
				if g.Properties["id"] == f.ID {
					return true
				}
			}
		}
		return false
	}
	if !tileHas(f2, c2) || tileHas(f1, c2) || !tileHas(city, c2) {
		t.Errorf("tiles: task %s at street %s's centre: own street %v, sibling %v, city %v; want true, false, true",
			c2.ID, s2, tileHas(f2, c2), tileHas(f1, c2), tileHas(city, c2))
	}

	// Past due: 500103 (acked, no report), 500106 and the second street escalate once each, to their issuer.
	var last directiveView
	eventually(t, 40*time.Second, "three overdue targets in the roll-up", func() bool {
		last = roll(city)
		return last.Totals["overdue"] == 3
	})
	if last.target("500105").Counts["overdue"] != 1 {
		t.Errorf("500105's row: %v, want one overdue child", last.target("500105").Counts)
	}
	want := map[string]string{taskName(task103): "500000", taskName(task106): "500000", taskName(c2): "500105"}
	check := func() {
		for n, issuer := range want {
			var f feature
			s.must(t, http.StatusOK, http.MethodGet, "/api/tasks/"+n, city, nil).json(t, &f)
			if f.Props["tier_code"] != issuer || num(f.Props["escalations"]) != 1 || f.Props["overdue"] != true {
				t.Errorf("task %s after due: tier_code %v escalations %v overdue %v; want %s, 1, true", n, f.Props["tier_code"], f.Props["escalations"], f.Props["overdue"], issuer)
			}
		}
	}
	eventually(t, 10*time.Second, "three escalations", func() bool {
		n := 0
		for tn := range want {
			var f feature
			s.must(t, http.StatusOK, http.MethodGet, "/api/tasks/"+tn, city, nil).json(t, &f)
			n += num(f.Props["escalations"])
		}
		return n == 3
	})
	check()
	time.Sleep(4 * time.Second) // more than a period of the due clock: nothing escalates twice
	check()
	var fc featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items?rule=task-overdue&limit=1000", city, nil).json(t, &fc)
	alerts := 0
	for _, a := range fc.Features {
		if _, ok := want[strings.TrimPrefix(fmt.Sprint(a.Props["subject"]), "tasks/")]; ok {
			alerts++
		}
	}
	if alerts != 3 {
		t.Errorf("%d task-overdue alerts for the directive, want 3 (one per escalation)", alerts)
	}
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(task106)+"/close", city, map[string]any{"note": "督办完成"})
}

// notifyFor waits for a twin/notify/{person} message about task with event.
func notifyFor(t *testing.T, mc *mqttClient, person, task, event string) {
	t.Helper()
	mc.next(t, 20*time.Second, event+" of "+task+" to "+person, func(m mqttMsg) bool {
		var p map[string]any
		_ = json.Unmarshal(m.payload, &p)
		return m.topic == "twin/notify/"+person && p["task"] == task && p["event"] == event
	})
}

func testRectification(t *testing.T, s *server, city string, mc *mqttClient) {
	var fc featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/buildings/items?high_rise=true&limit=50", city, nil).json(t, &fc)
	var b feature
	for _, f := range fc.Features {
		if len(f.Region) == 3 && len(f.Props["owners"].([]any)) > 0 && num(f.Props["risk_level"]) == 5 {
			b = f
			break
		}
	}
	if b.ID == "" {
		t.Fatal("no green high-rise with owners in a street")
	}
	district, street := b.Region[1], b.Region[2]
	dt, st := s.token(t, "operator", district), s.token(t, "operator", street)
	other := "500103"
	if district == other {
		other = "500105"
	}
	owner := b.Props["owners"].([]any)[0].(string)
	due := time.Now().Add(5 * time.Second).UTC().Format(time.RFC3339Nano)
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/tasks", s.token(t, "operator", other),
		map[string]any{"kind": "rectification", "subject": b.ID, "due": due})
	var task feature
	s.must(t, http.StatusCreated, http.MethodPost, "/api/tasks", dt, map[string]any{"kind": "rectification", "subject": b.ID,
		"title": "消防通道堵塞", "text": "楼道堆放杂物", "plan": "一楼一策: 清理楼道, 每周巡查", "due": due}).json(t, &task)
	if task.Props["assignee"] != street || task.Props["tier"] != "street" || len(task.Props["persons"].([]any)) == 0 {
		t.Fatalf("rectification task: %v", task.Props)
	}
	notifyFor(t, mc, owner, task.ID, "task.issued")
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/tasks/"+taskName(task), s.token(t, "operator", other), nil)

	bname := strings.TrimPrefix(b.ID, "buildings/")
	building := func() feature {
		f, _ := s.get(t, city, "buildings", bname)
		return f
	}
	// Overdue: the district supervises, the colour steps one (green -> blue) ...
	eventually(t, 30*time.Second, "the first escalation", func() bool {
		f, _ := s.get(t, city, "tasks", taskName(task))
		return f.Props["tier"] == "district"
	})
	notifyFor(t, mc, owner, task.ID, "task.escalated")
	eventually(t, 10*time.Second, "the building's colour stepped to blue", func() bool {
		f := building()
		return num(f.Props["risk_level"]) == 4 && f.Props["risk_color"] == "blue"
	})
	// ... and a period later the city, yellow.
	eventually(t, 20*time.Second, "the second escalation", func() bool {
		f, _ := s.get(t, city, "tasks", taskName(task))
		return f.Props["tier"] == "city" && num(f.Props["escalations"]) == 2
	})
	eventually(t, 10*time.Second, "the building's colour stepped to yellow", func() bool {
		f := building()
		return num(f.Props["risk_level"]) == 3 && f.Props["risk_color"] == "yellow" && f.Props["risk_tier"] == "city"
	})
	// Done: reported by the street, closed; the colour is restored.
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(task)+"/report", st, map[string]any{"note": "已清理", "photos": []string{"photos/after.jpg"}})
	var closed feature
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(task)+"/close", st, map[string]any{"note": "验收通过"}).json(t, &closed)
	hist, _ := closed.Props["history"].([]any)
	var actions []string
	for _, h := range hist {
		m := h.(map[string]any)
		actions = append(actions, fmt.Sprint(m["action"]))
		if m["actor"] == nil || m["at"] == nil {
			t.Errorf("history step without actor or time: %v", m)
		}
	}
	if got := strings.Join(actions, ","); got != "issue,remind,escalate,escalate,report,close" {
		t.Errorf("history %s", got)
	}
	eventually(t, 10*time.Second, "the building's colour restored", func() bool {
		f := building()
		return num(f.Props["risk_level"]) == 5 && f.Props["risk_color"] == "green"
	})
	notifyFor(t, mc, owner, task.ID, "task.closed")
}

func testEnforcement(t *testing.T, s *server, city string, mc *mqttClient) {
	r := s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/bridges/items/qiansimen", city, nil)
	bf, err := geojson.UnmarshalFeature(r.body)
	if err != nil {
		t.Fatal(err)
	}
	bridge := bf.Geometry.(orb.LineString)
	a, b := bridge[0], bridge[len(bridge)-1]
	if a[1] > b[1] {
		a, b = b, a
	}
	along := func(f float64) orb.Point { return orb.Point{a[0] + f*(b[0]-a[0]), a[1] + f*(b[1]-a[1])} }
	// Cameras of our own: 20 m beside the deck's middle, and 300 m away.
	kx := 111320 * math.Cos(a[1]*math.Pi/180)
	const ky = 110574
	dx, dy := (b[0]-a[0])*kx, (b[1]-a[1])*ky
	l := math.Hypot(dx, dy)
	side := func(m float64) orb.Point {
		mid := along(0.5)
		return orb.Point{mid[0] - dy/l*m/kx, mid[1] + dx/l*m/ky}
	}
	sfx := suffix(t)
	camNear, camFar := "acc-cam-near-"+sfx, "acc-cam-far-"+sfx
	for name, p := range map[string]orb.Point{camNear: side(20), camFar: side(300)} {
		s.must(t, http.StatusCreated, http.MethodPut, "/api/entities/devices/"+name, city, pointFeature(p[0], p[1], map[string]any{"kind": "camera", "status": "online"}))
	}
	owner := "acc-owner-" + sfx
	truck := "acc-enf-" + sfx
	north := along(1.1)
	s.putVehicle(t, city, truck, north[0], north[1], map[string]any{"kind": "muck_truck", "plate": "渝B·" + sfx, "owners": []string{owner}})

	sh, _ := time.LoadLocation("Asia/Shanghai")
	y := time.Now().In(sh).AddDate(0, 0, -1)
	t0 := time.Date(y.Year(), y.Month(), y.Day(), 8, 0, 0, 0, sh) // forbidden hours
	for i, f := range []float64{1.1, 0.75, 0.5, 0.25, -0.1} {
		p := along(f)
		mc.publish(t, "twin/telemetry/"+truck, fix(t0.Add(time.Duration(i)*20*time.Second), p[0], p[1]))
	}
	var cases featureCollection
	q := "/api/tasks?kind=enforcement&subject=" + url.QueryEscape("vehicles/"+truck)
	eventually(t, 20*time.Second, "the enforcement case with its evidence", func() bool {
		s.must(t, http.StatusOK, http.MethodGet, q, city, nil).json(t, &cases)
		return len(cases.Features) > 0 && cases.Features[0].Props["evidence_complete"] == true
	})
	if len(cases.Features) != 1 {
		t.Fatalf("%d cases for one crossing, want 1", len(cases.Features))
	}
	c := cases.Features[0]
	if c.Props["plate"] != "渝B·"+sfx || c.Props["state"] != "issued" || num(c.Props["speed_kmh"]) <= 0 {
		t.Errorf("case props: %v", c.Props)
	}
	var captures []map[string]any
	var track map[string]any
	for _, e := range c.Props["evidence"].([]any) {
		m := e.(map[string]any)
		switch m["type"] {
		case "capture":
			captures = append(captures, m)
			if d, _ := m["distance_m"].(float64); d > 50 {
				t.Errorf("capture beyond 50 m: %v", m)
			}
		case "track":
			track = m
		}
	}
	if track == nil || len(track["times"].([]any)) < 3 {
		t.Fatalf("track evidence: %v", track)
	}
	var near map[string]any
	for _, m := range captures {
		switch m["camera"] {
		case "devices/" + camNear:
			near = m
		case "devices/" + camFar:
			t.Errorf("the camera 300 m away was captured: %v", m)
		}
	}
	if near == nil {
		t.Fatalf("the camera beside the deck is not in the evidence: %v", captures)
	}
	ts, _ := time.Parse(time.RFC3339Nano, near["ts"].(string))
	if d := near["distance_m"].(float64); d < 15 || d > 25 || ts.Sub(t0.Add(40*time.Second)).Abs() > 3*time.Second {
		t.Errorf("capture by the near camera: %v m at %v, want about 20 m at %v", d, ts, t0.Add(40*time.Second))
	}
	t.Logf("case %s: %d captures (demo cameras included), track of %d fixes", c.ID, len(captures), len(track["times"].([]any)))

	// Both districts the bridge joins see it and may act; a third does not; the owner is told.
	notifyFor(t, mc, owner, c.ID, "task.issued")
	for code, want := range map[string]int{"500103": http.StatusOK, "500105": http.StatusOK, "500108": http.StatusNotFound} {
		s.must(t, want, http.MethodGet, "/api/tasks/"+taskName(c), s.token(t, "operator", code), nil)
	}
	d105 := s.token(t, "operator", "500105")
	s.must(t, http.StatusBadRequest, http.MethodPost, "/api/tasks/"+taskName(c)+"/close", d105, map[string]any{"note": "x"})
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(c)+"/ack", s.token(t, "operator", "500103"), nil)
	var done feature
	s.must(t, http.StatusOK, http.MethodPost, "/api/tasks/"+taskName(c)+"/close", d105, map[string]any{"outcome": "penalised", "note": "罚款"}).json(t, &done)
	if done.Props["state"] != "closed" || done.Props["outcome"] != "penalised" || done.Props["closed_by"] != "operator@500105" || done.Props["closed_at"] == nil {
		t.Errorf("closed case: %v", done.Props)
	}
	notifyFor(t, mc, owner, c.ID, "task.closed")
}
