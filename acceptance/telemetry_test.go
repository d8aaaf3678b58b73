package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// mosquitto is the URL of this test binary's own Mosquitto (TestMain
// starts it; see internal/mqtttest).
var mosquitto string

func fix(ts time.Time, lon, lat float64) []byte {
	b, _ := json.Marshal(map[string]any{"ts": ts.UTC().Format(time.RFC3339Nano), "lon": lon, "lat": lat, "speed_kmh": 30.0, "heading": 90.0})
	return b
}

func near(p [2]float64, lon, lat float64) bool {
	return math.Abs(p[0]-lon) < 1e-7 && math.Abs(p[1]-lat) < 1e-7
}

// historyTimes returns the ts of every state in the object's history.
func (s *server) historyTimes(t testing.TB, token, layer, name string) []time.Time {
	t.Helper()
	r := s.must(t, http.StatusOK, http.MethodGet, "/api/entities/"+layer+"/"+name+"/history?limit=1000&order=asc", token, nil)
	var fc struct {
		Features []struct {
			Properties struct {
				TS string `json:"ts"`
			} `json:"properties"`
		} `json:"features"`
	}
	r.json(t, &fc)
	var out []time.Time
	for _, f := range fc.Features {
		ts, err := time.Parse(time.RFC3339Nano, f.Properties.TS)
		if err != nil {
			t.Fatalf("history ts %q: %v", f.Properties.TS, err)
		}
		out = append(out, ts)
	}
	return out
}

