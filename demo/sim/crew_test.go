package sim

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/governance/query"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/rules"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
)

// testDesk acts through the real incident service and rules engine, as
// cmd/twin's desk does.
type testDesk struct {
	inc *incidents.Service
	eng *rules.Engine
}

var simOperator = auth.Principal{Subject: "sim-operator", Role: auth.Operator, Region: auth.CityCode}

func (d testDesk) Incident(_ context.Context, worker, name, action, note string, at *orb.Point) error {
	p := simOperator
	if worker != "" {
		p = auth.Principal{Subject: worker, Role: auth.Field, Region: auth.CityCode}
	}
	a := incidents.Action{Note: note}
	if at != nil {
		lon, lat := at[0], at[1]
		a.Lon, a.Lat = &lon, &lat
	}
	_, err := d.inc.Act(p, name, action, a)
	return err
}

func (d testDesk) Alert(_ context.Context, name, action string) error {
	_, err := d.eng.AlertAction(simOperator, name, action) //nolint:contextcheck // the engine detaches its notifications from any caller on purpose
	return err
}

// TestCityMostlyWorks runs the demo city for 45 simulated minutes on a fake
// clock, telemetry, rules, incident SLAs and the simulated people together,
// and checks what a newcomer's first screen would show: SLA compliance
// high, open alerts in the tens, incidents resolved by workers who arrived
// from their own position, and a few late ones escalated. No wall time is
// involved: every step is driven by the fake clock.
func TestCityMostlyWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 90 simulated minutes of the whole demo city")
	}
	c := city(t)
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, shanghai)
	clk := clock.NewFake(start)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	loc := locate.New()
	loc.Reset(c.Features[twin.Regions], c.Features[twin.Grids])
	tw := twin.New(twin.Options{Clock: clk, Enricher: loc, Logger: discard, FeedSize: 1 << 16})
	tw.Load(c.All())
	inc := incidents.New(tw, incidents.Options{Clock: clk, Logger: discard, AutoDispatch: true, Enricher: loc})
	system := auth.Principal{Subject: "rules", Role: auth.Admin, Region: auth.CityCode}
	eng := rules.New(tw, rules.Options{Clock: clk, Logger: discard, Place: loc.Path,
		OpenIncident: func(typ string, at orb.Point, desc string) error {
			_, _, err := inc.Report(system, incidents.Report{Type: typ, Lon: at[0], Lat: at[1], Description: desc})
			return err
		}})
	rs, err := rules.Parse("demo/rules.yaml", demo.Rules)
	if err != nil {
		t.Fatal(err)
	}
	eng.Load(rs)
	s := New(c, Options{Rate: 40, Clock: clk, Logger: discard, Desk: testDesk{inc, eng}, Twin: tw,
		GasAlarmsPerHour: 30, HydrantDropsPerHour: 6, CrewEvery: 5 * time.Second}) // busier than the default, to have enough to count
	ctx := context.Background()
	s.Step(clk.Now())
	const minutes = 45
	for i := 1; i <= minutes*60; i++ {
		clk.Advance(time.Second)
		now := clk.Now()
		for _, m := range s.Step(now) {
			dm, err := telemetry.Decode(m.Payload, now, telemetry.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := telemetry.Apply(tw, strings.TrimPrefix(m.Topic, TopicPrefix), dm, false); err != nil {
				t.Fatal(err)
			}
		}
		eng.Drain()
		if i%5 == 0 { // people, SLA clocks and rule timers every 5 s: plenty at this scale
			s.Act(ctx, now)
			inc.Tick(now)
			eng.Tick(now)
			eng.Drain()
		}
	}
	sum, ok := query.New(tw, query.Options{}).Summarise(simOperator, auth.CityCode)
	if !ok {
		t.Fatal("no city summary")
	}
	open := 0
	for _, n := range sum.AlertsOpen {
		open += n
	}
	var resolvedByWorker, escalated int
	tw.Range(twin.Incidents, func(f *twin.Feature) bool {
		if f.Props.Get("arrived_position") != nil && f.Prop("resolution") != "" {
			resolvedByWorker++
		}
		if n, _ := f.Number("sla_breaches"); n > 0 {
			escalated++
		}
		return true
	})
	t.Logf("after %d simulated minutes: incidents %d by state %v, SLA compliance %.2f, escalated %d, open alerts %v (%d)",
		minutes, sum.SLA.Incidents, sum.IncidentsState, sum.SLA.Compliance, escalated, sum.AlertsOpen, open)
	if sum.SLA.Incidents < 10 {
		t.Fatalf("only %d incidents in %d minutes: nothing to judge", sum.SLA.Incidents, minutes)
	}
	if sum.SLA.Compliance < 0.7 {
		t.Errorf("SLA compliance %.2f, want >= 0.7 (a city that mostly works)", sum.SLA.Compliance)
	}
	if open > 60 {
		t.Errorf("%d open alerts, want tens at most", open)
	}
	if resolvedByWorker < sum.SLA.Incidents/2 {
		t.Errorf("%d of %d incidents resolved by a worker on site", resolvedByWorker, sum.SLA.Incidents)
	}
	if sum.IncidentsState["closed"] == 0 {
		t.Error("operators closed no resolved incident")
	}
	busy := sum.WorkersByState["busy"]
	if busy > sum.SLA.Incidents {
		t.Errorf("%d workers busy for %d incidents: workers not released", busy, sum.SLA.Incidents)
	}
}

// TestHandsOffARealPhone: a worker whose position someone else reported
// (the field page on a real phone) is left alone: the sim sends no fix
// for it until HandsOff has passed.
func TestHandsOffARealPhone(t *testing.T) {
	c := city(t)
	clk := clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, shanghai))
	tw := twin.New(twin.Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tw.Load(c.All())
	s := New(c, Options{Rate: 400, Clock: clk, Desk: testDesk{}, Twin: tw})
	w := c.Features[twin.Workers][0].ID.Name
	sent := func(d time.Duration) int {
		n := 0
		for range int(d / time.Second) {
			clk.Advance(time.Second)
			now := clk.Now()
			for _, m := range s.Step(now) {
				if m.Topic != TopicPrefix+w {
					continue
				}
				n++
				dm, _ := telemetry.Decode(m.Payload, now, telemetry.Limits{})
				if _, err := telemetry.Apply(tw, w, dm, false); err != nil {
					t.Fatal(err)
				}
			}
		}
		return n
	}
	s.Step(clk.Now())
	if n := sent(40 * time.Second); n == 0 {
		t.Fatal("the sim never reported the worker")
	}
	// The phone reports, newer than the sim's last fix.
	phone := telemetry.Message{TS: clk.Now().Add(500 * time.Millisecond), Lon: 106.5, Lat: 29.5, HasPos: true}
	if _, err := telemetry.Apply(tw, w, phone, false); err != nil {
		t.Fatal(err)
	}
	if n := sent(HandsOff - time.Minute); n != 0 {
		t.Fatalf("the sim sent %d fixes for a worker a phone reports", n)
	}
	if n := sent(2 * time.Minute); n == 0 {
		t.Fatal("the sim never took the worker back")
	}
}
