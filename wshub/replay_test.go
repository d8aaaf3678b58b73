package wshub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/timeline"
	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
)

func TestParseReplay(t *testing.T) {
	for _, bad := range []string{`{"op":"speed"}`, `{"op":"speed","speed":-1}`, `{"op":"seek"}`, `{"op":"seek","at":"x"}`,
		`{"op":"subscribe","layers":["vehicles"],"bbox":[0,0,1,1],"at":"2026-01-01T00:00:00Z","speed":0}`,
		`{"op":"subscribe","layers":["nope"],"bbox":[0,0,1,1],"at":1}`} {
		if _, ok, err := parseReplay([]byte(bad)); !ok || err == nil {
			t.Errorf("%s: ok %v err %v", bad, ok, err)
		}
	}
	for _, notReplay := range []string{`{"op":"subscribe","layers":["vehicles"],"bbox":[0,0,1,1]}`, `nonsense`, `{"op":"x"}`} {
		if _, ok, _ := parseReplay([]byte(notReplay)); ok {
			t.Errorf("%s taken as a replay op", notReplay)
		}
	}
	r, ok, err := parseReplay([]byte(`{"op":"subscribe","layers":["vehicles"],"bbox":[0,0,1,1],"at":1777600000000,"speed":60,"live":true}`))
	if !ok || err != nil || r.at.UnixMilli() != 1777600000000 || r.speed != 60 || !r.live {
		t.Fatalf("%+v %v %v", r, ok, err)
	}
}

// FuzzParseReplay: any message parses or fails cleanly.
func FuzzParseReplay(f *testing.F) {
	f.Add([]byte(`{"op":"subscribe","layers":["vehicles"],"bbox":[0,0,1,1],"at":"2026-01-01T00:00:00Z","speed":60}`))
	f.Add([]byte(`{"op":"seek","at":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok, err := parseReplay(b)
		if ok && err == nil && r.op != "pause" && r.op != "play" && !(r.speed > 0) {
			t.Fatalf("accepted speed %v", r.speed)
		}
	})
}

// TestReplayOverWebsocket records two trucks driven by timestamped
// telemetry, then replays a window at 600x: the snapshot is the state at
// T, the deltas are the recorded changes after T in time order, a pause
// holds them, and the replay hands over to live at the end.
func TestReplayOverWebsocket(t *testing.T) {
	tw := twin.New(twin.Options{})
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	topts := timeline.Options{Interval: time.Minute, Lateness: time.Second, FlushInterval: 5 * time.Millisecond, BuildEvery: 20 * time.Millisecond}
	rec, err := timeline.NewRecorder(tw, st, topts)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := timeline.NewReader(tw, st, topts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-recDone; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "recorder start", func() bool { v, _ := st.GetMeta(context.Background(), timeline.MetaSeq); return v != nil })

	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	pos := func(v, k int) orb.Point { return orb.Point{106.5 + 0.001*float64(k), 29.5 + 0.1*float64(v)} }
	for v := 1; v <= 2; v++ {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", v)), Geometry: pos(v, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	for k := 1; k <= 54; k++ { // every 10 s up to t0+9 min
		for v := 1; v <= 2; v++ {
			s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", v)), Time: t0.Add(time.Duration(k) * 10 * time.Second), HasPos: true, Pos: pos(v, k)}
			if _, _, err := tw.ApplySample(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := tw.Feed().Last()
	waitFor(t, "recorded", func() bool {
		v, _ := st.GetMeta(context.Background(), timeline.MetaSeq)
		return len(v) == 8 && uint64(v[7])|uint64(v[6])<<8 >= last
	})

	h := New(tw, Options{Replay: rd})
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(hctx) }()
	srv := httptest.NewServer(h)
	defer func() {
		hcancel()
		if err := <-hdone; err != nil {
			t.Error(err)
		}
		srv.Close()
	}()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() map[string]any {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	at := t0.Add(5*time.Minute + 5*time.Second) // between k=30 and k=31
	sub := fmt.Sprintf(`{"op":"subscribe","layers":["vehicles"],"bbox":[100,20,110,35],"at":%q,"speed":600,"live":true}`, at.Format(time.RFC3339Nano))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(sub)); err != nil {
		t.Fatal(err)
	}
	var snap map[string]any
	for snap == nil {
		if m := read(); m["op"] == "snapshot" {
			snap = m
		}
	}
	if snap["replay"] != true || len(snap["features"].([]any)) != 2 {
		t.Fatalf("replay snapshot: %v", snap)
	}
	for _, f := range snap["features"].([]any) {
		g := f.(map[string]any)["geometry"].(map[string]any)["coordinates"].([]any)
		if x := g[0].(float64); x != pos(1, 30)[0] {
			t.Fatalf("snapshot position %v, want x %v", g, pos(1, 30)[0])
		}
	}
	var times []string
	var xs []float64
	for {
		m := read()
		if m["op"] == "live" {
			break
		}
		if m["op"] == "delta" {
			times = append(times, m["at"].(string))
			g := m["feature"].(map[string]any)["geometry"].(map[string]any)["coordinates"].([]any)
			xs = append(xs, g[0].(float64))
		}
	}
	if len(times) != 48 {
		t.Fatalf("%d deltas, want 48 (k = 31..54, two trucks)", len(times))
	}
	for i := range times {
		k := 31 + i/2
		if want := t0.Add(time.Duration(k) * 10 * time.Second).UTC().Format(time.RFC3339Nano); times[i] != want || xs[i] != pos(1, k)[0] {
			t.Fatalf("delta %d at %s x %v, want %s x %v", i, times[i], xs[i], want, pos(1, k)[0])
		}
	}
	for m := read(); m["op"] != "snapshot"; m = read() {
	}

	// Pause, speed and seek on the same connection.
	sub = fmt.Sprintf(`{"op":"subscribe","layers":["vehicles"],"bbox":[100,20,110,35],"at":%q,"speed":1}`, t0.Add(time.Minute).Format(time.RFC3339Nano))
	for _, op := range []string{sub, `{"op":"pause"}`, `{"op":"speed","speed":30}`,
		fmt.Sprintf(`{"op":"seek","at":%d}`, t0.Add(3*time.Minute+time.Second).UnixMilli())} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(op)); err != nil {
			t.Fatal(err)
		}
	}
	var paused, fast, sought bool
	for {
		m := read()
		if m["op"] == "clock" && sought {
			paused, fast = m["paused"] == true, m["speed"] == 30.0
			break
		}
		if m["op"] == "snapshot" && m["at"] == t0.Add(3*time.Minute+time.Second).UTC().Format(time.RFC3339Nano) {
			x := m["features"].([]any)[0].(map[string]any)["geometry"].(map[string]any)["coordinates"].([]any)[0]
			if x != pos(1, 18)[0] {
				t.Fatalf("after seek x %v, want %v", x, pos(1, 18)[0])
			}
			sought = true
		}
	}
	if !paused || !fast {
		t.Fatalf("clock after the seek: paused %v, speed 30 %v (a seek keeps the pause and the speed)", paused, fast)
	}
}
