package incidents

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// twoDistricts puts points west of 106.58 in street 500105002 and the rest
// in street 500103001; every point is in grid "g".
type twoDistricts struct{}

func (twoDistricts) Locate(g orb.Geometry) ([]uint64, *twin.Place) {
	if g.Bound().Center()[0] < 106.58 {
		return []uint64{1}, twin.NewPlace([]string{"500000", "500105", "500105002"}, "g")
	}
	return []uint64{2}, twin.NewPlace([]string{"500000", "500103", "500103001"}, "g")
}

var (
	west = orb.Point{106.5600, 29.5800}
	east = orb.Point{106.6000, 29.5800}
)

func accessSetup(t *testing.T, workers map[string]orb.Point) (*twin.Twin, *Service) {
	t.Helper()
	clk := clock.NewFake(t0)
	tw := twin.New(twin.Options{Clock: clk, Enricher: twoDistricts{}})
	for name, p := range workers {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Workers, name), Geometry: p, Props: twin.NewProps(map[string]any{"status": "available"})}); err != nil {
			t.Fatal(err)
		}
	}
	return tw, New(tw, Options{Clock: clk, Enricher: twoDistricts{}})
}

// TestOutOfRegionReportCreatesNothing: a report outside the reporter's
// region is refused before anything reaches the twin (no change on the
// feed, so nothing is broadcast or stored), and a merge target outside the
// region is never touched.
func TestOutOfRegionReportCreatesNothing(t *testing.T) {
	tw, s := accessSetup(t, nil)
	city := auth.Principal{Subject: "city-op", Role: auth.Operator, Region: auth.CityCode}
	if _, _, err := s.Report(city, Report{Type: "litter", Lon: east[0], Lat: east[1]}); err != nil {
		t.Fatal(err)
	}
	before := tw.Feed().Last()
	westOp := auth.Principal{Subject: "w-op", Role: auth.Operator, Region: "500105"}
	_, _, err := s.Report(westOp, Report{Type: "litter", Lon: east[0], Lat: east[1]})
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("out-of-region report: %v, want ErrForbidden", err)
	}
	if got := tw.Feed().Last(); got != before {
		t.Fatalf("feed moved from %d to %d: the refused report left changes", before, got)
	}
}

