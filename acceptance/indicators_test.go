package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// indicatorSeries is the part of GET /api/regions/{code}/indicators the
// test compares.
type indicatorSeries struct {
	Region  string `json:"region"`
	Step    string `json:"step"`
	Buckets []struct {
		Start            string         `json:"start"`
		AlertsRaised     map[string]int `json:"alerts_raised"`
		AlertsClosed     map[string]int `json:"alerts_closed"`
		IncidentsEntered map[string]int `json:"incidents_entered"`
		SLA              map[string]struct {
			Met      int `json:"met"`
			Breached int `json:"breached"`
		} `json:"sla"`
		MedianS map[string]*float64 `json:"median_s"`
		Gauges  *struct {
			AlertsOpen    map[string]int `json:"alerts_open"`
			DevicesTotal  int            `json:"devices_total"`
			DevicesOnline int            `json:"devices_online"`
		} `json:"gauges"`
	} `json:"buckets"`
}

// flat turns a series into "start|what|key" -> n, zeros left out.
func (s indicatorSeries) flat() map[string]int {
	out := map[string]int{}
	for _, b := range s.Buckets {
		add := func(what string, m map[string]int) {
			for k, n := range m {
				if n != 0 {
					out[b.Start+"|"+what+"|"+k] += n
				}
			}
		}
		add("raised", b.AlertsRaised)
		add("closed", b.AlertsClosed)
		add("incident", b.IncidentsEntered)
		for step, o := range b.SLA {
			add("met", map[string]int{step: o.Met})
			add("breached", map[string]int{step: o.Breached})
		}
	}
	return out
}

// storeRow is an alert or incident as the PostGIS store holds it.
type storeRow struct {
	layer  string
	region []string
	props  map[string]any
}

func readStoreRows(t *testing.T, db string) []storeRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var out []storeRow
	for _, layer := range []string{"alerts", "incidents"} {
		rows, err := c.Query(ctx, `SELECT region, props::text FROM `+layer)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			r := storeRow{layer: layer}
			var props string
			if err := rows.Scan(&r.region, &props); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(props), &r.props); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// recountFromStore recomputes one region's hourly flows from the stored
// alerts and incidents alone, with the definitions README "Indicators over
// time" gives: an alert raised at `first` in its first history colour,
// closed at `closed_at`; an incident entering each state at its `<state>_at`;
// an SLA step breached at its escalation, else met or breached by its
// action's time against its deadline.
func recountFromStore(rows []storeRow, region string, from, to time.Time) map[string]int {
	out := map[string]int{}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	at := func(m map[string]any, k string) (time.Time, bool) {
		t, err := time.Parse(time.RFC3339Nano, str(m, k))
		return t, err == nil
	}
	count := func(t time.Time, what, key string) {
		if t.Before(from) || !t.Before(to) {
			return
		}
		out[t.UTC().Truncate(time.Hour).Format(time.RFC3339)+"|"+what+"|"+key]++
	}
	for _, r := range rows {
		in := slices.Contains(r.region, region)
		if r.layer == "alerts" {
			if extra, ok := r.props["regions"].([]any); ok {
				for _, c := range extra {
					if s, _ := c.(string); s == region || strings.HasPrefix(s, region) || region == "500000" {
						in = true
					}
				}
			}
		}
		if !in {
			continue
		}
		p := r.props
		switch r.layer {
		case "alerts":
			colour := str(p, "severity")
			if h, ok := p["history"].([]any); ok && len(h) > 0 {
				if e, ok := h[0].(map[string]any); ok && str(e, "severity") != "" {
					colour = str(e, "severity")
				}
			}
			if t, ok := at(p, "first"); ok {
				count(t, "raised", colour)
			}
			if t, ok := at(p, "closed_at"); ok {
				count(t, "closed", str(p, "severity"))
			}
		case "incidents":
			for _, s := range []string{"reported", "dispatched", "accepted", "arrived", "resolved", "closed"} {
				if t, ok := at(p, s+"_at"); ok {
					count(t, "incident", s)
				}
			}
			sla, _ := p["sla"].(map[string]any)
			breached, _ := p["breached"].([]any)
			for _, st := range [][3]string{{"accept", "accept_by", "accepted_at"}, {"arrive", "arrive_by", "arrived_at"}, {"report", "report_by", "resolved_at"}} {
				if slices.Contains(breached, any(st[0])) {
					for _, e := range p["history"].([]any) {
						if m, _ := e.(map[string]any); str(m, "action") == "escalate:"+st[0] {
							t, _ := at(m, "at")
							count(t, "breached", st[0])
						}
					}
					continue
				}
				by, ok1 := at(sla, st[1])
				done, ok2 := at(p, st[2])
				if ok1 && ok2 {
					if done.After(by) {
						count(done, "breached", st[0])
					} else {
						count(done, "met", st[0])
					}
				}
			}
		}
	}
	return out
}

