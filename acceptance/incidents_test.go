package acceptance

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// incidentAnswer is the body of POST /api/incidents.
type incidentAnswer struct {
	Merged   bool    `json:"merged"`
	Incident feature `json:"incident"`
}

// TestIncidentsHTTP: duplicate reports merge; dispatch, accept, arrive and
// resolve through HTTP with a field token for the assigned worker, with the
// lifecycle's refusals (CONTRACT §5).
func TestIncidentsHTTP(t *testing.T) {
	s := startServer(t, serveOpts{demo: true})
	op := s.token(t, "operator", "500000")
	anchor, ok := s.get(t, op, "workers", "w0001")
	if !ok {
		t.Fatal("demo worker w0001 missing")
	}
	b := anchor.point(t) // a point on a street of the demo city
	sfx := suffix(t)
	worker := "accw-" + sfx
	const east400m = 0.0041 // degrees of longitude at 29.5° N
	wr := s.do(t, http.MethodPut, "/api/entities/workers/"+worker, op, pointFeature(b[0]+east400m, b[1], map[string]any{"status": "available", "name": "Acceptance worker"}))
	if wr.status != http.StatusCreated {
		t.Fatalf("PUT worker: %d %s", wr.status, truncate(wr.body))
	}

	typ := "acc-" + sfx // a type of our own: never merges into demo incidents
	var first, second incidentAnswer
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", op, map[string]any{"type": typ, "lon": b[0], "lat": b[1], "description": "manhole cover missing"}).json(t, &first)
	if first.Merged || !strings.HasPrefix(first.Incident.ID, "incidents/") {
		t.Fatalf("first report: %+v", first)
	}
	const north20m = 0.00018
	s.must(t, http.StatusOK, http.MethodPost, "/api/incidents", op, map[string]any{"type": typ, "lon": b[0], "lat": b[1] + north20m, "description": "same, again"}).json(t, &second)
	if !second.Merged || second.Incident.ID != first.Incident.ID {
		t.Fatalf("second report within 50 m: merged %v into %s, want merged into %s", second.Merged, second.Incident.ID, first.Incident.ID)
	}
	if n, _ := second.Incident.Props["reports"].(float64); n != 2 {
		t.Errorf("reports = %v, want 2", second.Incident.Props["reports"])
	}
	// Far away (2 km): a new incident.
	var third incidentAnswer
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", op, map[string]any{"type": typ, "lon": b[0], "lat": b[1] + 0.018}).json(t, &third)
	if third.Merged || third.Incident.ID == first.Incident.ID {
		t.Errorf("report 2 km away merged: %+v", third)
	}

	name := strings.TrimPrefix(first.Incident.ID, "incidents/")
	act := func(token, action string, body any, want int) feature {
		t.Helper()
		var f feature
		r := s.must(t, want, http.MethodPost, "/api/incidents/"+name+"/"+action, token, body)
		if want == http.StatusOK {
			r.json(t, &f)
		} else {
			var e struct {
				Error string `json:"error"`
			}
			r.json(t, &e)
			if e.Error == "" {
				t.Errorf("%s refused without a JSON error: %s", action, r.body)
			}
		}
		return f
	}
	d := act(op, "dispatch", map[string]any{"worker": worker}, http.StatusOK)
	if d.Props["assignee"] != "workers/"+worker || d.Props["state"] != "dispatched" {
		t.Fatalf("after dispatch: assignee %v state %v", d.Props["assignee"], d.Props["state"])
	}
	sla, _ := d.Props["sla"].(map[string]any)
	at, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(d.Props["dispatched_at"]))
	by, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(sla["accept_by"]))
	if err1 != nil || err2 != nil || by.Sub(at) != time.Minute {
		t.Errorf("accept SLA: dispatched_at %v, sla %v; want accept_by 1 min after dispatch", d.Props["dispatched_at"], sla)
	}
	street := first.Incident.Region[len(first.Incident.Region)-1]
	field := s.token(t, "field", street, "--subject", worker)
	stranger := s.token(t, "field", street, "--subject", "w9999")
	act(stranger, "accept", nil, http.StatusForbidden)

	if f := act(field, "accept", nil, http.StatusOK); f.Props["state"] != "accepted" {
		t.Errorf("after accept: state %v", f.Props["state"])
	}
	act(field, "resolve", nil, http.StatusConflict) // before arriving
	act(field, "arrive", nil, http.StatusConflict)  // 400 m away

	res := s.postTelemetry(t, op, map[string]any{"id": worker, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": b[0] + 0.0001, "lat": b[1]})
	if len(res) != 1 || res[0].Outcome != "applied" {
		t.Fatalf("worker telemetry: %+v", res)
	}
	if f := act(field, "arrive", nil, http.StatusOK); f.Props["state"] != "arrived" {
		t.Errorf("after arrive: state %v", f.Props["state"])
	}
	if f := act(field, "resolve", map[string]any{"note": "cover replaced"}, http.StatusOK); f.Props["state"] != "resolved" {
		t.Errorf("after resolve: state %v", f.Props["state"])
	}
	act(field, "close", nil, http.StatusForbidden) // closing needs an operator
	if f := act(op, "close", nil, http.StatusOK); f.Props["state"] != "closed" {
		t.Errorf("after close: state %v", f.Props["state"])
	}
	if w, _ := s.get(t, op, "workers", worker); w.Props["status"] != "available" {
		t.Errorf("worker status after close = %v, want available", w.Props["status"])
	}
}