// TestTelemetryMosquitto: telemetry through the real Mosquitto: positions
// and versions, duplicates, out-of-order history, dead letters with metrics,
// and the HTTP NDJSON twin of it (CONTRACT §3).
func TestTelemetryMosquitto(t *testing.T) {
	s := startServer(t, serveOpts{mqtt: mosquitto})
	sfx := suffix(t)
	mc := dialMQTT(t, mosquitto)
	mc.subscribe(t, "twin/deadletter", func(_ string, p []byte) bool { return bytes.Contains(p, []byte(sfx)) })
	tok := s.token(t, "operator", "500000")
	name := "acc-mq-" + sfx
	topic := "twin/telemetry/" + name
	s.putVehicle(t, tok, name, 106.55, 29.56, map[string]any{"kind": "patrol"})

	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	mc.publish(t, topic, fix(t0, 106.552, 29.562))
	var v1 uint64
	eventually(t, 10*time.Second, "first fix applied", func() bool {
		f, _ := s.get(t, tok, "vehicles", name)
		v1 = f.Version
		return f.Geometry != nil && near(f.point(t), 106.552, 29.562)
	})

	// A duplicate, then a newer fix: one object's messages are applied in
	// order, so when the newer one shows the duplicate has been handled.
	mc.publish(t, topic, fix(t0, 106.552, 29.562))
	t1 := t0.Add(10 * time.Second)
	mc.publish(t, topic, fix(t1, 106.553, 29.563))
	eventually(t, 10*time.Second, "second fix applied", func() bool {
		f, _ := s.get(t, tok, "vehicles", name)
		return near(f.point(t), 106.553, 29.563)
	})
	f, _ := s.get(t, tok, "vehicles", name)
	if f.Version != v1+1 {
		t.Errorf("version after duplicate + new fix = %d, want %d (duplicate applied once)", f.Version, v1+1)
	}

	// An older fix lands in history only.
	tOld := t0.Add(-30 * time.Second)
	mc.publish(t, topic, fix(tOld, 106.540, 29.550))
	eventually(t, 10*time.Second, "older fix in history", func() bool {
		for _, ts := range s.historyTimes(t, tok, "vehicles", name) {
			if ts.Equal(tOld) {
				return true
			}
		}
		return false
	})
	f2, _ := s.get(t, tok, "vehicles", name)
	if !near(f2.point(t), 106.553, 29.563) || f2.Version != f.Version {
		t.Errorf("older fix moved the twin: now %v v%d, want [106.553 29.563] v%d", f2.point(t), f2.Version, f.Version)
	}
	hist := s.historyTimes(t, tok, "vehicles", name)
	if !sort.SliceIsSorted(hist, func(i, j int) bool { return hist[i].Before(hist[j]) }) {
		t.Errorf("history not in time order: %v", hist)
	}
	for _, want := range []time.Time{tOld, t0, t1} {
		n := 0
		for _, ts := range hist {
			if ts.Equal(want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("history holds ts %s %d times, want once: %v", want.Format(time.RFC3339Nano), n, hist)
		}
	}

	// Bad payloads are dead-lettered with their reason and counted.
	before := s.metrics(t, "twin_deadletter_total")
	ghost := "twin/telemetry/acc-ghost-" + sfx
	big := fmt.Sprintf(`{"ts":%q,"lon":106.5,"lat":29.5,"pad":"%s"}`, t1.Format(time.RFC3339), strings.Repeat("x", 70<<10))
	bad := []struct{ topic, payload, reason string }{
		{topic, `{"ts": "2026-01-01T00:00:00Z", "lon": `, "bad_json"},
		{ghost, string(fix(t1, 106.5, 29.5)), "unknown_device"},
		{topic, string(fix(t1.Add(time.Second), 200, 29.5)), "out_of_range"},
		{topic, string(fix(time.Now().Add(24*time.Hour), 106.5, 29.5)), "future_ts"},
		{topic, big, "oversized"},
	}
	for _, b := range bad {
		mc.publish(t, b.topic, []byte(b.payload))
	}
	got := map[string]map[string]any{}
	for len(got) < len(bad) {
		// Generous: other tests' traffic on the shared broker is
		// dead-lettered by this server too, ahead of ours.
		m := mc.next(t, 45*time.Second, fmt.Sprintf("dead letters (have %d of %d)", len(got), len(bad)), func(m mqttMsg) bool {
			return m.topic == "twin/deadletter" && strings.Contains(string(m.payload), sfx)
		})
		var dl map[string]any
		if err := json.Unmarshal(m.payload, &dl); err != nil {
			t.Fatalf("dead letter is not JSON: %v: %s", err, truncate(m.payload))
		}
		reason, _ := dl["reason"].(string)
		got[reason] = dl
	}
	for _, b := range bad {
		dl, ok := got[b.reason]
		if !ok {
			t.Errorf("no dead letter with reason %q; got %v", b.reason, keys(got))
			continue
		}
		if dl["topic"] != b.topic {
			t.Errorf("dead letter %s: topic %v, want %s", b.reason, dl["topic"], b.topic)
		}
		if _, ok := dl["payload"]; !ok {
			t.Errorf("dead letter %s has no payload member: %v", b.reason, keys(dl))
		}
		if b.reason != "oversized" && dl["payload"] != b.payload {
			t.Errorf("dead letter %s: payload %v, want the original %q", b.reason, dl["payload"], b.payload)
		}
	}
	after := s.metrics(t, "twin_deadletter_total")
	for _, b := range bad {
		k := `{reason="` + b.reason + `"}`
		if after[k] < before[k]+1 {
			t.Errorf("twin_deadletter_total%s = %v (before %v), want +1", k, after[k], before[k])
		}
	}
	// Ingest kept running.
	t2 := t1.Add(10 * time.Second)
	mc.publish(t, topic, fix(t2, 106.554, 29.564))
	eventually(t, 10*time.Second, "fix after dead letters applied", func() bool {
		f, _ := s.get(t, tok, "vehicles", name)
		return near(f.point(t), 106.554, 29.564)
	})

	// HTTP NDJSON: per-line results, dead letters too.
	t3 := t2.Add(10 * time.Second)
	line := func(id string, ts time.Time, lon, lat float64) map[string]any {
		return map[string]any{"id": id, "ts": ts.Format(time.RFC3339Nano), "lon": lon, "lat": lat}
	}
	res := s.postTelemetry(t, tok,
		line(name, t3, 106.555, 29.565),
		line(name, t3, 106.555, 29.565),
		line(name, t0.Add(5*time.Second), 106.541, 29.551),
		line("acc-ghost-"+sfx, t3, 106.5, 29.5),
		`{"id": "`+name+`", "ts": `,
		line(name, t3.Add(time.Second), 106.5, 95),
		`{"id": "`+name+`", "ts": "`+t3.Add(2*time.Second).Format(time.RFC3339)+`", "lon": 1e999, "lat": 29.5}`,
		map[string]any{"id": name, "ts": t3.Add(3 * time.Second).UnixMilli(), "lon": 106.556, "lat": 29.566},
	)
	want := []struct{ outcome, reason string }{
		{"applied", ""}, {"duplicate", ""}, {"history", ""}, {"error", "unknown_device"}, {"error", "bad_json"}, {"error", "out_of_range"},
		{"error", "not_finite"}, {"applied", ""}, // epoch ms
	}
	if len(res) != len(want) {
		t.Fatalf("NDJSON results = %+v, want %d", res, len(want))
	}
	for i, w := range want {
		if res[i].Line != i+1 || res[i].Outcome != w.outcome || res[i].Reason != w.reason {
			t.Errorf("line %d: %+v, want outcome %q reason %q", i+1, res[i], w.outcome, w.reason)
		}
	}
	m := mc.next(t, 45*time.Second, "HTTP dead letter", func(m mqttMsg) bool {
		return m.topic == "twin/deadletter" && strings.Contains(string(m.payload), "acc-ghost-"+sfx) && strings.Contains(string(m.payload), "unknown_device")
	})
	if !strings.Contains(string(m.payload), `"topic"`) {
		t.Errorf("HTTP dead letter lacks topic: %s", m.payload)
	}
	f3, _ := s.get(t, tok, "vehicles", name)
	if !near(f3.point(t), 106.556, 29.566) {
		t.Errorf("after NDJSON position %v, want [106.556 29.566]", f3.point(t))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestTelemetryQueuedWhileDown: QoS 1 telemetry published to Mosquitto
// while the server is stopped is applied when it comes back, because the
// server keeps a persistent session under a stable client id.
func TestTelemetryQueuedWhileDown(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the broker session restart")
	}
	sfx := suffix(t)
	clientID := "citytwin-acceptance-persist-" + sfx
	t.Cleanup(func() { wipeSessions(mosquitto, clientID) }) // after both servers stopped
	o := serveOpts{mqtt: mosquitto, clientID: clientID, data: t.TempDir(), key: writeKey(t)}
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	name := "acc-q-" + sfx
	put := s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	s.stop(t)

	mc := dialMQTT(t, mosquitto)
	t0 := time.Now().Add(-time.Minute)
	mc.publish(t, "twin/telemetry/"+name, fix(t0, 106.551, 29.561))
	mc.publish(t, "twin/telemetry/"+name, fix(t0.Add(time.Second), 106.552, 29.562))

	s2 := startServer(t, o)
	applied := func() bool {
		f, _ := s2.get(t, tok, "vehicles", name)
		return near(f.point(t), 106.552, 29.562)
	}
	start := time.Now()
	for !applied() {
		if time.Since(start) > 45*time.Second {
			// Seen twice in clean-clone CI runs, never on a workstation:
			// say where the two messages stopped (not received, not
			// journaled, not applied) and whether they come later.
			diag := func() string {
				return s2.metricsLine(t, "twin_ingest_messages_total", "twin_journal_", "twin_deadletter_total", "twin_changelog_leader")
			}
			t.Errorf("telemetry queued while down not applied after 45 s; metrics: %s", diag())
			for time.Since(start) < 120*time.Second && !applied() {
				time.Sleep(time.Second) // polling an external process
			}
			t.Fatalf("after %.0f s applied=%v; metrics: %s", time.Since(start).Seconds(), applied(), diag())
		}
		time.Sleep(50 * time.Millisecond) // polling an external process
	}
	if f, _ := s2.get(t, tok, "vehicles", name); f.Version != put.Version+2 {
		t.Errorf("version %d after two queued fixes, want %d", f.Version, put.Version+2)
	}
}

// TestTelemetryBurstOrder: a burst of QoS 1 fixes for several objects,
// interleaved, is applied in each object's order: every object ends at its
// last fix with one version per fix, and history holds every fix in time
// order.
func TestTelemetryBurstOrder(t *testing.T) {
	s := startServer(t, serveOpts{})
	tok := s.token(t, "operator", "500000")
	sfx := suffix(t)
	const objects, fixes = 5, 100
	start := map[string]uint64{}
	for i := 0; i < objects; i++ {
		name := fmt.Sprintf("acc-burst%d-%s", i, sfx)
		start[name] = s.putVehicle(t, tok, name, 106.5, 29.5, nil).Version
	}
	mc := dialMQTT(t, s.mqttURL)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for k := 0; k < fixes; k++ {
		for i := 0; i < objects; i++ {
			name := fmt.Sprintf("acc-burst%d-%s", i, sfx)
			mc.publish(t, "twin/telemetry/"+name, fix(t0.Add(time.Duration(k)*time.Second), 106.5+float64(k)*1e-4, 29.5+float64(i)*1e-3))
		}
	}
	for name, v0 := range start {
		i := 0
		if _, err := fmt.Sscanf(name, "acc-burst%d-", &i); err != nil {
			t.Fatalf("name %s: %v", name, err)
		}
		eventually(t, 20*time.Second, name+" at its last fix", func() bool {
			f, _ := s.get(t, tok, "vehicles", name)
			return f.Geometry != nil && near(f.point(t), 106.5+float64(fixes-1)*1e-4, 29.5+float64(i)*1e-3)
		})
		if f, _ := s.get(t, tok, "vehicles", name); f.Version != v0+fixes {
			t.Errorf("%s version %d, want %d (one per fix)", name, f.Version, v0+fixes)
		}
		var hist []time.Time
		eventually(t, 10*time.Second, name+" history stored", func() bool {
			hist = s.historyTimes(t, tok, "vehicles", name)
			return len(hist) >= fixes
		})
		for k, ts := range hist {
			if !ts.Equal(t0.Add(time.Duration(k) * time.Second)) {
				t.Errorf("%s history[%d] = %s, want %s", name, k, ts, t0.Add(time.Duration(k)*time.Second))
				break
			}
		}
	}
}