// TestReporterIsTheTokenSubject: the body cannot name the reporter.
func TestReporterIsTheTokenSubject(t *testing.T) {
	_, s := accessSetup(t, nil)
	p := auth.Principal{Subject: "alice", Role: auth.Field, Region: "500105002"}
	r, err := DecodeReport([]byte(`{"type":"litter","lon":106.56,"lat":29.58,"reporter":"mallory"}`))
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := s.Report(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if f.Prop("reporter") != "alice" {
		t.Fatalf("reporter %q, want the token's subject alice", f.Prop("reporter"))
	}
}

// TestDispatchScope: a named worker in another district and a name that
// does not exist answer the same error; the nearest search never crosses
// into another district either.
func TestDispatchScope(t *testing.T) {
	_, s := accessSetup(t, map[string]orb.Point{"west-w": {106.5700, 29.5800}, "east-w": {106.5810, 29.5800}})
	city := auth.Principal{Subject: "city-op", Role: auth.Operator, Region: auth.CityCode}
	inc, _, err := s.Report(city, Report{Type: "litter", Lon: 106.5790, Lat: 29.58})
	if err != nil {
		t.Fatal(err)
	}
	// The east worker is nearer (110 m) but across the district line.
	_, errHidden := s.Act(city, inc.ID.Name, "dispatch", Action{Worker: "east-w"})
	_, errMissing := s.Act(city, inc.ID.Name, "dispatch", Action{Worker: "nobody-at-all"})
	if !errors.Is(errHidden, ErrNoSuchWorker) || !errors.Is(errMissing, ErrNoSuchWorker) {
		t.Fatalf("other district's worker: %v; missing worker: %v; want both ErrNoSuchWorker", errHidden, errMissing)
	}
	if strings.Replace(errHidden.Error(), "east-w", "X", 1) != strings.Replace(errMissing.Error(), "nobody-at-all", "X", 1) {
		t.Errorf("messages differ beyond the name: %q vs %q", errHidden, errMissing)
	}
	d, err := s.Act(city, inc.ID.Name, "dispatch", Action{})
	if err != nil || d.Prop("assignee") != "workers/west-w" {
		t.Fatalf("nearest dispatch: %v %v, want workers/west-w", err, d.Prop("assignee"))
	}
	// A street operator of the west cannot assign a worker it cannot see.
	_, s2 := accessSetup(t, map[string]orb.Point{"east-w": {106.5810, 29.5800}})
	inc2, _, _ := s2.Report(city, Report{Type: "litter", Lon: 106.5790, Lat: 29.58})
	westOp := auth.Principal{Subject: "w-op", Role: auth.Operator, Region: "500105002"}
	if _, err := s2.Act(westOp, inc2.ID.Name, "dispatch", Action{Worker: "east-w"}); !errors.Is(err, ErrNoSuchWorker) {
		t.Fatalf("hidden worker: %v", err)
	}
}

// TestConcurrentDispatchClaimsOnce: many incidents dispatched at once over
// few workers; no worker is assigned twice, every holder is busy and no
// worker is left busy without an incident (a claim that lost is released).
//
// How many workers end up holding one is not fixed: a nearest dispatch of
// an incident already given to w0 re-dispatches it to the next nearest and
// frees w0, possibly after every named "w0" dispatch has failed as busy.
func TestConcurrentDispatchClaimsOnce(t *testing.T) {
	workers := map[string]orb.Point{}
	for i := range 3 {
		workers[fmt.Sprintf("w%d", i)] = orb.Point{106.5600 + float64(i)*0.0001, 29.5800}
	}
	tw, s := accessSetup(t, workers)
	city := auth.Principal{Subject: "city-op", Role: auth.Operator, Region: auth.CityCode}
	var names []string
	for i := range 12 {
		f, _, err := s.Report(city, Report{Type: fmt.Sprintf("t%d", i), Lon: west[0], Lat: west[1]})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, f.ID.Name)
	}
	var wg sync.WaitGroup
	for _, n := range names {
		for _, worker := range []string{"", "w0"} { // nearest and named, racing
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Act(city, n, "dispatch", Action{Worker: worker})
				if err != nil && !errors.Is(err, ErrNoWorker) && !errors.Is(err, ErrWorkerBusy) && !errors.Is(err, ErrTransition) {
					t.Errorf("dispatch %s: %v", n, err)
				}
			}()
		}
	}
	wg.Wait()
	holders := map[string][]string{}
	tw.Range(twin.Incidents, func(f *twin.Feature) bool {
		if a := f.Prop("assignee"); a != "" {
			holders[a] = append(holders[a], f.ID.Name)
		}
		return true
	})
	if len(holders) == 0 {
		t.Fatal("no incident was dispatched")
	}
	for w, incs := range holders {
		if len(incs) != 1 {
			t.Errorf("%s holds %d incidents: %v", w, len(incs), incs)
		}
	}
	for name := range workers {
		id := twin.NewID(twin.Workers, name)
		f, _ := tw.Get(id)
		_, holds := holders[id.String()]
		if busy := f.Prop("status") == "busy"; busy != holds {
			t.Errorf("%s status %q but holds %v", name, f.Prop("status"), holders[id.String()])
		}
	}
}

// TestNonPointIncident: an incident registered with a polygon (PUT
// /api/entities) is dispatched from its centroid and never panics.
func TestNonPointIncident(t *testing.T) {
	tw, s := accessSetup(t, map[string]orb.Point{"w": {106.5601, 29.5800}})
	poly := orb.Polygon{{{106.5595, 29.5795}, {106.5605, 29.5795}, {106.5605, 29.5805}, {106.5595, 29.5805}, {106.5595, 29.5795}}}
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Incidents, "area"), Geometry: poly, Props: twin.NewProps(map[string]any{"state": Reported, "type": "flood", "tier": "street"})}); err != nil {
		t.Fatal(err)
	}
	op := auth.Principal{Subject: "op", Role: auth.Operator, Region: "500105"}
	f, err := s.Act(op, "area", "dispatch", Action{})
	if err != nil || f.Prop("assignee") != "workers/w" {
		t.Fatalf("dispatch: %v %v", err, f)
	}
	field := auth.Principal{Subject: "w", Role: auth.Field, Region: "500105002"}
	if _, err := s.Act(field, "area", "accept", Action{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Act(field, "area", "arrive", Action{}); err != nil {
		t.Fatalf("arrive inside the polygon: %v", err)
	}
}
