package acceptance

import (
	"fmt"
	"net/http"
	"strings"
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

// TestHistoryStores: disordered and duplicated telemetry leaves each ts
// once in history, in time order, with positions and readings, on both
// stores (CONTRACT §3, §5).
func TestHistoryStores(t *testing.T) {
	for _, store := range []string{"embedded", "postgis"} {
		t.Run(store, func(t *testing.T) {
			o := serveOpts{}
			if store == "postgis" {
				if testing.Short() {
					t.Skip("-short: skipping PostGIS")
				}
				o.db = pgtest.New(t)
			}
			s := startServer(t, o)
			tok := s.token(t, "operator", "500000")
			name := "acc-h-" + suffix(t)
			s.putVehicle(t, tok, name, 106.55, 29.56, nil)
			t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
			at := func(sec int) string { return t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano) }
			var lines []any
			for _, sec := range []int{0, 10, 5, 10, 20, 15, 0, 25} {
				lines = append(lines, map[string]any{"id": name, "ts": at(sec), "lon": 106.55 + float64(sec)*1e-4, "lat": 29.56, "speed_kmh": float64(sec), "values": map[string]any{"fuel": 100 - float64(sec)}})
			}
			res := s.postTelemetry(t, tok, lines...)
			var outcomes []string
			for _, r := range res {
				outcomes = append(outcomes, r.Outcome)
			}
			// Line 7 resends line 1 (older than the current state): the twin
			// keeps only the newest ts, so it may report "history"; what
			// counts is that history holds it once (below).
			got := strings.Join(outcomes, ",")
			if got != "applied,applied,history,duplicate,applied,history,duplicate,applied" && got != "applied,applied,history,duplicate,applied,history,history,applied" {
				t.Errorf("outcomes %s", got)
			}
			var h struct {
				Features []struct {
					Geometry   *geometry `json:"geometry"`
					Properties struct {
						TS       string             `json:"ts"`
						SpeedKmh *float64           `json:"speed_kmh"`
						Values   map[string]float64 `json:"values"`
					} `json:"properties"`
				} `json:"features"`
			}
			eventually(t, 10*time.Second, "six states in history", func() bool {
				s.must(t, http.StatusOK, http.MethodGet, "/api/entities/vehicles/"+name+"/history?order=asc", tok, nil).json(t, &h)
				return len(h.Features) >= 6
			})
			var secs []string
			for _, f := range h.Features {
				ts, _ := time.Parse(time.RFC3339Nano, f.Properties.TS)
				sec := ts.Sub(t0).Seconds()
				secs = append(secs, fmt.Sprint(sec))
				if f.Properties.SpeedKmh == nil || *f.Properties.SpeedKmh != sec || f.Properties.Values["fuel"] != 100-sec || f.Geometry == nil {
					t.Errorf("history state at +%gs: speed %v values %v geometry %v", sec, f.Properties.SpeedKmh, f.Properties.Values, f.Geometry)
				}
			}
			if got := strings.Join(secs, ","); got != "0,5,10,15,20,25" {
				t.Errorf("history at +%s s, want 0,5,10,15,20,25", got)
			}
		})
	}
}
