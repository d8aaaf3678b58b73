package acceptance

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestReplayAfterKill9: timestamped telemetry acknowledged before a kill
// -9 is in the replay timeline once the server is back on the same data
// directory: the snapshot at every minute, before and after the kill, has
// each truck where its fix of that minute put it. Counted: not one fix
// lost.
//
// The first life's recorder never flushes (--replay-flush-interval 1h)
// while the store writer does: after the kill the twin is loaded from the
// store, its feed begins after the writer's seq, and the recorder must
// read the changes since its own last flush from the change log
// (timeline.Options.Backfill). With the default interval a loaded CI
// machine now and then reached that state by itself, and the recorder
// then lost the first life's fixes.
func TestReplayAfterKill9(t *testing.T) {
	o := serveOpts{data: t.TempDir(), key: writeKey(t), args: []string{"--replay-flush-interval", "1h"}}
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	sfx := suffix(t)
	const trucks = 20
	name := func(i int) string { return fmt.Sprintf("rk-%d-%s", i, sfx) }
	for i := range trucks {
		s.putVehicle(t, tok, name(i), 106.50, 29.55+0.001*float64(i), map[string]any{"kind": "muck_truck"})
	}
	start := time.Now().Add(-40 * time.Minute).Truncate(time.Minute).UTC()
	at := func(m int) time.Time { return start.Add(time.Duration(m)*time.Minute + 10*time.Second) }
	pos := func(i, m int) [2]float64 { return [2]float64{106.50 + 0.001*float64(m+1), 29.55 + 0.001*float64(i)} }
	send := func(s *server, m int) {
		var lines []any
		for i := range trucks {
			p := pos(i, m)
			lines = append(lines, map[string]any{"id": name(i), "ts": at(m).Format(time.RFC3339Nano), "lon": p[0], "lat": p[1]})
		}
		for _, r := range s.postTelemetry(t, tok, lines...) {
			if r.Outcome != "applied" && r.Outcome != "accepted" { // accepted: in the telemetry log, applied by the leader soon
				t.Fatalf("minute %d: line %d %s: %s %s", m, r.Line, r.ID, r.Outcome, r.Reason)
			}
		}
	}
	const killAt, minutes = 10, 15
	for m := range killAt {
		send(s, m)
	}
	// The store writer has written every fix (its seq is past them).
	eventually(t, 30*time.Second, "the store writer's flush", func() bool {
		return s.metrics(t, "twin_writer_pending_items")[""] == 0 && s.metrics(t, "twin_writer_flushed_items_total")[""] >= trucks*killAt
	})
	s.kill9(t) // the recorder has not flushed the fixes
	o.args = nil
	s = startServer(t, o)
	eventually(t, 30*time.Second, "the recorder reading the first life's fixes from the change log", func() bool {
		return s.metrics(t, "twin_timeline_backfilled_changes_total")[""] >= trucks*killAt
	})
	for m := killAt; m < minutes; m++ {
		send(s, m)
	}

	wrong := func(m int) string {
		var fc featureCollection
		q := url.Values{"at": {at(m).Add(20 * time.Second).Format(time.RFC3339Nano)}, "layers": {"vehicles"}, "bbox": {"106.4,29.5,106.6,29.6"}}
		s.must(t, http.StatusOK, http.MethodGet, "/api/snapshot?"+q.Encode(), tok, nil).json(t, &fc)
		got := map[string][2]float64{}
		for _, f := range fc.Features {
			if f.Geometry != nil && f.Geometry.Type == "Point" {
				got[f.ID] = f.point(t)
			}
		}
		for i := range trucks {
			p, ok := got["vehicles/"+name(i)]
			if w := pos(i, m); !ok || math.Abs(p[0]-w[0]) > 1e-7 || math.Abs(p[1]-w[1]) > 1e-7 {
				return fmt.Sprintf("minute %d: %s at %v (present %v), want %v", m, name(i), p, ok, w)
			}
		}
		return ""
	}
	eventually(t, 30*time.Second, "the last minute recorded", func() bool { return wrong(minutes-1) == "" })
	for m := range minutes {
		if d := wrong(m); d != "" {
			t.Error(d)
		}
	}
}
