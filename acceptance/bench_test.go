package acceptance

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkMQTTToWebsocket measures the end-to-end latency a user sees: one
// fix published over MQTT (embedded broker, QoS 1) until its upsert delta
// arrives on a subscribed websocket, through the real binary.
func BenchmarkMQTTToWebsocket(b *testing.B) {
	s := startServer(b, serveOpts{})
	tok := s.token(b, "operator", "500000")
	name := "acc-bench-" + suffix(b)
	id := "vehicles/" + name
	s.putVehicle(b, tok, name, 106.55, 29.56, nil)
	ws := dialWS(b, s, tok)
	ws.send(b, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": []float64{106.5, 29.5, 106.6, 29.6}})
	ws.next(b, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	mc := dialMQTT(b, s.mqttURL)
	t0 := time.Now().Add(-time.Hour)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lon := 106.55 + float64(i%1000)*1e-5
		mc.publish(b, "twin/telemetry/"+name, fix(t0.Add(time.Duration(i)*time.Millisecond), lon, 29.56))
		ws.next(b, "delta", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	}
}

// BenchmarkHTTPTelemetry measures POST /api/telemetry throughput through
// the real binary: 1000 NDJSON lines (100 vehicles) per request; reports
// lines/s.
func BenchmarkHTTPTelemetry(b *testing.B) {
	s := startServer(b, serveOpts{})
	tok := s.token(b, "operator", "500000")
	sfx := suffix(b)
	for v := 0; v < 100; v++ {
		s.putVehicle(b, tok, fmt.Sprintf("acc-hb%d-%s", v, sfx), 106.55, 29.56, nil)
	}
	t0 := time.Now().Add(-time.Hour)
	const lines = 1000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var sb strings.Builder
		for l := 0; l < lines; l++ {
			ts := t0.Add(time.Duration(i*lines+l) * time.Millisecond).Format(time.RFC3339Nano)
			fmt.Fprintf(&sb, `{"id":"acc-hb%d-%s","ts":%q,"lon":%.6f,"lat":29.56}`+"\n", l%100, sfx, ts, 106.55+float64(l)*1e-6)
		}
		s.must(b, http.StatusOK, http.MethodPost, "/api/telemetry", tok, sb.String())
	}
	b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDemoStartup measures `twin serve --demo` from process start to
// /readyz 200 on an empty data directory (generate, store and load the
// scale-1 demo city, about 80k objects, into the embedded store).
func BenchmarkDemoStartup(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s := startServer(b, serveOpts{demo: true})
		b.StopTimer()
		s.stop(b)
		b.StartTimer()
	}
}
