package rules

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/rules/notify"
	"github.com/citytwin/citytwin/twin"
)

// recPub records publishes.
type recPub struct {
	mu     sync.Mutex
	topics []string
}

func (p *recPub) Publish(_ context.Context, topic string, _ byte, _ bool, _ []byte) error {
	p.mu.Lock()
	p.topics = append(p.topics, topic)
	p.mu.Unlock()
	return nil
}

func (p *recPub) count(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.topics {
		if strings.HasPrefix(t, prefix) {
			n++
		}
	}
	return n
}

var shanghai, _ = time.LoadLocation("Asia/Shanghai")

// The bridge fixture has the demo layout: a two-point line across the
// Jialing, about 890 m south to north, joining Yuzhong (500103) and Jiangbei
// (500105), with the demo's muck-truck restriction.
var (
	bridgeA = orb.Point{106.5750, 29.5650}
	bridgeB = orb.Point{106.5750, 29.5730}
)

// jialing places a point as the demo does around the bridge fixture: south
// of the river in Yuzhong (500103), north of it in Jiangbei (500105).
func jialing(p orb.Point) []string {
	if p[1] < 29.569 {
		return []string{"500000", "500103"}
	}
	return []string{"500000", "500105"}
}

type fixture struct {
	tw  *twin.Twin
	clk *clock.Fake
	e   *Engine
	pub *recPub
	n   *notify.Notifier // the one way alerts go out
}

func newFixture(t *testing.T, rulesYAML string) *fixture {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 24, 7, 0, 0, 0, shanghai))
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 1 << 16})
	pub := &recPub{}
	n := notify.New(tw, notify.Options{Publisher: pub, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e := New(tw, Options{Clock: clk, Notifier: n, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Place: jialing})
	f := &fixture{tw: tw, clk: clk, e: e, pub: pub, n: n}
	f.put(twin.Bridges, "qiansimen", orb.LineString{bridgeA, bridgeB}, map[string]any{
		"name": "Qiansimen Bridge", "river": "Jialing", "connects": []any{"500103", "500105"},
		"restrictions": map[string]any{"muck_truck": map[string]any{"forbidden": []any{"07:00-09:00", "17:00-19:30"}}},
	})
	f.put(twin.Bridges, "nolimit", orb.LineString{{106.60, 29.5650}, {106.60, 29.5730}}, map[string]any{"name": "Unrestricted"})
	if rulesYAML != "" {
		rs, err := Parse("test.yaml", []byte(rulesYAML))
		if err != nil {
			t.Fatal(err)
		}
		e.Load(rs)
	}
	return f
}

func (f *fixture) put(l twin.Layer, name string, g orb.Geometry, props map[string]any) {
	if _, err := f.tw.Put(&twin.Feature{ID: twin.NewID(l, name), Geometry: g, Props: twin.NewProps(props)}); err != nil {
		panic(err)
	}
}

func (f *fixture) fix(t *testing.T, name string, at time.Time, p orb.Point) {
	t.Helper()
	if _, _, err := f.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, name), Time: at, HasPos: true, Pos: p}); err != nil {
		t.Fatal(err)
	}
	f.e.Drain()
}

func (f *fixture) reading(t *testing.T, name string, at time.Time, vals map[string]float64) {
	t.Helper()
	if _, _, err := f.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Devices, name), Time: at, Values: twin.ReadingsOf(vals)}); err != nil {
		t.Fatal(err)
	}
	f.e.Drain()
}

// count publishes the alert changes so far (the notifications consumer)
// and counts publishes by prefix.
func (f *fixture) count(prefix string) int {
	f.n.Drain(context.Background())
	return f.pub.count(prefix)
}

func (f *fixture) alerts(rule string) []*twin.Feature {
	var out []*twin.Feature
	f.tw.Range(twin.Alerts, func(a *twin.Feature) bool {
		if a.Prop("rule") == rule {
			out = append(out, a)
		}
		return true
	})
	return out
}

// metres east/north of p.
func offset(p orb.Point, east, north float64) orb.Point {
	const k = 6371008.8 * math.Pi / 180
	return orb.Point{p[0] + east/(k*math.Cos(p[1]*math.Pi/180)), p[1] + north/k}
}

// noise is a deterministic +-amp metres jitter.
func noise(i int, amp float64) (float64, float64) {
	return amp * math.Sin(float64(i)*2.3), amp * math.Cos(float64(i)*1.7)
}

const bridgeRule = `
rules:
  - name: bridge-muck
    kind: geofence
    severity: orange
    subjects: {layer: vehicles, when: 'obj.kind == "muck_truck"'}
    target: {layer: bridges}
    detect: cross
    buffer_m: 15
    windows_from: restrictions.muck_truck.forbidden
`

