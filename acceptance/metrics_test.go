package acceptance

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/citytwin/citytwin/ingest/telemetry"
)

// TestMetricsFromStart: a fresh server's /metrics passes the Prometheus
// linter (promlint, the checks of `promtool check metrics`; promtool too
// when installed) and already has, at 0, the series an operator alerts on
// that would otherwise appear only with their first event: dead letters
// by every reason, websocket drops and refusals, open and acknowledged
// alerts by severity and tier.
func TestMetricsFromStart(t *testing.T) {
	s := startServer(t, serveOpts{})
	body := s.must(t, http.StatusOK, http.MethodGet, "/metrics", "", nil).body
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v: %s", err, out)
		}
	}
	want := map[string][]string{"twin_deadletter_total": nil, "twin_ws_dropped_clients_total": {`{reason="too_slow"}`},
		"twin_ws_rejected_total": {`{reason="total"}`}, "twin_ingest_messages_total": {`{outcome="deadletter",source="mqtt"}`},
		"twin_alerts_open":  {`{severity="red",tier="street"}`, `{severity="blue",tier="city"}`},
		"twin_alerts_acked": {`{severity="orange",tier="district"}`}}
	for _, r := range telemetry.Reasons() {
		want["twin_deadletter_total"] = append(want["twin_deadletter_total"], fmt.Sprintf("{reason=%q}", r))
	}
	for family, series := range want {
		got := s.metrics(t, family)
		for _, l := range series {
			if v, ok := got[l]; !ok || v != 0 {
				t.Errorf("%s%s = %v (present %v), want 0 from start", family, l, v, ok)
			}
		}
	}
}
