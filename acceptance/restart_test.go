package acceptance

import (
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// TestRestartRestoresState: telemetry applied before a graceful stop is
// there, same version and position, after a restart on the same store
// (CONTRACT §1: the embedded store in --data, and PostGIS with --db).
func TestRestartRestoresState(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		restartCheck(t, serveOpts{data: t.TempDir(), key: writeKey(t)})
	})
	t.Run("postgis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the PostGIS restart")
		}
		restartCheck(t, serveOpts{data: t.TempDir(), key: writeKey(t), db: pgtest.New(t)})
	})
}

func restartCheck(t *testing.T, o serveOpts) {
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	name := "acc-rs-" + suffix(t)
	s.putVehicle(t, tok, name, 106.55, 29.56, map[string]any{"kind": "patrol", "plate": "渝A·00001"})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	res := s.postTelemetry(t, tok,
		map[string]any{"id": name, "ts": t0.Format(time.RFC3339Nano), "lon": 106.551, "lat": 29.561, "speed_kmh": 12.5},
		map[string]any{"id": name, "ts": t0.Add(5 * time.Second).Format(time.RFC3339Nano), "lon": 106.552, "lat": 29.562, "speed_kmh": 20.0},
	)
	for _, r := range res {
		if r.Outcome != "applied" {
			t.Fatalf("telemetry results %+v, want applied", res)
		}
	}
	before, _ := s.get(t, tok, "vehicles", name)
	s.stop(t)

	s2 := startServer(t, o)
	after, ok := s2.get(t, tok, "vehicles", name)
	if !ok {
		t.Fatalf("vehicles/%s gone after restart", name)
	}
	if after.Version != before.Version || after.point(t) != before.point(t) {
		t.Errorf("after restart v%d at %v, want v%d at %v", after.Version, after.point(t), before.Version, before.point(t))
	}
	if after.Props["plate"] != "渝A·00001" || after.Props["speed_kmh"] != before.Props["speed_kmh"] {
		t.Errorf("after restart props %v, want %v", after.Props, before.Props)
	}
	// The restarted server continues versioning and refuses the old fix
	// as a duplicate.
	res = s2.postTelemetry(t, tok,
		map[string]any{"id": name, "ts": t0.Add(5 * time.Second).Format(time.RFC3339Nano), "lon": 106.552, "lat": 29.562},
		map[string]any{"id": name, "ts": t0.Add(10 * time.Second).Format(time.RFC3339Nano), "lon": 106.553, "lat": 29.563},
	)
	if len(res) != 2 || res[0].Outcome != "duplicate" || res[1].Outcome != "applied" {
		t.Errorf("telemetry after restart %+v, want duplicate then applied", res)
	}
	if f, _ := s2.get(t, tok, "vehicles", name); f.Version != before.Version+1 {
		t.Errorf("version after restart + one fix = %d, want %d", f.Version, before.Version+1)
	}
}
