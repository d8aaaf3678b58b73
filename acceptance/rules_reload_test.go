package acceptance

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const rulesV1 = `timezone: Asia/Shanghai
rules:
  - name: acc-hot
    kind: threshold
    message: too hot
    subjects: {layer: devices, when: 'obj.kind == "thermo"'}
    tiers:
      - {when: '"temp" in values && values.temp >= 50.0', severity: red}
    clear: '"temp" in values && values.temp < 40.0'
`

const rulesV2 = `timezone: Asia/Shanghai
rules:
  - name: acc-cold
    kind: threshold
    message: too cold
    subjects: {layer: devices, when: 'obj.kind == "thermo"'}
    tiers:
      - {when: '"temp" in values && values.temp <= -10.0', severity: blue}
`

const rulesV3 = `timezone: Asia/Shanghai
# edited on disk while the server runs
rules:
  - name: acc-file
    kind: threshold
    message: far too hot
    subjects: {layer: devices, when: 'obj.kind == "thermo"'}
    tiers:
      - {when: '"temp" in values && values.temp >= 100.0', severity: yellow}
`

// TestRulesReload: rules are data, replaced without a restart through PUT
// /api/rules (admin only; an invalid file is refused and the old rules keep
// running) and by editing the --rules file (CONTRACT §4).
func TestRulesReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, []byte(rulesV1), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serveOpts{args: []string{"--rules", file}})
	admin := s.token(t, "admin", "500000")
	op := s.token(t, "operator", "500000")
	mc := dialMQTT(t, s.mqttURL)
	mc.subscribe(t, "twin/alerts/+/+")

	rulesNow := func() string {
		return string(s.must(t, http.StatusOK, http.MethodGet, "/api/rules", op, nil).body)
	}
	if !strings.Contains(rulesNow(), "acc-hot") {
		t.Fatalf("GET /api/rules does not show the --rules file: %s", rulesNow())
	}
	dev := "acc-th-" + suffix(t)
	subject := "devices/" + dev
	s.must(t, http.StatusCreated, http.MethodPut, "/api/entities/devices/"+dev, admin, pointFeature(106.55, 29.56, map[string]any{"kind": "thermo"}))

	t0 := time.Now().Add(-time.Hour)
	n := 0
	reading := func(temp float64) {
		t.Helper()
		n++
		res := s.postTelemetry(t, op, map[string]any{"id": dev, "ts": t0.Add(time.Duration(n) * time.Second).Format(time.RFC3339Nano), "values": map[string]any{"temp": temp}})
		if len(res) != 1 || res[0].Outcome != "applied" {
			t.Fatalf("reading %g: %+v", temp, res)
		}
	}
	alert := func(rule, state string) feature {
		t.Helper()
		var got feature
		eventually(t, 10*time.Second, rule+" alert "+state, func() bool {
			var fc featureCollection
			s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items?limit=1000&rule="+rule, op, nil).json(t, &fc)
			for _, f := range fc.Features {
				if f.Props["subject"] == subject && f.Props["state"] == state {
					got = f
					return true
				}
			}
			return false
		})
		return got
	}

	reading(60)
	if a := alert("acc-hot", "open"); a.Props["severity"] != "red" {
		t.Errorf("acc-hot severity %v, want red", a.Props["severity"])
	}
	m := mc.next(t, 10*time.Second, "acc-hot on MQTT", func(m mqttMsg) bool { return strings.Contains(string(m.payload), dev) })
	if m.topic != "twin/alerts/red/acc-hot" {
		t.Errorf("alert topic %s, want twin/alerts/red/acc-hot", m.topic)
	}
	reading(30)
	alert("acc-hot", "closed")

	// PUT /api/rules.
	s.must(t, http.StatusForbidden, http.MethodPut, "/api/rules", op, rulesV2)
	s.must(t, http.StatusBadRequest, http.MethodPut, "/api/rules", admin, "rules:\n  - name: broken\n    kind: threshold\n    tiers: [{when: 'values.temp >>> 1', severity: red}]\n")
	if !strings.Contains(rulesNow(), "acc-hot") {
		t.Errorf("an invalid PUT replaced the running rules")
	}
	s.must(t, http.StatusOK, http.MethodPut, "/api/rules", admin, rulesV2)
	if got := rulesNow(); !strings.Contains(got, "acc-cold") || strings.Contains(got, "acc-hot") {
		t.Errorf("GET /api/rules after PUT: %s", got)
	}
	reading(-20)
	alert("acc-cold", "open")

	// Editing the file on disk.
	if err := os.WriteFile(file, []byte(rulesV3), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the edited --rules file to be loaded", func() bool { return strings.Contains(rulesNow(), "acc-file") })
	reading(120)
	alert("acc-file", "open")
}