// drive runs a truck from 300 m south of the bridge to 300 m north, one fix
// every step metres, with GPS noise, offset east metres from the deck.
func drive(t *testing.T, f *fixture, truck string, start time.Time, east, step, amp float64) {
	f.put(twin.Vehicles, truck, offset(bridgeA, east, -300), map[string]any{"kind": "muck_truck", "plate": "渝A·" + truck, "name_zh": "顺达运输 1号车"})
	f.e.Drain()
	total := 890.0 + 600
	for i := 1; float64(i)*step <= total; i++ {
		ne, nn := noise(i, amp)
		f.fix(t, truck, start.Add(time.Duration(i)*5*time.Second), offset(bridgeA, east+ne, -300+float64(i)*step+nn))
	}
}

func TestCrossingInForbiddenHoursRaisesOneAlert(t *testing.T) {
	f := newFixture(t, bridgeRule)
	drive(t, f, "BP001", time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai), 0, 40, 5)
	as := f.alerts("bridge-muck")
	if len(as) != 1 {
		t.Fatalf("alerts = %d, want 1", len(as))
	}
	a := as[0]
	if a.ID.Name != "bridge-muck.vehicles.BP001.0" || a.Prop("state") != "open" || a.Prop("severity") != "orange" {
		t.Fatalf("alert %s props %v", a.ID, a.Props)
	}
	if n, _ := a.Number("count"); n != 1 {
		t.Errorf("count = %v, want 1", n)
	}
	if a.Prop("target") != "bridges/qiansimen" || a.Prop("direction") != "forward" || a.Prop("from") != "500103" || a.Prop("to") != "500105" {
		t.Errorf("detail %v", a.Props)
	}
	if got := strings.Join(twin.PropStrings(a.Props.Get("regions")), ","); got != "500000,500103,500105" {
		t.Errorf("regions = %s, want both districts", got)
	}
	// Only types JSON gives back, so that the change log carries the
	// alert packed, not through encoding/json (issue 16 goal 1).
	for k, v := range a.Props.All() {
		if b, err := json.Marshal(v); err == nil {
			var back any
			if json.Unmarshal(b, &back) == nil && reflect.TypeOf(back) != reflect.TypeOf(v) {
				t.Errorf("prop %s is a %T, which JSON gives back as %T", k, v, back)
			}
		}
	}
	// the panel's row reads the truck by its plate and name, without fetching it
	if a.Prop("subject_plate") != "渝A·BP001" || a.Prop("subject_name_zh") != "顺达运输 1号车" {
		t.Errorf("subject names: plate %q name_zh %q", a.Prop("subject_plate"), a.Prop("subject_name_zh"))
	}
	if f.count("twin/alerts/orange/bridge-muck") != 1 {
		t.Errorf("published %v", f.pub.topics)
	}
}

func TestCrossingOutsideForbiddenHoursRaisesNone(t *testing.T) {
	f := newFixture(t, bridgeRule)
	drive(t, f, "BP002", time.Date(2026, 11, 24, 12, 0, 0, 0, shanghai), 0, 40, 5)
	if as := f.alerts("bridge-muck"); len(as) != 0 {
		t.Fatalf("alerts = %d, want 0 at noon", len(as))
	}
	// The same drive 18:00 local raises one.
	drive(t, f, "BP003", time.Date(2026, 11, 24, 18, 0, 0, 0, shanghai), 0, 40, 5)
	if as := f.alerts("bridge-muck"); len(as) != 1 {
		t.Fatalf("alerts = %d, want 1 at 18:00", len(as))
	}
}

func TestTraceAlongsideBridgeRaisesNone(t *testing.T) {
	f := newFixture(t, bridgeRule)
	// A parallel road 40 m east, with 10 m GPS noise, in forbidden hours.
	drive(t, f, "BP004", time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai), 40, 30, 10)
	if as := f.alerts("bridge-muck"); len(as) != 0 {
		t.Fatalf("alerts = %d, want 0: %v", len(as), as[0].Props)
	}
}

func TestSparseTraceStillCrosses(t *testing.T) {
	f := newFixture(t, bridgeRule)
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, shanghai)
	// North to south: one fix 100 m beyond the north end, the next 100 m
	// before the south end; no fix on the deck.
	f.put(twin.Vehicles, "BP005", offset(bridgeB, 3, 100), map[string]any{"kind": "muck_truck"})
	f.fix(t, "BP005", at, offset(bridgeB, 3, 100))
	f.fix(t, "BP005", at.Add(2*time.Minute), offset(bridgeA, -4, -100))
	as := f.alerts("bridge-muck")
	if len(as) != 1 {
		t.Fatalf("alerts = %d, want 1", len(as))
	}
	if as[0].Prop("direction") != "reverse" || as[0].Prop("from") != "500105" {
		t.Errorf("direction %v", as[0].Props)
	}
	// A patrol car is not a subject.
	f.put(twin.Vehicles, "P1", offset(bridgeB, 0, 100), map[string]any{"kind": "patrol"})
	f.fix(t, "P1", at.Add(time.Minute), offset(bridgeA, 0, -100))
	if as := f.alerts("bridge-muck"); len(as) != 1 {
		t.Fatalf("alerts = %d after patrol car, want 1", len(as))
	}
}

