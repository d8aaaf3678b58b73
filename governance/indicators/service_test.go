package indicators

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
)

type testStore interface {
	twin.Store
	twin.IndicatorStore
}

func stores(t *testing.T) map[string]func() testStore {
	dir := t.TempDir()
	var url string
	return map[string]func() testStore{
		"bolt": func() testStore {
			s, err := boltstore.Open(dir, boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgis": func() testStore {
			if url == "" {
				url = pgtest.New(t)
			}
			s, err := pgstore.Open(context.Background(), url, pgstore.Options{Migrate: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

var (
	jiangbei = []string{"500000", "500105", "500105001"}
	yuzhong  = []string{"500000", "500103", "500103002"}
)

// recount counts, from objects' props alone, what the store's objects say
// happened in the hour holding at: alerts raised (by first) and closed (by
// closed_at), incidents that entered each state. The differential test
// covers the rest; this is the restart check's yardstick.
func recount(objs []*twin.Feature, region string, hour time.Time) map[string]int {
	out := map[string]int{}
	in := func(f *twin.Feature, key string) bool {
		t, ok := propTime(f, key)
		return ok && f.InRegion(region) && t.UTC().Truncate(time.Hour).Equal(hour)
	}
	for _, f := range objs {
		switch f.ID.Layer {
		case twin.Alerts:
			if in(f, "first") {
				out["raised:"+raisedColour(f)]++
			}
			if in(f, "closed_at") {
				out["closed:"+f.Prop("severity")]++
			}
		case twin.Incidents:
			for _, st := range incidentStates {
				if in(f, st.at) {
					out["incident:"+st.state]++
				}
			}
		}
	}
	return out
}

func fromBucket(b Bucket) map[string]int {
	out := map[string]int{}
	for c, n := range b.AlertsRaised {
		out["raised:"+c] += n
	}
	for c, n := range b.AlertsClosed {
		out["closed:"+c] += n
	}
	for s, n := range b.IncidentsEntered {
		out["incident:"+s] += n
	}
	return out
}

// TestRestart: after a crash at any point (here: the consumer flushed
// batch A, then applied batch B and died before flushing it, while the
// store writer had persisted B's objects), the restarted consumer counts B
// once and A not again, on both stores; a replay of A's changes (telemetry
// redelivered after the crash) adds nothing.
func TestRestart(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) { testRestart(t, open) })
	}
}

func testRestart(t *testing.T, open func() testStore) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st := open()
	tw := twin.New(twin.Options{Clock: clk})
	svc := New(tw, st, Options{})
	if err := svc.open(ctx); err != nil {
		t.Fatal(err)
	}
	alert := func(name string, region []string, colour string) {
		t.Helper()
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, name), Place: twin.NewPlace(region, ""), Props: twin.NewProps(map[string]any{
			"state": "open", "severity": colour, "first": ts(clk.Now()), "history": []any{map[string]any{"severity": colour}}})}); err != nil {
			t.Fatal(err)
		}
	}
	closeAlert := func(name string) {
		t.Helper()
		if _, _, err := tw.Update(twin.NewID(twin.Alerts, name), func(f *twin.Feature) (*twin.Feature, error) {
			f.Props.Set("state", "closed")
			f.Props.Set("closed_at", ts(clk.Now()))
			return f, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	incident := func(name string, steps ...string) {
		t.Helper()
		if _, _, err := tw.Update(twin.NewID(twin.Incidents, name), func(f *twin.Feature) (*twin.Feature, error) {
			if f == nil {
				f = &twin.Feature{ID: twin.NewID(twin.Incidents, name), Place: twin.NewPlace(jiangbei, ""), Props: twin.NewProps(map[string]any{"sla": map[string]any{}})}
			}
			for _, s := range steps {
				f.Props.Set("state", s)
				f.Props.Set(s+"_at", ts(clk.Now()))
				sla := map[string]any{}
				for k, v := range f.Props.Get("sla").(map[string]any) {
					sla[k] = v
				}
				switch s {
				case "dispatched":
					sla["accept_by"] = ts(clk.Now().Add(time.Minute))
				case "accepted":
					sla["arrive_by"] = ts(clk.Now().Add(5 * time.Minute))
				}
				f.Props.Set("sla", sla)
				clk.Advance(20 * time.Second)
			}
			return f, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Batch A: flushed.
	alert("a1", jiangbei, "red")
	alert("a2", yuzhong, "yellow")
	incident("i1", "reported", "dispatched")
	for i := range 20 {
		_, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Devices, fmt.Sprintf("d%d", i)), Place: twin.NewPlace(jiangbei, ""), Props: twin.NewProps(map[string]any{"status": map[bool]string{true: "offline", false: "online"}[i%4 == 0]})})
	}
	svc.drain()
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	replayA := tw.Feed().Last()
	// Batch B: applied, never flushed (the crash).
	clk.Advance(10 * time.Second)
	closeAlert("a1")
	alert("a3", jiangbei, "orange")
	incident("i1", "accepted")
	svc.drain()
	svc.close()
	// The store writer had persisted the twin's objects (B included).
	var objs []*twin.Feature
	for _, l := range trackedLayers {
		tw.Range(l, func(f *twin.Feature) bool { objs = append(objs, f); return true })
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a new twin from the stored objects, a new consumer.
	st = open()
	defer st.Close()
	clk.Advance(time.Minute)
	tw2 := twin.New(twin.Options{Clock: clk})
	tw2.Feed().SetLast(replayA + 1000)
	tw2.Load(objs)
	svc2 := New(tw2, st, Options{})
	if err := svc2.open(ctx); err != nil {
		t.Fatal(err)
	}
	// Telemetry redelivered after the crash re-applies A's states.
	for _, f := range objs {
		if f.ID.Name == "a2" || f.ID.Name == "d3" {
			_, _ = tw2.Put(f.Clone())
		}
	}
	svc2.drain()
	if err := svc2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc2.close()
	for _, region := range []string{"500000", "500105", "500105001", "500103"} {
		q := Query{Step: Hour, From: t0, To: t0.Add(time.Hour)}
		s, err := svc2.Series(ctx, region, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Bucket) != 1 {
			t.Fatalf("%s: %d buckets", region, len(s.Bucket))
		}
		got, want := fromBucket(s.Bucket[0]), recount(objs, region, t0)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s after restart: %v, want %v", region, got, want)
		}
		if region == "500105" {
			g := s.Bucket[0].Gauges
			if g == nil || g.DevicesTotal != 20 || g.DevicesOnline != 15 || g.AlertsOpen["orange"] != 1 || g.AlertsOpen["red"] != 0 || g.IncidentsOpen["accepted"] != 1 {
				t.Errorf("%s gauges after restart: %+v", region, g)
			}
			if sla := s.Bucket[0].SLA["accept"]; sla.Met != 1 || sla.Breached != 0 {
				t.Errorf("accept SLA: %+v", sla)
			}
			if m := s.Bucket[0].MedianS["accept"]; m == nil || *m != 30 {
				t.Errorf("median accept: %v", m)
			}
		}
	}
	// The day series holds the same counts.
	d, err := svc2.Series(ctx, "500000", Query{Step: Day, From: bucketStart(Day, t0, svc2.opts.Location), To: bucketEnd(Day, bucketStart(Day, t0, svc2.opts.Location), svc2.opts.Location)})
	if err != nil || len(d.Bucket) != 1 || d.Bucket[0].AlertsRaised["red"] != 1 || d.Bucket[0].AlertsRaised["orange"] != 1 || d.Bucket[0].AlertsClosed["red"] != 1 {
		t.Fatalf("day series: %+v %v", d, err)
	}
}

// TestHandler: the JSON shape, scope (a district sees its own series and
// not another's) and 400s for bad parameters.
func TestHandler(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tw := twin.New(twin.Options{Clock: clk})
	for _, r := range []struct{ code, level string }{{"500105", "district"}, {"500103", "district"}} {
		_, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Regions, r.code), Place: twin.NewPlace([]string{"500000", r.code}, ""), Props: twin.NewProps(map[string]any{"code": r.code, "level": r.level, "name": "R" + r.code})})
	}
	_, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, "a"), Place: twin.NewPlace(jiangbei, ""), Props: twin.NewProps(map[string]any{"state": "open", "severity": "red", "first": ts(t0)})})
	svc := New(tw, st, Options{})
	if err := svc.open(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/regions/{code}/indicators", svc.Handler)
	get := func(path, region string) (int, map[string]any) {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r = r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Role: auth.Operator, Region: region}))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, w.Body.String())
		}
		return w.Code, v
	}
	code, v := get("/api/regions/500105/indicators?step=hour&from=2026-03-02T07:00:00Z&to=2026-03-02T09:10:00Z", "500105")
	if code != 200 || v["name"] != "R500105" || len(v["buckets"].([]any)) != 3 {
		t.Fatalf("series: %d %v", code, v)
	}
	last := v["buckets"].([]any)[2].(map[string]any)
	if last["start"] != "2026-03-02T09:00:00Z" || last["alerts_raised"].(map[string]any)["red"] != 1.0 || last["gauges"].(map[string]any)["alerts_open"].(map[string]any)["red"] != 1.0 {
		t.Fatalf("last bucket: %v", last)
	}
	if first := v["buckets"].([]any)[0].(map[string]any); first["gauges"] != nil || first["median_s"].(map[string]any)["accept"] != nil {
		t.Fatalf("empty bucket: %v", first)
	}
	if code, _ := get("/api/regions/500105/indicators", "500103"); code != 404 {
		t.Errorf("other district: %d, want 404", code)
	}
	if code, _ := get("/api/regions/500000/indicators?step=day", "500000"); code != 200 {
		t.Errorf("city days: %d", code)
	}
	for _, q := range []string{"step=week", "from=yesterday", "from=2026-03-02T10:00:00Z&to=2026-03-02T09:00:00Z", "bbox=1,2,3,4",
		"step=hour&from=2000-01-01T00:00:00Z"} {
		if code, v := get("/api/regions/500105/indicators?"+q, "500000"); code != 400 || v["error"] == nil {
			t.Errorf("%s: %d %v, want 400 with a JSON error", q, code, v)
		}
	}
	if code, _ := get("/api/regions/50x/indicators", "500000"); code != 400 {
		t.Errorf("bad code: %d", code)
	}
}

