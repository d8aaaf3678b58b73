package acceptance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// TestRulesBridgeMuck: the demo rule bridge-muck (demo/rules.yaml) fires
// for a muck truck crossing the Qiansimen bridge at 08:00 Asia/Shanghai (by
// the telemetry's own timestamp), as an alert in the alerts layer and on
// MQTT twin/alerts/{severity}/{rule}; at 11:00 it does not (CONTRACT §4).
func TestRulesBridgeMuck(t *testing.T) {
	s := startServer(t, serveOpts{demo: true})
	op := s.token(t, "operator", "500000")

	r := s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/bridges/items/qiansimen", op, nil)
	bf, err := geojson.UnmarshalFeature(r.body)
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	bridge, ok := bf.Geometry.(orb.LineString)
	if !ok || len(bridge) < 2 {
		t.Fatalf("qiansimen geometry %T, want a LineString", bf.Geometry)
	}
	// The rule counts a crossing when a truck travels at least half the
	// deck (rules/geofence.go): two fixes about 90 m beyond either end,
	// north (Jiangbei) first, then south (Yuzhong).
	a, b := bridge[0], bridge[len(bridge)-1]
	if a[1] > b[1] {
		a, b = b, a
	}
	north := orb.Point{b[0] + 0.1*(b[0]-a[0]), b[1] + 0.1*(b[1]-a[1])}
	south := orb.Point{a[0] - 0.1*(b[0]-a[0]), a[1] - 0.1*(b[1]-a[1])}

	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	y := time.Now().In(sh).AddDate(0, 0, -1) // yesterday: never in the future
	at := func(hour int) time.Time { return time.Date(y.Year(), y.Month(), y.Day(), hour, 0, 0, 0, sh) }

	mc := dialMQTT(t, s.mqttURL)
	mc.subscribe(t, "twin/alerts/+/+")
	sfx := suffix(t)
	cross := func(name string, t0 time.Time) {
		t.Helper()
		s.putVehicle(t, op, name, north[0], north[1], map[string]any{"kind": "muck_truck", "plate": "渝A·" + sfx})
		mc.publish(t, "twin/telemetry/"+name, fix(t0, north[0], north[1]))
		mc.publish(t, "twin/telemetry/"+name, fix(t0.Add(90*time.Second), south[0], south[1]))
		eventually(t, 10*time.Second, name+" across the bridge", func() bool {
			f, _ := s.get(t, op, "vehicles", name)
			return f.Geometry != nil && near(f.point(t), south[0], south[1])
		})
	}
	alertsFor := func(subject string) []feature {
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items?rule=bridge-muck&limit=1000", op, nil).json(t, &fc)
		var out []feature
		for _, f := range fc.Features {
			if f.Props["subject"] == subject {
				out = append(out, f)
			}
		}
		return out
	}

	// 11:00 first, then 08:00: the rules engine follows the feed in order,
	// so once the 08:00 truck's alert is there the 11:00 truck has been
	// judged too.
	// A websocket watching the alerts layer around the bridge.
	ws := dialWS(t, s, op)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"alerts"},
		"bbox": []float64{south[0] - 0.01, south[1] - 0.01, north[0] + 0.01, north[1] + 0.01}})
	ws.next(t, "alerts snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })

	late, early := "acc-mt-late-"+sfx, "acc-mt-early-"+sfx
	cross(late, at(11))
	cross(early, at(8))

	var alerts []feature
	eventually(t, 15*time.Second, "bridge-muck alert for "+early, func() bool {
		alerts = alertsFor("vehicles/" + early)
		return len(alerts) > 0
	})
	if len(alerts) != 1 {
		t.Errorf("%d alerts for one crossing, want 1 (repeats update one open alert)", len(alerts))
	}
	al := alerts[0]
	if al.Layer != "alerts" || al.Props["rule"] != "bridge-muck" || al.Props["severity"] != "orange" || al.Props["state"] != "open" {
		t.Errorf("alert %s props %v, want rule bridge-muck, severity orange, state open", al.ID, al.Props)
	}
	if al.Props["tier"] == nil {
		t.Errorf("alert %s has no tier", al.ID)
	}
	m := mc.next(t, 10*time.Second, "alert on twin/alerts/+/+", func(m mqttMsg) bool {
		return strings.Contains(string(m.payload), early)
	})
	if m.topic != "twin/alerts/orange/bridge-muck" {
		t.Errorf("alert published on %s, want twin/alerts/orange/bridge-muck", m.topic)
	}
	var pub map[string]any
	if err := json.Unmarshal(m.payload, &pub); err != nil {
		t.Errorf("MQTT alert is not JSON: %v", err)
	}

	wd := ws.next(t, "alert delta on the websocket", func(m wsMsg) bool {
		if m.Op == "delta" && m.Feature.Props["subject"] == "vehicles/"+late {
			t.Errorf("websocket alert for the 11:00 crossing: %v", m.Feature.Props)
		}
		return m.Op == "delta" && m.Feature.Props["subject"] == "vehicles/"+early
	})
	if wd.Kind != "upsert" || wd.Feature.ID != al.ID {
		t.Errorf("websocket alert delta %s %s, want upsert of %s", wd.Kind, wd.Feature.ID, al.ID)
	}

	var sum struct {
		AlertsOpen map[string]int `json:"alerts_open"`
	}
	s.must(t, http.StatusOK, http.MethodGet, "/api/regions/500000/summary", op, nil).json(t, &sum)
	if sum.AlertsOpen["orange"] < 1 {
		t.Errorf("city summary alerts_open %v, want at least one orange", sum.AlertsOpen)
	}

	// A bridge crossing concerns both districts it connects; a third
	// district does not see it.
	for code, want := range map[string]int{"500103": http.StatusOK, "500105": http.StatusOK, "500108": http.StatusNotFound} {
		dt := s.token(t, "operator", code)
		if r := s.do(t, http.MethodGet, "/ogc/collections/alerts/items/"+strings.TrimPrefix(al.ID, "alerts/"), dt, nil); r.status != want {
			t.Errorf("alert %s for a %s token: %d, want %d", al.ID, code, r.status, want)
		}
	}

	// Alert actions record actor and time (CONTRACT §5).
	alertName := strings.TrimPrefix(al.ID, "alerts/")
	field := s.token(t, "field", "500000")
	s.must(t, http.StatusForbidden, http.MethodPost, "/api/alerts/"+alertName+"/ack", field, nil)
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/alerts/no-such-alert/ack", op, nil)
	acker := s.token(t, "operator", "500000", "--subject", "duty-officer-"+sfx)
	s.must(t, http.StatusOK, http.MethodPost, "/api/alerts/"+alertName+"/ack", acker, nil)
	var acked feature
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items/"+alertName, op, nil).json(t, &acked)
	if acked.Props["state"] != "acked" || acked.Props["acked_by"] != "duty-officer-"+sfx || acked.Props["acked_at"] == nil {
		t.Errorf("after ack: state %v by %v at %v", acked.Props["state"], acked.Props["acked_by"], acked.Props["acked_at"])
	}
	s.must(t, http.StatusOK, http.MethodPost, "/api/alerts/"+alertName+"/close", acker, nil)
	var closed feature
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items/"+alertName, op, nil).json(t, &closed)
	if closed.Props["state"] != "closed" || closed.Props["closed_by"] != "duty-officer-"+sfx || closed.Props["closed_at"] == nil {
		t.Errorf("after close: state %v by %v at %v", closed.Props["state"], closed.Props["closed_by"], closed.Props["closed_at"])
	}

	if got := alertsFor("vehicles/" + late); len(got) != 0 {
		t.Errorf("a crossing at 11:00 raised %d bridge-muck alerts, want none: %v", len(got), got[0].Props)
	}
	for len(mc.msgs) > 0 {
		if m := <-mc.msgs; strings.Contains(string(m.payload), late) {
			t.Errorf("alert for the 11:00 crossing published on %s", m.topic)
		}
	}

	// The same crossing as a GPS trace through `twin replay --as muck_truck`
	// (CONTRACT §1), which registers the truck and publishes over MQTT.
	replayed := "acc-mt-replay-" + sfx
	csv := "id,time,lon,lat\n"
	for i, p := range []orb.Point{north, {(a[0] + b[0]) / 2, (a[1] + b[1]) / 2}, south} {
		csv += fmt.Sprintf("%s,%s,%.7f,%.7f\n", replayed, at(8).Add(time.Duration(i)*45*time.Second).Format(time.RFC3339), p[0], p[1])
	}
	trace := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(trace, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	runTwin(t, true, "replay", "--mqtt", s.mqttURL, "--as", "muck_truck", "--server", s.url, "--token", op, "--speed", "inf", trace)
	eventually(t, 15*time.Second, "bridge-muck alert for the replayed trace", func() bool { return len(alertsFor("vehicles/"+replayed)) == 1 })
	if f, _ := s.get(t, op, "vehicles", replayed); f.Props["kind"] != "muck_truck" || !near(f.point(t), south[0], south[1]) {
		t.Errorf("replayed truck: kind %v at %v, want muck_truck at %v", f.Props["kind"], f.point(t), south)
	}
}