func TestParkedByFenceEdgeDoesNotFlap(t *testing.T) {
	const rule = `
rules:
  - name: site
    kind: geofence
    subjects: {layer: vehicles}
    target: {id: grids/site}
    detect: [enter, exit]
    buffer_m: 15
`
	f := newFixture(t, "")
	c := orb.Point{106.55, 29.55}
	ring := orb.Ring{offset(c, -200, -200), offset(c, 200, -200), offset(c, 200, 200), offset(c, -200, 200), offset(c, -200, -200)}
	f.put(twin.Grids, "site", orb.Polygon{ring}, map[string]any{"code": "site"})
	rs, err := Parse("t.yaml", []byte(rule))
	if err != nil {
		t.Fatal(err)
	}
	f.e.Load(rs)
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, shanghai)
	f.put(twin.Vehicles, "T1", offset(c, 0, -400), map[string]any{"kind": "muck_truck"})
	f.fix(t, "T1", at, offset(c, 0, -400))
	f.fix(t, "T1", at.Add(time.Minute), offset(c, 0, 0)) // deep inside: enter
	// Parked at the south edge (200 m south of centre), jittering 10 m.
	for i := 0; i < 60; i++ {
		_, nn := noise(i, 10)
		f.fix(t, "T1", at.Add(time.Duration(2+i)*time.Minute), offset(c, 5, -200+nn))
	}
	as := f.alerts("site")
	if len(as) != 1 {
		t.Fatalf("alerts = %d, want 1", len(as))
	}
	if n, _ := as[0].Number("count"); n != 1 || as[0].Prop("detect") != "enter" {
		t.Fatalf("alert flapped: count %v props %v", n, as[0].Props)
	}
	f.fix(t, "T1", at.Add(2*time.Hour), offset(c, 0, -300)) // really left: exit fires on the same open alert
	if n, _ := f.alerts("site")[0].Number("count"); n != 2 {
		t.Fatalf("count after exit = %v, want 2", n)
	}
}

const riskRules = `
rules:
  - name: hydrant-zero
    kind: threshold
    subjects: {layer: devices, when: 'obj.kind == "hydrant_pressure"'}
    tiers: [{when: 'values.pressure_mpa <= 0.0', severity: orange}]
    clear: 'values.pressure_mpa >= 0.1'
  - name: building-risk
    kind: risk
    period: 24h
`

func TestHydrantPressureZeroTurnsBuildingOrange(t *testing.T) {
	f := newFixture(t, riskRules)
	bld := orb.Polygon{{{106.55, 29.55}, {106.551, 29.55}, {106.551, 29.551}, {106.55, 29.551}, {106.55, 29.55}}}
	f.put(twin.Buildings, "b1", bld, map[string]any{"risk_level": 5.0, "risk_color": "green", "owners": []any{"p1", "p2"}})
	f.put(twin.Devices, "h1", orb.Point{106.5505, 29.5505}, map[string]any{"kind": "hydrant_pressure", "attached_to": "buildings/b1"})
	f.e.Drain()
	at := f.clk.Now()
	f.reading(t, "h1", at, map[string]float64{"pressure_mpa": 0.35})
	b, _ := f.tw.Get(twin.NewID(twin.Buildings, "b1"))
	if b.Prop("risk_color") != "green" {
		t.Fatalf("risk before = %v", b.Props)
	}
	f.reading(t, "h1", at.Add(time.Minute), map[string]float64{"pressure_mpa": 0})
	b, _ = f.tw.Get(twin.NewID(twin.Buildings, "b1"))
	if n, _ := b.Number("risk_level"); n != 2 || b.Prop("risk_color") != "orange" {
		t.Fatalf("risk after pressure 0 = %v %v", n, b.Prop("risk_color"))
	}
	// Stamped with the reading's time, not the clock's (a replay shows
	// the colour when the pressure dropped: twin/timeline).
	if !b.Updated.Time().Equal(at.Add(time.Minute)) {
		t.Errorf("building updated %v, want the reading's ts %v", b.Updated, at.Add(time.Minute))
	}
	if as := f.alerts("hydrant-zero"); len(as) != 1 || !as[0].Updated.Time().Equal(at.Add(time.Minute)) {
		t.Errorf("alert updated: %v", as)
	}
	if f.count("twin/notify/p1") == 0 || f.count("twin/notify/p2") == 0 {
		t.Errorf("owners not notified: %v", f.pub.topics)
	}
	// 0.05 MPa: no tier, but the clear condition does not hold yet (hysteresis).
	f.reading(t, "h1", at.Add(2*time.Minute), map[string]float64{"pressure_mpa": 0.05})
	if b, _ = f.tw.Get(b.ID); b.Prop("risk_color") != "orange" {
		t.Fatalf("cleared too early: %v", b.Prop("risk_color"))
	}
	f.reading(t, "h1", at.Add(3*time.Minute), map[string]float64{"pressure_mpa": 0.3})
	if b, _ = f.tw.Get(b.ID); b.Prop("risk_color") != "green" {
		t.Fatalf("risk after restore = %v", b.Prop("risk_color"))
	}
	if !b.Updated.Time().Equal(at.Add(3 * time.Minute)) {
		t.Errorf("building updated %v after the restore, want %v", b.Updated, at.Add(3*time.Minute))
	}
	if as := f.alerts("hydrant-zero"); len(as) != 1 || as[0].Prop("state") != "closed" {
		t.Fatalf("hydrant alert not closed: %d", len(as))
	}
}