// TestCutLooseReconciles: a consumer that falls out of the feed window
// (it hung while the window wrapped twice) reconciles with the twin and
// counts every alert once, at the alert's own time.
func TestCutLooseReconciles(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 16})
	svc := New(tw, st, Options{})
	if err := svc.open(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	for i := range 100 {
		first := t0.Add(time.Duration(i) * time.Minute)
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Alerts, fmt.Sprint("a", i)), Place: twin.NewPlace(jiangbei, ""),
			Props: twin.NewProps(map[string]any{"state": "open", "severity": "red", "first": ts(first)})}); err != nil {
			t.Fatal(err)
		}
		// Another object's change after each: 200 changes in all, past the
		// ring's hard cap (eight windows of 16), so the service is cut loose.
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Buildings, "b0"), Props: twin.NewProps(map[string]any{"n": float64(i)})}); err != nil {
			t.Fatal(err)
		}
	}
	svc.drain()
	if n := testutil.ToFloat64(svc.m.resyncs); n != 1 {
		t.Fatalf("resyncs %v, want 1 (the feed window was not left)", n)
	}
	svc.drain() // nothing new: counts nothing again
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := svc.Series(ctx, "500105", Query{Step: Hour, From: t0, To: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := s.Bucket[0].AlertsRaised["red"], s.Bucket[1].AlertsRaised["red"]; a != 60 || b != 40 {
		t.Fatalf("raised per hour %d, %d; want 60, 40", a, b)
	}
	if g := s.Bucket[1].Gauges; g != nil {
		t.Fatalf("gauges sampled at 09:00 landed in 10:00: %+v", g)
	}
	if g := s.Bucket[0].Gauges; g == nil || g.AlertsOpen["red"] != 100 {
		t.Fatalf("open alerts: %+v", g)
	}
}
