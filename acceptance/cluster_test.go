package acceptance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// TestTwoServersOneTwin (issue 13): two `twin serve` on one PostGIS, one
// nats-server and the shared Mosquitto are one twin. A write on the
// follower is visible there before it answers and on the leader; both
// servers' websockets carry the change under the same seq, and a client
// resumes on the other server with that seq without a gap; one gas
// reading makes one alert (one MQTT message) and one incident for the
// whole cluster; kill -9 of the leader mid-stream: the other takes over,
// history holds every fix exactly once, and writes work on it.
func TestTwoServersOneTwin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the two-server twin")
	}
	nats := startNATS(t)
	db := pgtest.New(t)
	key := writeKey(t)
	sfx := suffix(t)
	rule := "gas-" + sfx
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`rules:
  - name: `+rule+`
    kind: threshold
    message: gas above the alarm level
    subjects: {layer: devices, when: 'obj.kind == "septic_gas"'}
    incident: gas_leak
    tiers:
      - {when: '"ch4" in values && values.ch4 >= 1.0', severity: yellow}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--nats", nats, "--rules", rules}
	a := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: args})
	eventually(t, 30*time.Second, "A leads", func() bool { return a.metrics(t, "twin_changelog_leader")[""] == 1 })
	b := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: args})
	if b.metrics(t, "twin_changelog_leader")[""] != 0 {
		t.Fatal("B leads too")
	}
	tok := a.token(t, "operator", "500000")

	// 1. A write on the follower: visible there when it answers, on the
	// leader, and on both websockets under one seq.
	lon0, lat0 := 106.51, 29.51
	bbox := []float64{106.5, 29.5, 106.6, 29.6}
	sub := map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox}
	wa, wb := dialWS(t, a, tok), dialWS(t, b, tok)
	wa.send(t, sub)
	wb.send(t, sub)
	wa.next(t, "snapshot on A", func(m wsMsg) bool { return m.Op == "snapshot" })
	wb.next(t, "snapshot on B", func(m wsMsg) bool { return m.Op == "snapshot" })
	name := "acc-two-" + sfx
	id := "vehicles/" + name
	r := b.do(t, http.MethodPut, "/api/entities/vehicles/"+name, tok, pointFeature(lon0, lat0, map[string]any{"kind": "patrol"}))
	if r.status != http.StatusCreated {
		t.Fatalf("PUT on the follower: %d %s", r.status, truncate(r.body))
	}
	seq, _ := strconv.ParseUint(r.header.Get("X-Twin-Seq"), 10, 64)
	if _, ok := b.get(t, tok, "vehicles", name); !ok {
		t.Fatal("the follower answered its PUT before its twin had it (read your writes)")
	}
	t0 := time.Now()
	eventually(t, 10*time.Second, "the PUT on the leader", func() bool { _, ok := a.get(t, tok, "vehicles", name); return ok })
	t.Logf("PUT on B (seq %d) visible on A after %s", seq, time.Since(t0).Round(time.Millisecond))
	da := wa.next(t, "delta on A", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	dbm := wb.next(t, "delta on B", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	if da.Seq != dbm.Seq || da.Seq == 0 || da.Seq > seq {
		t.Fatalf("one change, seqs: A %d, B %d, PUT answered %d", da.Seq, dbm.Seq, seq)
	}
	// A client of A resumes on B with A's seq: the next change, no gap.
	a.putVehicle(t, tok, name, lon0+0.001, lat0, nil)
	d2 := wa.next(t, "second delta on A", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	wr := dialWS(t, b, tok)
	wr.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox, "since": da.Seq})
	first := wr.next(t, "resume on B", func(m wsMsg) bool { return m.Op == "delta" || m.Op == "resync" || m.Op == "snapshot" })
	if first.Op != "delta" || first.Seq != d2.Seq || first.Feature.ID != id {
		t.Fatalf("resume on B with A's since=%d: %s seq %d (%s), want delta %d", da.Seq, first.Op, first.Seq, first.Feature.ID, d2.Seq)
	}

	// 2. One gas reading: one alert, one MQTT message, one incident.
	mc := dialMQTT(t, mosquitto)
	mc.subscribe(t, "twin/alerts/+/"+rule)
	dev := "acc-gas-" + sfx
	dlon, dlat := 106.55, 29.55
	r = a.do(t, http.MethodPut, "/api/entities/devices/"+dev, tok, pointFeature(dlon, dlat, map[string]any{"kind": "septic_gas"}))
	if r.status != http.StatusCreated {
		t.Fatalf("PUT device: %d %s", r.status, truncate(r.body))
	}
	gas, _ := json.Marshal(map[string]any{"ts": time.Now().UTC().Format(time.RFC3339Nano), "values": map[string]float64{"ch4": 3.0}})
	mc.publish(t, "twin/telemetry/"+dev, gas)
	mc.next(t, 20*time.Second, "the alert on MQTT", func(m mqttMsg) bool { return true })
	box := fmt.Sprintf("%f,%f,%f,%f", dlon-0.001, dlat-0.001, dlon+0.001, dlat+0.001)
	count := func(s *server, layer string, keep func(props map[string]any) bool) int {
		r := s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/"+layer+"/items?limit=1000&bbox="+box, tok, nil)
		var fc struct {
			Features []struct {
				Properties map[string]any `json:"properties"`
			} `json:"features"`
		}
		r.json(t, &fc)
		n := 0
		for _, f := range fc.Features {
			if keep(f.Properties) {
				n++
			}
		}
		return n
	}
	isAlert := func(p map[string]any) bool { return p["rule"] == rule }
	isIncident := func(p map[string]any) bool { return p["type"] == "gas_leak" }
	for _, s := range []*server{a, b} {
		eventually(t, 10*time.Second, "the alert and the incident on "+s.url, func() bool {
			return count(s, "alerts", isAlert) >= 1 && count(s, "incidents", isIncident) >= 1
		})
	}
	time.Sleep(2 * time.Second) // room for a second server's duplicate to show
	for _, s := range []*server{a, b} {
		if n, m := count(s, "alerts", isAlert), count(s, "incidents", isIncident); n != 1 || m != 1 {
			t.Errorf("%s: %d alerts, %d incidents for one gas reading; want 1 and 1", s.url, n, m)
		}
	}
	select {
	case m := <-mc.msgs:
		t.Errorf("a second alert message on MQTT: %s %s", m.topic, m.payload)
	default:
	}

	// 3. kill -9 of the leader mid-stream.
	const vehicles, perVehicle = 5, 60
	names := make([]string, vehicles)
	ft0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for v := range names {
		names[v] = fmt.Sprintf("acc-two-%d-%s", v, sfx)
		a.putVehicle(t, tok, names[v], 106.5, 29.5, nil)
	}
	pub := newPacedPublisher(t)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	for k := range perVehicle {
		if k == perVehicle/3 {
			pub.wait(t)
			a.kill9(t)
			t0 = time.Now()
		}
		for v, n := range names {
			pub.publish(t, "twin/telemetry/"+n, fix(ft0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
		}
	}
	pub.wait(t)
	eventually(t, 60*time.Second, "B takes over", func() bool { return b.metrics(t, "twin_changelog_leader")[""] == 1 })
	t.Logf("B leads %s after the kill -9", time.Since(t0).Round(100*time.Millisecond))
	for v, n := range names {
		eventually(t, 60*time.Second, n+" at its last fix on B", func() bool {
			f, _ := b.get(t, tok, "vehicles", n)
			return near(f.point(t), lon(perVehicle-1), lat(v))
		})
		eventually(t, 30*time.Second, n+": every fix in history", func() bool {
			return len(b.historyTimes(t, tok, "vehicles", n)) >= perVehicle
		})
		if h := b.historyTimes(t, tok, "vehicles", n); len(h) != perVehicle {
			t.Errorf("%s: %d history rows, want %d (each fix once)", n, len(h), perVehicle)
		}
	}
	// Writes work on the new leader.
	b.putVehicle(t, tok, name, lon0, lat0+0.001, nil)
	if strings.Contains(b.logs.String(), "fell out of step") {
		t.Errorf("B lost step with the change log:\n%s", b.tail(20))
	}
}
