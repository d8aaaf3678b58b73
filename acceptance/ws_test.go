package acceptance

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebsocketBasics: subscribe, snapshot with seq, an upsert delta for
// telemetry published over MQTT, and malformed messages answered with
// {"op":"error"} on a link that stays usable (CONTRACT §6).
func TestWebsocketBasics(t *testing.T) {
	s := startServer(t, serveOpts{})
	tok := s.token(t, "operator", "500000")
	name := "acc-ws-" + suffix(t)
	id := "vehicles/" + name
	put := s.putVehicle(t, tok, name, 106.55, 29.56, map[string]any{"kind": "patrol"})
	other := "acc-ws-far-" + suffix(t)
	s.putVehicle(t, tok, other, 106.70, 29.70, map[string]any{"kind": "patrol"})

	ws := dialWS(t, s, tok)
	sub := map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": []float64{106.54, 29.55, 106.56, 29.57}}
	ws.send(t, sub)
	snap := ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	if snap.Seq == 0 {
		t.Errorf("snapshot seq = 0, want the feed position")
	}
	var inSnap *feature
	for i, f := range snap.Features {
		if f.ID == id {
			inSnap = &snap.Features[i]
		}
		if f.ID == "vehicles/"+other {
			t.Errorf("snapshot holds %s, outside the bbox", f.ID)
		}
	}
	if inSnap == nil || inSnap.Version != put.Version {
		t.Fatalf("snapshot lacks %s at v%d: %+v", id, put.Version, snap.Features)
	}

	mc := dialMQTT(t, s.mqttURL)
	ts := time.Now().Add(-10 * time.Second)
	mc.publish(t, "twin/telemetry/"+name, fix(ts, 106.551, 29.561))
	d := ws.next(t, "upsert delta", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	if d.Kind != "upsert" || d.Feature.Version <= inSnap.Version || d.Seq <= snap.Seq {
		t.Errorf("delta kind %q v%d seq %d, want upsert with version > %d and seq > %d", d.Kind, d.Feature.Version, d.Seq, inSnap.Version, snap.Seq)
	}
	if !near(d.Feature.point(t), 106.551, 29.561) {
		t.Errorf("delta position %v, want [106.551 29.561]", d.Feature.point(t))
	}

	// Malformed messages: an error each, and the link stays.
	for _, bad := range []string{`{nope`, `{"op":"dance"}`, `{"op":"subscribe","layers":["vehicles"],"bbox":[200,0,0,0]}`, `{"op":"subscribe","layers":["unicorns"],"bbox":[106,29,107,30]}`} {
		if err := ws.c.WriteMessage(websocket.TextMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		e := ws.next(t, "error for "+bad, func(m wsMsg) bool { return m.Op == "error" })
		if e.Error == "" {
			t.Errorf("error message for %s has no text", bad)
		}
	}
	mc.publish(t, "twin/telemetry/"+name, fix(ts.Add(time.Second), 106.552, 29.562))
	d2 := ws.next(t, "delta after errors", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	if d2.Seq <= d.Seq || d2.Feature.Version <= d.Feature.Version {
		t.Errorf("second delta seq %d v%d, want after seq %d v%d", d2.Seq, d2.Feature.Version, d.Seq, d.Feature.Version)
	}
	ws.send(t, sub)
	snap2 := ws.next(t, "second snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	if snap2.Seq < d2.Seq {
		t.Errorf("re-subscribe snapshot seq %d < last delta seq %d", snap2.Seq, d2.Seq)
	}
}

// TestWebsocketResumeAcrossRestart: a client that reconnects with `since`
// after the server restarted on the same store gets no gap: either the
// missed changes as deltas or {"op":"resync"} and a snapshot, with seq
// numbers that keep increasing across the restart (CONTRACT §6).
func TestWebsocketResumeAcrossRestart(t *testing.T) {
	o := serveOpts{data: t.TempDir(), key: writeKey(t)}
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	name := "acc-wsr-" + suffix(t)
	id := "vehicles/" + name
	s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	bbox := []float64{106.54, 29.55, 106.56, 29.57}
	sub := map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox}

	ws := dialWS(t, s, tok)
	ws.send(t, sub)
	snap := ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	ts := time.Now().Add(-time.Minute)
	s.postTelemetry(t, tok, map[string]any{"id": name, "ts": ts.Format(time.RFC3339Nano), "lon": 106.551, "lat": 29.561})
	d := ws.next(t, "delta", func(m wsMsg) bool { return m.Op == "delta" && m.Feature.ID == id })
	if d.Seq <= snap.Seq {
		t.Fatalf("delta seq %d <= snapshot seq %d", d.Seq, snap.Seq)
	}
	ws.c.Close()
	s.stop(t)

	s2 := startServer(t, o)
	s2.postTelemetry(t, tok, map[string]any{"id": name, "ts": ts.Add(time.Second).Format(time.RFC3339Nano), "lon": 106.552, "lat": 29.562})

	check := func(since uint64, what string) {
		t.Helper()
		ws := dialWS(t, s2, tok)
		ws.send(t, map[string]any{"op": "subscribe", "layers": sub["layers"], "bbox": bbox, "since": since})
		got := ws.next(t, what, func(m wsMsg) bool {
			switch {
			case m.Op == "error":
				t.Errorf("%s: error %q", what, m.Error)
				return true
			case m.Op == "snapshot":
				return true
			case m.Op == "delta" && m.Feature.ID == id:
				return true
			}
			return false
		})
		var f feature
		switch got.Op {
		case "snapshot":
			for _, x := range got.Features {
				if x.ID == id {
					f = x
				}
			}
		case "delta":
			f = got.Feature
		}
		if f.ID == "" || !near(f.point(t), 106.552, 29.562) {
			t.Errorf("%s: %s without the change made after the restart (got %+v)", what, got.Op, f)
		}
		if got.Seq <= d.Seq {
			t.Errorf("%s: seq %d after the restart, not above %d from before it", what, got.Seq, d.Seq)
		}
	}
	check(d.Seq, "resume after restart")
	check(d.Seq+1_000_000, "resume from a seq the server never issued")
}

// TestWebsocketSlowClient: a client that stops reading does not hold up
// ingest; when it reads again it converges on the latest state of every
// object (coalesced deltas, or resync and snapshot), unless the server gave
// up on it with a close code (CONTRACT §6).
func TestWebsocketSlowClient(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the slow-client flood")
	}
	s := startServer(t, serveOpts{})
	tok := s.token(t, "operator", "500000")
	sfx := suffix(t)
	const objects, rounds, perPost = 50, 100, 1000
	for i := 0; i < objects; i++ {
		s.putVehicle(t, tok, fmt.Sprintf("acc-slow%d-%s", i, sfx), 106.55, 29.56, map[string]any{"kind": "patrol", "pad": strings.Repeat("x", 512)})
	}
	ws := dialWS(t, s, tok)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": []float64{106.5, 29.5, 106.6, 29.6}})
	ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })

	// Flood while the client does not read.
	t0 := time.Now().Add(-time.Hour)
	start := time.Now()
	n := 0
	for r := 0; r < rounds; r++ {
		var sb strings.Builder
		for l := 0; l < perPost; l++ {
			ts := t0.Add(time.Duration(n) * time.Millisecond).Format(time.RFC3339Nano)
			fmt.Fprintf(&sb, `{"id":"acc-slow%d-%s","ts":%q,"lon":%.7f,"lat":29.56}`+"\n", n%objects, sfx, ts, 106.55+float64(n)*1e-7)
			n++
		}
		s.must(t, http.StatusOK, http.MethodPost, "/api/telemetry", tok, sb.String())
	}
	t.Logf("%d fixes ingested in %s with a stalled websocket client", n, time.Since(start).Round(time.Millisecond))
	final := map[string]uint64{}
	for i := 0; i < objects; i++ {
		f, _ := s.get(t, tok, "vehicles", fmt.Sprintf("acc-slow%d-%s", i, sfx))
		final[f.ID] = f.Version
	}

	// Now read: converge, or be closed with a code.
	seen := map[string]uint64{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := 0
		for id, v := range final {
			if seen[id] >= v {
				done++
			}
		}
		if done == len(final) {
			return
		}
		_ = ws.c.SetReadDeadline(deadline)
		_, b, err := ws.c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				t.Logf("server dropped the slow client with close code %d %q", ce.Code, ce.Text)
				return
			}
			t.Fatalf("slow client: %d of %d objects at their latest version, then %v", done, len(final), err)
		}
		var m wsMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("bad message: %v", err)
		}
		switch m.Op {
		case "resync":
			seen = map[string]uint64{}
		case "snapshot":
			for _, f := range m.Features {
				seen[f.ID] = f.Version
			}
		case "delta":
			if m.Feature.Version < seen[m.Feature.ID] {
				t.Errorf("delta for %s went back from v%d to v%d", m.Feature.ID, seen[m.Feature.ID], m.Feature.Version)
			}
			seen[m.Feature.ID] = m.Feature.Version
		}
	}
}

