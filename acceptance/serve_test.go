package acceptance

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestServeBasics: health, readiness, metrics, JSON 404s, 401 without a
// token (no --demo: no anonymous read), graceful SIGTERM (at cleanup).
func TestServeBasics(t *testing.T) {
	s := startServer(t, serveOpts{})

	var health map[string]any
	s.must(t, http.StatusOK, http.MethodGet, "/healthz", "", nil).json(t, &health)

	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	s.must(t, http.StatusOK, http.MethodGet, "/readyz", "", nil).json(t, &ready)
	if ready.Checks["store"] != "ok" || ready.Checks["broker"] != "ok" {
		t.Errorf("readyz checks = %v, want store and broker ok", ready.Checks)
	}

	// One message so the counter family has a sample.
	tok := s.token(t, "operator", "500000")
	name := "acc-basic-" + suffix(t)
	s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	res := s.postTelemetry(t, tok, map[string]any{"id": name, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": 106.551, "lat": 29.561})
	if len(res) != 1 || res[0].Outcome != "applied" {
		t.Fatalf("telemetry results = %+v, want one applied", res)
	}
	m := s.metrics(t, "twin_ingest_messages_total")
	if len(m) == 0 {
		t.Fatalf("/metrics has no twin_ingest_messages_total")
	}
	total := 0.0
	for _, v := range m {
		total += v
	}
	if total < 1 {
		t.Errorf("twin_ingest_messages_total = %v, want >= 1", m)
	}

	for _, path := range []string{"/no/such/path", "/api/nope", "/ogc/collections/nolayer/items"} {
		r := s.do(t, http.MethodGet, path, tok, nil)
		var e struct {
			Error string `json:"error"`
		}
		if r.status != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404: %s", path, r.status, truncate(r.body))
			continue
		}
		if !strings.Contains(r.header.Get("Content-Type"), "json") {
			t.Errorf("GET %s: Content-Type %q, want JSON", path, r.header.Get("Content-Type"))
		}
		r.json(t, &e)
		if e.Error == "" {
			t.Errorf("GET %s: body %s has no \"error\"", path, r.body)
		}
		if strings.Contains(string(r.body), "goroutine ") {
			t.Errorf("GET %s: body looks like a stack trace", path)
		}
	}

	// Graceful: the ingest leaves the embedded broker before it closes.
	defer func() {
		s.stop(t)
		if strings.Contains(s.logs.String(), "connection lost") {
			t.Errorf("shutdown lost the MQTT connection instead of disconnecting:\n%s", s.tail(10))
		}
	}()

	// No token: 401 on every /api read without --demo.
	for _, path := range []string{"/api/entities/vehicles/" + name, "/api/nearby?lon=106.55&lat=29.56", "/ogc/collections/vehicles/items"} {
		r := s.do(t, http.MethodGet, path, "", nil)
		if r.status != http.StatusUnauthorized {
			t.Errorf("GET %s without token: status %d, want 401", path, r.status)
		}
	}
}

// TestShutdownWithOpenLinks: SIGTERM while a websocket client and an MQTT
// client (on the embedded broker) are connected still exits 0 within 15 s,
// and the websocket client is told the link is over rather than left
// hanging.
func TestShutdownWithOpenLinks(t *testing.T) {
	s := startServer(t, serveOpts{})
	tok := s.token(t, "operator", "500000")
	ws := dialWS(t, s, tok)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": []float64{106, 29, 107, 30}})
	ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	mc := dialMQTT(t, s.mqttURL)
	mc.subscribe(t, "twin/alerts/#")

	done := make(chan error, 1)
	go func() {
		_ = ws.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, _, err := ws.c.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	start := time.Now()
	s.stop(t)
	t.Logf("server stopped in %s", time.Since(start).Round(time.Millisecond))
	select {
	case err := <-done:
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			t.Logf("websocket closed with code %d %q", ce.Code, ce.Text)
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("websocket still open after the server exited")
		} else {
			t.Errorf("websocket ended without a close frame: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("websocket read did not end after the server exited")
	}
}

// TestReadyFollowsBroker: a server whose MQTT broker is not up yet is
// alive (/healthz 200) but not ready (/readyz 503 naming the broker), keeps
// answering HTTP, and becomes ready once the broker appears (CONTRACT §5).
func TestReadyFollowsBroker(t *testing.T) {
	brokerAddr := freeAddr(t)
	s := startServer(t, serveOpts{mqtt: "tcp://" + brokerAddr, notReady: true})
	r := s.do(t, http.MethodGet, "/readyz", "", nil)
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a broker: %d, want 503: %s", r.status, r.body)
	}
	r.json(t, &ready)
	if ready.Checks["broker"] == "ok" || ready.Checks["broker"] == "" || ready.Checks["store"] != "ok" {
		t.Errorf("/readyz checks %v, want store ok and the broker's failure", ready.Checks)
	}
	// HTTP ingest works without the broker.
	tok := s.token(t, "operator", "500000")
	name := "acc-nobroker-" + suffix(t)
	s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	if res := s.postTelemetry(t, tok, map[string]any{"id": name, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": 106.551, "lat": 29.561}); res[0].Outcome != "applied" {
		t.Errorf("HTTP telemetry without a broker: %+v", res)
	}
	// The broker appears: another twin's embedded broker on that address.
	startServer(t, serveOpts{mqttListen: brokerAddr})
	eventually(t, 30*time.Second, "/readyz 200 once the broker is up", func() bool {
		return s.do(t, http.MethodGet, "/readyz", "", nil).status == http.StatusOK
	})
	mc := dialMQTT(t, "tcp://"+brokerAddr)
	mc.publish(t, "twin/telemetry/"+name, fix(time.Now(), 106.552, 29.562))
	eventually(t, 10*time.Second, "MQTT telemetry after the broker came up", func() bool {
		f, _ := s.get(t, tok, "vehicles", name)
		return near(f.point(t), 106.552, 29.562)
	})
}

// TestDemoLive: `--demo` drives the city with live simulated telemetry
// (CONTRACT §1): ingest counters and object versions move, and SIGTERM in
// the middle of it still shuts down cleanly (at cleanup).
func TestDemoLive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the live demo")
	}
	s := startServer(t, serveOpts{args: []string{"--demo", "--sim-rate", "100"}})
	applied := func() float64 {
		n := 0.0
		for k, v := range s.metrics(t, "twin_ingest_messages_total") {
			if strings.Contains(k, `"applied"`) {
				n += v
			}
		}
		return n
	}
	first := applied()
	eventually(t, 20*time.Second, "simulated telemetry to be applied", func() bool { return applied() >= first+50 })
	var fc featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1000", "", nil).json(t, &fc)
	moved := 0
	for _, f := range fc.Features {
		if f.Version > 0 { // loaded demo objects start at version 0
			moved++
		}
	}
	if moved == 0 {
		t.Errorf("no demo vehicle has moved (all at version 0)")
	}
}

// TestEnvFlags: every flag also reads TWIN_<FLAG> (CONTRACT §1): a server
// configured only through the environment, and a token made the same way.
func TestEnvFlags(t *testing.T) {
	s := startServer(t, serveOpts{envOnly: true})
	if got := strings.Join(s.cmd.Args[1:], " "); got != "serve" {
		t.Fatalf("server started with flags %q, want none", got)
	}
	cmd := exec.Command(twinBin, "token")
	cmd.Env = append(cleanEnv(), "TWIN_AUTH_KEY="+s.key, "TWIN_ROLE=planner", "TWIN_REGION=500105")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("twin token from the environment: %v", err)
	}
	f := strings.Fields(string(out))
	tok := f[len(f)-1]
	// The environment's role and region are in the token: a planner of
	// 500105 may read, may not write, and does not see an object outside.
	name := "acc-env-" + suffix(t)
	s.putVehicle(t, s.token(t, "operator", "500000"), name, 106.55, 29.56, nil)
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items", tok, nil)
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/entities/vehicles/"+name, tok, nil)
	s.must(t, http.StatusForbidden, http.MethodPost, "/api/telemetry", tok, `{"id":"x","ts":0}`)
}

// TestServeRefusesBadConfig: a short signing key or a taken listen address
// stops `twin serve` at once with a non-zero exit and a message that names
// the problem, instead of running half-configured.
func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for what, c := range map[string]struct {
		args []string
		want string
	}{
		"short key":    {[]string{"--listen", freeAddr(t), "--auth-key", short}, "32"},
		"listen taken": {[]string{"--listen", taken.Addr().String(), "--auth-key", writeKey(t)}, taken.Addr().String()},
	} {
		args := append([]string{"serve", "--data", filepath.Join(dir, what), "--mqtt-listen", freeAddr(t)}, c.args...)
		cmd := exec.Command(twinBin, args...)
		cmd.Env = cleanEnv()
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s: twin serve still running after 30 s", what)
			continue
		}
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: exit %v, output %q; want a failure mentioning %q", what, err, out, c.want)
		}
	}
}
