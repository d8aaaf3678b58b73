package acceptance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestEdgeRefusesBadStrings: NUL and invalid UTF-8 never get in (issue 11
// item 1): over MQTT the message is dead-lettered with reason bad_text,
// over HTTP it is a 400 or a per-line error, and the server keeps taking
// good input.
func TestEdgeRefusesBadStrings(t *testing.T) {
	s := startServer(t, serveOpts{})
	tok := s.token(t, "admin", "500000")
	sfx := suffix(t)
	name := "acc-edge-" + sfx
	s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	mc := dialMQTT(t, s.mqttURL)
	mc.subscribe(t, "twin/deadletter", func(_ string, p []byte) bool { return strings.Contains(string(p), sfx) })

	// The repro: mosquitto_pub -t twin/telemetry/X -m '{"ts":<now ms>,"values":{"\u0000":1}}'
	mc.publish(t, "twin/telemetry/"+name, []byte(fmt.Sprintf(`{"ts":%d,"values":{"\u0000":1}}`, time.Now().UnixMilli())))
	m := mc.next(t, 30*time.Second, "dead letter for a NUL reading name", func(m mqttMsg) bool { return m.topic == "twin/deadletter" })
	var dl struct{ Topic, Reason, Detail string }
	if err := json.Unmarshal(m.payload, &dl); err != nil {
		t.Fatalf("dead letter %s: %v", m.payload, err)
	}
	if dl.Reason != "bad_text" || !strings.Contains(dl.Detail, "NUL") || dl.Topic != "twin/telemetry/"+name {
		t.Errorf("dead letter %+v, want reason bad_text naming NUL for twin/telemetry/%s", dl, name)
	}
	if f, _ := s.get(t, tok, "vehicles", name); f.Props["values"] != nil {
		t.Errorf("refused reading stored: %v", f.Props["values"])
	}

	for _, c := range []struct{ path, body string }{
		{"/api/entities/vehicles/" + name + "-p", `{"type":"Feature","geometry":null,"properties":{"note":"a\u0000b"}}`},
		{"/api/entities/vehicles/" + name + "-k", `{"type":"Feature","geometry":null,"properties":{"n\u0000":1}}`},
		{"/api/entities/vehicles/%FF" + name, `{"type":"Feature","geometry":null,"properties":{}}`},
		{"/api/entities/vehicles/" + name + "-g", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.5]},"properties":{}}`},
	} {
		r := s.do(t, http.MethodPut, c.path, tok, c.body)
		var e struct{ Error, Detail any }
		if r.status != http.StatusBadRequest || json.Unmarshal(r.body, &e) != nil || e.Error == nil {
			t.Errorf("PUT %s %s: %d %s, want a 400 JSON error", c.path, c.body, r.status, truncate(r.body))
		}
	}
	res := s.postTelemetry(t, tok,
		fmt.Sprintf(`{"id":%q,"ts":%d,"values":{"ok\u0000":1}}`, name, time.Now().UnixMilli()),
		fmt.Sprintf(`{"id":%q,"ts":"0000-01-01T00:00:00Z","lon":106.5,"lat":29.5}`, name),
		fmt.Sprintf(`{"id":%q,"ts":%d,"lon":106.551,"lat":29.561}`, name, time.Now().UnixMilli()))
	if len(res) != 3 || res[0].Reason != "bad_text" || res[1].Reason != "bad_ts" || res[2].Outcome != "applied" {
		t.Errorf("NDJSON results %+v, want bad_text, bad_ts, applied", res)
	}
}

// TestDeadLetterBurst: 50,000 bad messages in a burst all reach
// twin/deadletter, counted by a subscriber (issue 11 item 7), and none is
// counted as dropped.
func TestDeadLetterBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 50,000-message burst")
	}
	const burst = 50000
	s := startServer(t, serveOpts{})
	sfx := suffix(t)
	var got atomic.Int64
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(s.mqttURL).SetClientID("acc-dlcount-" + sfx).SetCleanSession(true))
	if tk := sub.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	if tk := sub.Subscribe("twin/deadletter", 1, func(_ paho.Client, m paho.Message) {
		if strings.Contains(string(m.Payload()), sfx) {
			got.Add(1)
		}
	}); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	pub := dialMQTT(t, s.mqttURL)
	toks := make([]paho.Token, 0, 1000)
	for k := 0; k < burst; k++ {
		toks = append(toks, pub.c.Publish(fmt.Sprintf("twin/telemetry/acc-ghost-%s-%d", sfx, k%500), 1, false, []byte(`{"ts": `)))
		if len(toks) == cap(toks) || k == burst-1 {
			for _, tk := range toks {
				if !tk.WaitTimeout(60*time.Second) || tk.Error() != nil {
					t.Fatalf("publish: %v", tk.Error())
				}
			}
			toks = toks[:0]
		}
	}
	eventually(t, 5*time.Minute, fmt.Sprintf("%d dead letters", burst), func() bool { return got.Load() >= burst })
	if d := s.metrics(t, "twin_deadletter_dropped_total")[""]; d != 0 {
		t.Errorf("twin_deadletter_dropped_total = %v, want 0", d)
	}
}