// TestWebsocketResumeTooOld: `since` further back than the server will
// replay is answered {"op":"resync"} and a snapshot of the current state
// (CONTRACT §6).
func TestWebsocketResumeTooOld(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 80k changes")
	}
	s := startServer(t, serveOpts{})
	tok := s.token(t, "operator", "500000")
	name := "acc-old-" + suffix(t)
	id := "vehicles/" + name
	s.putVehicle(t, tok, name, 106.55, 29.56, nil)
	bbox := []float64{106.5, 29.5, 106.6, 29.6}
	ws := dialWS(t, s, tok)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox})
	snap := ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	ws.c.Close()

	t0 := time.Now().Add(-time.Hour)
	const total = 80000 // more than the hub replays (65536 by default)
	for r := 0; r < total/1000; r++ {
		var sb strings.Builder
		for l := 0; l < 1000; l++ {
			n := r*1000 + l
			fmt.Fprintf(&sb, `{"id":%q,"ts":%q,"lon":%.7f,"lat":29.56}`+"\n", name, t0.Add(time.Duration(n)*time.Millisecond).Format(time.RFC3339Nano), 106.55+float64(n)*1e-7)
		}
		s.must(t, http.StatusOK, http.MethodPost, "/api/telemetry", tok, sb.String())
	}
	final, _ := s.get(t, tok, "vehicles", name)

	ws2 := dialWS(t, s, tok)
	ws2.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox, "since": snap.Seq})
	first := ws2.next(t, "resync", func(m wsMsg) bool { return true })
	if first.Op != "resync" {
		t.Fatalf("resume from %d changes back answered %q first, want resync", total, first.Op)
	}
	snap2 := ws2.next(t, "snapshot after resync", func(m wsMsg) bool { return m.Op == "snapshot" })
	for _, f := range snap2.Features {
		if f.ID == id && f.Version < final.Version {
			t.Errorf("snapshot after resync holds v%d, want >= v%d", f.Version, final.Version)
		}
	}
}