func diffCounts(got, want map[string]int) string {
	var d []string
	for k, v := range want {
		if got[k] != v {
			d = append(d, fmt.Sprintf("%s: got %d want %d", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s: got %d want 0", k, v))
		}
	}
	sort.Strings(d)
	if len(d) > 12 {
		d = append(d[:12], fmt.Sprintf("... %d more", len(d)-12))
	}
	return strings.Join(d, "\n")
}

// TestIndicatorsSimulatedDay (issue 15 item 4): septic-gas sensors of our
// own report a simulated day (yesterday, hour by hour, by the telemetry's
// own timestamps): alarms in three colours that clear again, each opening
// a gas-leak incident that the demo's workers are dispatched to and some
// accept. The hourly indicators of the city and of the sensors' district
// equal the counts recomputed from the alerts and incidents rows in
// PostGIS; after kill -9 and a restart on the same store they still do
// (nothing counted twice, nothing lost), and counting goes on.
func TestIndicatorsSimulatedDay(t *testing.T) {
	db := pgtest.New(t)
	o := serveOpts{demo: true, db: db, data: t.TempDir(), key: writeKey(t)}
	s := startServer(t, o)
	op := s.token(t, "operator", "500000")
	anchor, ok := s.get(t, op, "workers", "w0001")
	if !ok {
		t.Fatal("demo worker w0001 missing")
	}
	b := anchor.point(t)
	sfx := suffix(t)
	var names []string
	district := ""
	for i := range 5 {
		name := fmt.Sprintf("accgas-%s-%d", sfx, i)
		// 150 m apart: every sensor's incident is its own (merging is 50 m).
		r := s.do(t, http.MethodPut, "/api/entities/devices/"+name, op, pointFeature(b[0]+0.0015*float64(i), b[1]+0.0004, map[string]any{"kind": "septic_gas"}))
		if r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Fatalf("PUT device: %d %s", r.status, truncate(r.body))
		}
		var f feature
		r.json(t, &f)
		if len(f.Region) < 2 {
			t.Fatalf("device %s placed outside the city: %v", name, f.Region)
		}
		if district == "" {
			district = f.Region[1]
		}
		names = append(names, name)
	}
	sh := time.FixedZone("CST", 8*3600)
	y := time.Now().In(sh).AddDate(0, 0, -1)
	day := time.Date(y.Year(), y.Month(), y.Day(), 0, 0, 0, 0, sh)
	levels := []float64{0.2, 1.2, 2.6, 4.2} // clear, yellow, orange, red
	var lines []any
	for i, name := range names {
		for h := range 24 {
			lvl := levels[(h+i)%len(levels)]
			lines = append(lines,
				map[string]any{"id": name, "ts": day.Add(time.Duration(h)*time.Hour + time.Duration(5+i)*time.Minute).Format(time.RFC3339), "values": map[string]any{"ch4": lvl}},
				map[string]any{"id": name, "ts": day.Add(time.Duration(h)*time.Hour + 40*time.Minute).Format(time.RFC3339), "values": map[string]any{"ch4": 0.1}})
		}
	}
	for _, r := range s.postTelemetry(t, op, lines...) {
		if r.Outcome != "applied" {
			t.Fatalf("telemetry line %d: %+v", r.Line, r)
		}
	}
	// Accept the gas-leak incidents the workers were dispatched to.
	var accepted int
	eventually(t, 30*time.Second, "gas-leak incidents dispatched", func() bool {
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/incidents/items?type=gas_leak&limit=1000", op, nil).json(t, &fc)
		for _, f := range fc.Features {
			if f.Props["state"] != "dispatched" || accepted >= 3 {
				continue
			}
			worker := strings.TrimPrefix(fmt.Sprint(f.Props["assignee"]), "workers/")
			field := s.token(t, "field", f.Region[len(f.Region)-1], "--subject", worker)
			if r := s.do(t, http.MethodPost, "/api/incidents/"+strings.TrimPrefix(f.ID, "incidents/")+"/accept", field, nil); r.status == http.StatusOK {
				accepted++
			}
		}
		return accepted > 0
	})

	from := day.Add(-24 * time.Hour)
	to := time.Now().Add(2 * time.Hour).Truncate(time.Hour)
	check := func(s *server, when string) {
		t.Helper()
		var last string
		eventually(t, 60*time.Second, "indicators equal the store's counts "+when, func() bool {
			rows := readStoreRows(t, db)
			last = ""
			for _, code := range []string{"500000", district} {
				var ser indicatorSeries
				q := url.Values{"step": {"hour"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
				s.must(t, http.StatusOK, http.MethodGet, "/api/regions/"+code+"/indicators?"+q.Encode(), op, nil).json(t, &ser)
				if d := diffCounts(ser.flat(), recountFromStore(rows, code, from, to)); d != "" {
					last += code + ":\n" + d + "\n"
				}
			}
			return last == ""
		})
		if last != "" {
			t.Fatalf("%s:\n%s", when, last)
		}
	}
	check(s, "after the simulated day")

	// The day's buckets carry the same figures; yesterday's 24 hours each
	// raised alerts of our sensors.
	var days indicatorSeries
	q := url.Values{"step": {"day"}, "from": {day.Format(time.RFC3339)}, "to": {day.Add(24 * time.Hour).Format(time.RFC3339)}}
	s.must(t, http.StatusOK, http.MethodGet, "/api/regions/"+district+"/indicators?"+q.Encode(), op, nil).json(t, &days)
	raised := 0
	for _, n := range days.Buckets[0].AlertsRaised {
		raised += n
	}
	if len(days.Buckets) != 1 || raised < 5*18 {
		t.Fatalf("yesterday in days: %d buckets, %d alerts raised (want at least %d)", len(days.Buckets), raised, 5*18)
	}
	// Gauges are sampled into the current hour at the consumer's next flush
	// (every second).
	eventually(t, 30*time.Second, "the current hour's gauges", func() bool {
		var now indicatorSeries
		s.must(t, http.StatusOK, http.MethodGet, "/api/regions/"+district+"/indicators", op, nil).json(t, &now)
		g := now.Buckets[len(now.Buckets)-1].Gauges
		if g == nil || g.DevicesTotal < 5 {
			return false
		}
		return true
	})

	// kill -9 right after more activity, restart on the same store.
	res := s.postTelemetry(t, op, map[string]any{"id": names[0], "ts": time.Now().UTC().Format(time.RFC3339Nano), "values": map[string]any{"ch4": 4.5}})
	if len(res) != 1 || res[0].Outcome != "applied" {
		t.Fatalf("telemetry: %+v", res)
	}
	s.kill9(t)
	s2 := startServer(t, o)
	check(s2, "after kill -9 and a restart")
	res = s2.postTelemetry(t, op, map[string]any{"id": names[1], "ts": time.Now().UTC().Format(time.RFC3339Nano), "values": map[string]any{"ch4": 4.5}})
	if len(res) != 1 || (res[0].Outcome != "applied" && res[0].Outcome != "accepted") {
		t.Fatalf("telemetry after restart: %+v", res)
	}
	check(s2, "after more alarms on the restarted server")
}