func TestOverdueHazardEscalatesPerPeriod(t *testing.T) {
	f := newFixture(t, riskRules)
	t0 := f.clk.Now()
	deadline := t0.Add(time.Hour)
	bld := orb.Polygon{{{106.55, 29.55}, {106.551, 29.55}, {106.551, 29.551}, {106.55, 29.551}, {106.55, 29.55}}}
	f.put(twin.Buildings, "b2", bld, map[string]any{"risk_level": 4.0, "risk_color": "blue", "owners": []any{"p9"},
		"hazards": []any{map[string]any{"name": "blocked fire exit", "deadline": deadline.Format(time.RFC3339)}}})
	f.e.Drain()
	want := []struct {
		at     time.Duration
		level  float64
		colour string
		tier   string
	}{
		{0, 4, "blue", "street"},
		{59 * time.Minute, 4, "blue", "street"},
		{time.Hour, 3, "yellow", "district"},
		{time.Hour + 23*time.Hour, 3, "yellow", "district"},
		{time.Hour + 24*time.Hour, 2, "orange", "city"},
		{time.Hour + 48*time.Hour, 1, "red", "city"},
		{time.Hour + 96*time.Hour, 1, "red", "city"},
	}
	for _, w := range want {
		f.clk.Set(t0.Add(w.at))
		f.e.Tick(f.clk.Now())
		f.e.Drain()
		b, _ := f.tw.Get(twin.NewID(twin.Buildings, "b2"))
		lvl, _ := b.Number("risk_level")
		tier := b.Prop("risk_tier")
		if tier == "" {
			tier = "street"
		}
		if lvl != w.level || b.Prop("risk_color") != w.colour || tier != w.tier {
			t.Fatalf("at +%v: level %v %s tier %s, want %v %s %s", w.at, lvl, b.Prop("risk_color"), tier, w.level, w.colour, w.tier)
		}
	}
	as := f.alerts("building-risk")
	if len(as) != 1 || as[0].Prop("severity") != "red" || as[0].Prop("tier") != "city" {
		t.Fatalf("risk alert: %d %v", len(as), as)
	}
	if f.count("twin/notify/p9") != 3 {
		t.Errorf("owner notifications = %d, want 3", f.count("twin/notify/p9"))
	}
	// Fixing the hazard brings the building back and closes the alert.
	_, _, err := f.tw.Update(twin.NewID(twin.Buildings, "b2"), func(c *twin.Feature) (*twin.Feature, error) {
		c.Props.Set("hazards", []any{map[string]any{"name": "blocked fire exit", "deadline": deadline.Format(time.RFC3339), "fixed": true}})
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.e.Drain()
	b, _ := f.tw.Get(twin.NewID(twin.Buildings, "b2"))
	if b.Prop("risk_color") != "blue" || f.alerts("building-risk")[0].Prop("state") != "closed" {
		t.Fatalf("after fix: %v, alert %v", b.Prop("risk_color"), f.alerts("building-risk")[0].Prop("state"))
	}
}

func TestAlertEscalatesPastSLA(t *testing.T) {
	f := newFixture(t, bridgeRule)
	drive(t, f, "BP010", time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai), 0, 40, 5)
	name := f.alerts("bridge-muck")[0].ID
	f.clk.Advance(9 * time.Minute)
	f.e.Tick(f.clk.Now())
	if a, _ := f.tw.Get(name); a.Prop("tier") != "street" {
		t.Fatalf("escalated early: %v", a.Prop("tier"))
	}
	f.clk.Advance(2 * time.Minute)
	f.e.Tick(f.clk.Now())
	if a, _ := f.tw.Get(name); a.Prop("tier") != "district" || a.Prop("severity") != "red" {
		t.Fatalf("after SLA: %v %v", a.Prop("tier"), a.Prop("severity"))
	}
}

func TestOfflineOnTick(t *testing.T) {
	f := newFixture(t, `
rules:
  - name: offline
    kind: offline
    severity: blue
    subjects: {layer: devices, when: 'obj.kind == "septic_gas"'}
    after: 10m
`)
	f.put(twin.Devices, "g1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.put(twin.Devices, "cam", orb.Point{106.55, 29.55}, map[string]any{"kind": "camera"})
	f.reading(t, "g1", f.clk.Now(), map[string]float64{"ch4": 1})
	f.clk.Advance(9 * time.Minute)
	f.e.Tick(f.clk.Now())
	if n := len(f.alerts("offline")); n != 0 {
		t.Fatalf("offline early: %d", n)
	}
	f.clk.Advance(2 * time.Minute)
	f.e.Tick(f.clk.Now())
	f.e.Tick(f.clk.Now())
	as := f.alerts("offline")
	if len(as) != 1 || as[0].Prop("subject") != "devices/g1" {
		t.Fatalf("offline alerts %d", len(as))
	}
	f.reading(t, "g1", f.clk.Now(), map[string]float64{"ch4": 1})
	if a, _ := f.tw.Get(as[0].ID); a.Prop("state") != "closed" {
		t.Fatalf("not closed when heard: %v", a.Prop("state"))
	}
}

// A city loaded from the store (devices last updated long ago) does not
// raise an offline alarm for every device at start: the rule waits `after`
// from when it started watching.
func TestOfflineNoFloodAtStart(t *testing.T) {
	f := newFixture(t, `
rules:
  - name: offline
    kind: offline
    severity: blue
    subjects: {layer: devices}
    after: 10m
`)
	f.put(twin.Devices, "old", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.clk.Advance(time.Hour) // the device has been silent for an hour before this engine
	rs, err := Parse("r.yaml", []byte(`
rules:
  - name: offline2
    kind: offline
    severity: blue
    subjects: {layer: devices}
    after: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	f.e.Load(rs)
	f.e.Tick(f.clk.Now())
	if n := len(f.alerts("offline2")); n != 0 {
		t.Fatalf("flood at start: %d offline alerts", n)
	}
	f.clk.Advance(11 * time.Minute)
	f.e.Tick(f.clk.Now())
	if n := len(f.alerts("offline2")); n != 1 {
		t.Fatalf("after the wait: %d offline alerts, want 1", n)
	}
}

const gasA = `
rules:
  - name: gas
    kind: threshold
    subjects: {layer: devices}
    tiers: [{when: 'values.ch4 >= 10.0', severity: yellow}]
`
const gasB = `
rules:
  - name: gas
    kind: threshold
    subjects: {layer: devices}
    tiers:
      - {when: 'values.ch4 >= 10.0', severity: yellow}
      - {when: 'values.ch4 >= 50.0', severity: red}
`

func TestHotReloadKeepsOpenAlerts(t *testing.T) {
	f := newFixture(t, gasA)
	f.put(twin.Devices, "s1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.put(twin.Devices, "s2", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	at := f.clk.Now()
	f.reading(t, "s1", at, map[string]float64{"ch4": 20})
	f.reading(t, "s2", at, map[string]float64{"ch4": 70})
	if n := len(f.alerts("gas")); n != 2 {
		t.Fatalf("alerts = %d", n)
	}
	srv := httptest.NewRecorder()
	req := asCity(httptest.NewRequest("PUT", "/api/rules", strings.NewReader(gasB)))
	req.Header.Set("Content-Type", "application/yaml")
	f.e.PutRules(srv, req)
	if srv.Code != 200 {
		t.Fatalf("PUT = %d %s", srv.Code, srv.Body)
	}
	// New behaviour: s2 at 70 is red now; it updates its one open alert.
	f.reading(t, "s2", at.Add(time.Minute), map[string]float64{"ch4": 71})
	as := f.alerts("gas")
	if len(as) != 2 {
		t.Fatalf("alerts after reload = %d, want 2 (no duplicates)", len(as))
	}
	a, _ := f.tw.Get(twin.NewID(twin.Alerts, "gas.devices.s2.0"))
	if a.Prop("severity") != "red" || a.Prop("state") != "open" {
		t.Fatalf("s2 alert %v", a.Props)
	}
	if n, _ := a.Number("count"); n != 2 {
		t.Errorf("count = %v, want 2", n)
	}
}

func TestBadRulesRejectedPreciselyAndOldKeepRunning(t *testing.T) {
	data, err := os.ReadFile("testdata/bad_condition.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("rules.yaml", data)
	const want = `rules.yaml:12: rule "bridge-muck": condition: undeclared reference to 'speed'`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	for _, c := range []struct{ src, want string }{
		{"rules:\n  - name: x\n    kind: wat\n", `t.yaml:3: rule "x": kind: "wat": want geofence, threshold, risk or offline`},
		{"rules:\n  - name: x\n    kind: offline\n    subjects: {layer: devices}\n    afterr: 10m\n", `t.yaml:5: rule "x": afterr: unknown field`},
		{"rules:\n  - name: x\n    kind: offline\n    subjects: {layer: devices}\n    after: soon\n", `t.yaml:5: rule "x": after: duration "soon": want e.g. 10m or 24h`},
		{"rules:\n  - name: x\n    kind: threshold\n    subjects: {layer: devices}\n    tiers:\n      - {when: 'values.ch4 >=', severity: red}\n", `t.yaml:6: rule "x": tiers[0].when: Syntax error`},
		{`{"rules": [{"name": "x", "kind": "threshold", "subjects": {"layer": "devicez"}, "tiers": [{"when": "true", "severity": "red"}]}]}`, `t.yaml:1: rule "x": subjects.layer: unknown layer "devicez"`},
	} {
		_, err := Parse("t.yaml", []byte(c.src))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v\nwant prefix %s", c.src, err, c.want)
		}
	}
	f := newFixture(t, gasA)
	f.put(twin.Devices, "s1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	rec := httptest.NewRecorder()
	req := asCity(httptest.NewRequest("PUT", "/api/rules", strings.NewReader(string(data))))
	f.e.PutRules(rec, req)
	if rec.Code != 400 {
		t.Fatalf("PUT bad = %d", rec.Code)
	}
	var body struct{ Error, Detail string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if !strings.Contains(body.Detail, "undeclared reference to 'speed'") {
		t.Errorf("detail = %q", body.Detail)
	}
	f.reading(t, "s1", f.clk.Now(), map[string]float64{"ch4": 20})
	if n := len(f.alerts("gas")); n != 1 {
		t.Fatalf("old rules stopped: %d alerts", n)
	}
	rec = httptest.NewRecorder()
	f.e.GetRules(rec, asCity(httptest.NewRequest("GET", "/api/rules", nil)))
	if rec.Body.String() != gasA {
		t.Errorf("GET after bad PUT = %q", rec.Body.String())
	}
}

func TestDemoRulesParse(t *testing.T) {
	data, err := os.ReadFile("../demo/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse("demo/rules.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 5 {
		t.Fatalf("rules = %d", len(rs.Rules))
	}
	// The demo bridge rule (cross + inside, min_fixes 2) on the fixture
	// bridge: exactly one alert for one crossing.
	f := newFixture(t, "")
	f.e.Load(rs)
	drive(t, f, "BP100", time.Date(2026, 11, 24, 17, 30, 0, 0, shanghai), 0, 40, 5)
	as := f.alerts("bridge-muck")
	if len(as) != 1 {
		t.Fatalf("alerts = %d", len(as))
	}
	if n, _ := as[0].Number("count"); n != 1 {
		t.Errorf("count = %v", n)
	}
	// A sparse trace with a single fix on the deck (below min_fixes 2)
	// still counts one crossing.
	at := time.Date(2026, 11, 24, 18, 0, 0, 0, shanghai)
	f.put(twin.Vehicles, "BP101", offset(bridgeA, 0, -100), map[string]any{"kind": "muck_truck"})
	f.fix(t, "BP101", at, offset(bridgeA, 2, -100))
	f.fix(t, "BP101", at.Add(time.Minute), offset(bridgeA, -3, 450))
	f.fix(t, "BP101", at.Add(2*time.Minute), offset(bridgeB, 4, 100))
	if as := f.alerts("bridge-muck"); len(as) != 2 {
		t.Fatalf("alerts after one-fix crossing = %d, want 2", len(as))
	}
	f.put(twin.Devices, "sg", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.reading(t, "sg", f.clk.Now(), map[string]float64{"ch4": 30})
	f.reading(t, "sg", f.clk.Now().Add(time.Second), map[string]float64{"h2s": 60})
	if as := f.alerts("septic-gas"); len(as) != 1 || as[0].Prop("severity") != "red" {
		t.Fatalf("septic alerts %v", as)
	}
}

func TestAckCloseViaHTTP(t *testing.T) {
	f := newFixture(t, bridgeRule)
	drive(t, f, "BP020", time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai), 0, 40, 5)
	name := f.alerts("bridge-muck")[0].ID.Name
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/alerts/{name}/ack", f.e.AckAlert)
	mux.HandleFunc("POST /api/alerts/{name}/close", f.e.CloseAlert)
	do := func(path string, p auth.Principal) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, nil)
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	yz := auth.Principal{Subject: "op-yuzhong", Role: auth.Operator, Region: "500103"}
	if rec := do("/api/alerts/"+name+"/ack", auth.Principal{Subject: "x", Region: "500108"}); rec.Code != 404 {
		t.Fatalf("out of scope ack = %d", rec.Code)
	}
	if rec := do("/api/alerts/nope.0/ack", yz); rec.Code != 404 {
		t.Fatalf("unknown ack = %d", rec.Code)
	}
	f.clk.Advance(3 * time.Minute)
	ackAt := f.clk.Now()
	if rec := do("/api/alerts/"+name+"/ack", yz); rec.Code != 200 {
		t.Fatalf("ack = %d %s", rec.Code, rec.Body)
	}
	a, _ := f.tw.Get(twin.NewID(twin.Alerts, name))
	if a.Prop("state") != "acked" || a.Prop("acked_by") != "op-yuzhong" || a.Prop("acked_at") != ts(ackAt) {
		t.Fatalf("acked props %v", a.Props)
	}
	if rec := do("/api/alerts/"+name+"/ack", yz); rec.Code != 409 {
		t.Fatalf("second ack = %d", rec.Code)
	}
	// Acknowledged alerts do not escalate.
	f.clk.Advance(time.Hour)
	f.e.Tick(f.clk.Now())
	if a, _ = f.tw.Get(a.ID); a.Prop("tier") != "street" {
		t.Fatalf("acked alert escalated")
	}
	jb := auth.Principal{Subject: "op-jiangbei", Role: auth.Operator, Region: "500105"}
	if rec := do("/api/alerts/"+name+"/close", jb); rec.Code != 200 {
		t.Fatalf("close = %d %s", rec.Code, rec.Body)
	}
	a, _ = f.tw.Get(a.ID)
	if a.Prop("state") != "closed" || a.Prop("closed_by") != "op-jiangbei" || a.Prop("closed_at") != ts(f.clk.Now()) {
		t.Fatalf("closed props %v", a.Props)
	}
	if rec := do("/api/alerts/"+name+"/close", jb); rec.Code != 409 {
		t.Fatalf("second close = %d", rec.Code)
	}
	// After close, a new crossing opens a new alert.
	drive(t, f, "BP020", time.Date(2026, 11, 24, 8, 30, 0, 0, shanghai), 0, 40, 5)
	if _, ok := f.tw.Get(twin.NewID(twin.Alerts, "bridge-muck.vehicles.BP020.1")); !ok {
		t.Fatalf("no new alert after close: %v", f.alerts("bridge-muck"))
	}
}

// A rule with `incident:` reports one incident when its alert opens, not on
// every repeated firing.
func TestRuleOpensIncident(t *testing.T) {
	f := newFixture(t, "")
	var got []string
	f.e.opts.OpenIncident = func(typ string, at orb.Point, desc string) error {
		got = append(got, typ)
		return nil
	}
	rs, err := Parse("r.yaml", []byte(`
rules:
  - name: gas
    kind: threshold
    subjects: {layer: devices}
    incident: gas_leak
    tiers: [{when: 'values.ch4 >= 10.0', severity: yellow}]
`))
	if err != nil {
		t.Fatal(err)
	}
	f.e.Load(rs)
	f.put(twin.Devices, "s1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.reading(t, "s1", f.clk.Now(), map[string]float64{"ch4": 20})
	f.clk.Advance(time.Second)
	f.reading(t, "s1", f.clk.Now(), map[string]float64{"ch4": 30})
	if len(got) != 1 || got[0] != "gas_leak" {
		t.Fatalf("incidents opened: %v", got)
	}
}

// TestJumpIsNotACrossing (issue 11 item 15): two fixes 7 km apart either
// side of Qiansimen bridge, or a short hop too fast for any truck, are not
// a crossing; the same hop at a driving pace is.
func TestJumpIsNotACrossing(t *testing.T) {
	f := newFixture(t, bridgeRule)
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, shanghai)
	// 3.5 km south to 3.5 km north, 5 minutes apart (84 km/h: the pace is
	// possible, the path over the deck is not known).
	f.put(twin.Vehicles, "J1", offset(bridgeA, 0, -3500), map[string]any{"kind": "muck_truck"})
	f.fix(t, "J1", at, offset(bridgeA, 0, -3500))
	f.fix(t, "J1", at.Add(5*time.Minute), offset(bridgeB, 0, 3500))
	if as := f.alerts("bridge-muck"); len(as) != 0 {
		t.Fatalf("7 km jump raised %d alerts: %v", len(as), as[0].Props)
	}
	// 100 m before to 100 m beyond the deck (1.1 km) in 10 s: 396 km/h.
	f.put(twin.Vehicles, "J2", offset(bridgeA, 0, -100), map[string]any{"kind": "muck_truck"})
	f.fix(t, "J2", at, offset(bridgeA, 0, -100))
	f.fix(t, "J2", at.Add(10*time.Second), offset(bridgeB, 0, 100))
	if as := f.alerts("bridge-muck"); len(as) != 0 {
		t.Fatalf("a 396 km/h hop raised %d alerts", len(as))
	}
	// The same hop in 90 s (44 km/h) is a crossing.
	f.put(twin.Vehicles, "J3", offset(bridgeA, 0, -100), map[string]any{"kind": "muck_truck"})
	f.fix(t, "J3", at, offset(bridgeA, 0, -100))
	f.fix(t, "J3", at.Add(90*time.Second), offset(bridgeB, 0, 100))
	if as := f.alerts("bridge-muck"); len(as) != 1 {
		t.Fatalf("a plausible sparse crossing raised %d alerts, want 1", len(as))
	}
}

// asCity puts a city-level admin principal on r (the server's guard does
// this for real requests).
func asCity(r *http.Request) *http.Request {
	return as(r, auth.Principal{Subject: "city-admin", Role: auth.Admin, Region: auth.CityCode})
}

func as(r *http.Request, p auth.Principal) *http.Request {
	return r.WithContext(auth.WithPrincipal(r.Context(), p))
}

// TestBulkAckViaHTTP (issue 14 item 3): POST /api/alerts/ack acks a list
// with the single ack's scope and transitions, and says per name what failed.
func TestBulkAckViaHTTP(t *testing.T) {
	f := newFixture(t, bridgeRule)
	drive(t, f, "BP020", time.Date(2026, 11, 24, 7, 30, 0, 0, shanghai), 0, 40, 5)
	name := f.alerts("bridge-muck")[0].ID.Name
	do := func(body string, p auth.Principal) (int, BulkAckResult) {
		req := httptest.NewRequest("POST", "/api/alerts/ack", strings.NewReader(body))
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
		rec := httptest.NewRecorder()
		f.e.BulkAck(rec, req)
		var out BulkAckResult
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("answer %s: %v", rec.Body, err)
			}
		}
		return rec.Code, out
	}
	list := `{"names":["` + name + `","nope.0","` + name + `"]}`
	nanan := auth.Principal{Subject: "op-nanan", Role: auth.Operator, Region: "500108"}
	if code, out := do(list, nanan); code != 200 || len(out.Acked) != 0 || len(out.Failed) != 2 || out.Failed[0].Status != 404 {
		t.Fatalf("out of scope bulk ack = %d %+v", code, out)
	}
	if a, _ := f.tw.Get(twin.NewID(twin.Alerts, name)); a.Prop("state") != "open" {
		t.Fatalf("out of scope bulk ack changed the alert: %v", a.Props)
	}
	yz := auth.Principal{Subject: "op-yuzhong", Role: auth.Operator, Region: "500103"}
	code, out := do(list, yz)
	if code != 200 || len(out.Acked) != 1 || out.Acked[0] != name || len(out.Failed) != 1 || out.Failed[0].Name != "nope.0" || out.Failed[0].Status != 404 {
		t.Fatalf("bulk ack = %d %+v", code, out)
	}
	if a, _ := f.tw.Get(twin.NewID(twin.Alerts, name)); a.Prop("state") != "acked" || a.Prop("acked_by") != "op-yuzhong" {
		t.Fatalf("acked props %v", a.Props)
	}
	if _, out := do(`{"names":["`+name+`"]}`, yz); len(out.Failed) != 1 || out.Failed[0].Status != 409 {
		t.Fatalf("second bulk ack = %+v", out)
	}
	for _, bad := range []string{`{"names":[]}`, `{"names":"x"}`, `{"nmes":["x"]}`, `not json`} {
		if code, _ := do(bad, yz); code != 400 {
			t.Errorf("body %q = %d, want 400", bad, code)
		}
	}
}

// FuzzBulkAckBody: no body makes POST /api/alerts/ack panic or answer
// other than 200 or 400.
func FuzzBulkAckBody(f *testing.F) {
	f.Add(`{"names":["a.1","b.2"]}`)
	f.Add(`{"names":[]}`)
	f.Add(`{"names":[1,2]}`)
	fx := newFixture(&testing.T{}, "")
	p := auth.Principal{Subject: "op", Role: auth.Operator, Region: auth.CityCode}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/alerts/ack", strings.NewReader(body))
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
		rec := httptest.NewRecorder()
		fx.e.BulkAck(rec, req)
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("body %q = %d", body, rec.Code)
		}
	})
}

// TestNowIsEachChangesClock: a rule's "now" is the clock's time when the
// engine takes the change, read afresh for every change (the engine
// reuses one set of variables from change to change).
func TestNowIsEachChangesClock(t *testing.T) {
	f := newFixture(t, `
rules:
  - name: late
    kind: threshold
    subjects: {layer: devices}
    tiers: [{when: 'values.x > 0.0 && now >= timestamp("2026-11-24T00:30:00Z")', severity: yellow}]
`)
	f.put(twin.Devices, "d1", orb.Point{106.55, 29.55}, map[string]any{"kind": "gauge"})
	f.e.Drain()
	// 07:00 in Chongqing is 23:00 UTC the day before: too early.
	f.reading(t, "d1", f.clk.Now(), map[string]float64{"x": 1})
	if as := f.alerts("late"); len(as) != 0 {
		t.Fatalf("fired at %v: %d alerts", f.clk.Now(), len(as))
	}
	f.reading(t, "d1", f.clk.Now().Add(time.Second), map[string]float64{"x": 0})
	f.clk.Advance(2 * time.Hour)
	f.reading(t, "d1", f.clk.Now(), map[string]float64{"x": 1})
	if as := f.alerts("late"); len(as) != 1 {
		t.Fatalf("not fired at %v (now stale?): %d alerts", f.clk.Now(), len(as))
	}
}
