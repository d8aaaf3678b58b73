package acceptance

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// TestDemoRestartFidelity: every member of a sample of demo objects (nested
// props, region path, grid, version, times) reads back identically after a
// graceful restart, on the embedded store and on PostGIS.
func TestDemoRestartFidelity(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		fidelity(t, serveOpts{demo: true, data: t.TempDir(), key: writeKey(t)})
	})
	t.Run("postgis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the PostGIS demo restart")
		}
		fidelity(t, serveOpts{demo: true, data: t.TempDir(), key: writeKey(t), db: pgtest.New(t)})
	})
}

func fidelity(t *testing.T, o serveOpts) {
	s := startServer(t, o)
	tok := s.token(t, "admin", "500000")
	// One object of every layer, plus a device with readings.
	var paths []string
	for _, l := range []string{"regions", "grids", "roads", "bridges", "rivers", "buildings", "devices", "vehicles", "workers"} {
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/"+l+"/items?limit=1", tok, nil).json(t, &fc)
		if len(fc.Features) == 0 {
			t.Errorf("demo city has no %s", l)
			continue
		}
		paths = append(paths, "/api/entities/"+fc.Features[0].ID)
	}
	paths = append(paths, "/api/entities/bridges/qiansimen")
	var devs featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/devices/items?limit=1&kind=septic_gas", tok, nil).json(t, &devs)
	if len(devs.Features) == 1 {
		dev := devs.Features[0]
		res := s.postTelemetry(t, tok, map[string]any{"id": dev.ID[len("devices/"):], "ts": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), "values": map[string]any{"ch4": 1.5, "h2s": 0.25}})
		if res[0].Outcome != "applied" {
			t.Fatalf("device reading: %+v", res)
		}
		paths = append(paths, "/api/entities/"+dev.ID)
	}
	// An incident (nested sla and history).
	w, _ := s.get(t, tok, "workers", "w0001")
	p := w.point(t)
	var inc incidentAnswer
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", tok, map[string]any{"type": "acc-fidelity", "lon": p[0], "lat": p[1]}).json(t, &inc)
	paths = append(paths, "/api/entities/"+inc.Incident.ID)

	before := map[string][]byte{}
	for _, path := range paths {
		before[path] = s.must(t, http.StatusOK, http.MethodGet, path, tok, nil).body
	}
	s.stop(t)
	s2 := startServer(t, o)
	for _, path := range paths {
		after := s2.do(t, http.MethodGet, path, tok, nil)
		if after.status != http.StatusOK {
			t.Errorf("GET %s after restart: %d", path, after.status)
			continue
		}
		// PostGIS keeps times to the microsecond (timestamptz), the
		// embedded store to the nanosecond: compare at microseconds here;
		// TestDuplicateAcrossRestartNanoTS covers what that costs.
		if !jsonEqual(t, microTimes(before[path]), microTimes(after.body)) {
			t.Errorf("GET %s changed across the restart:\nbefore %s\nafter  %s", path, truncate(before[path]), truncate(after.body))
		}
	}
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ca, _ := json.Marshal(x)
	cb, _ := json.Marshal(y)
	return bytes.Equal(ca, cb)
}

// rfc3339Frac matches the fraction of an RFC 3339 time beyond microseconds.
var rfc3339Frac = regexp.MustCompile(`(T\d\d:\d\d:\d\d)\.(\d{1,9})Z`)

// microTimes rewrites every RFC 3339 UTC time in a JSON document to exactly
// six fractional digits, truncating.
func microTimes(b []byte) []byte {
	return rfc3339Frac.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := rfc3339Frac.FindSubmatch(m)
		frac := string(sub[2]) + "000000000"
		return []byte(string(sub[1]) + "." + frac[:6] + "Z")
	})
}

// TestDuplicateAcrossRestartNanoTS: a fix whose ts has nanosecond
// precision (RFC 3339 allows it; the decoder accepts it) and is sent again
// after a restart must still be a duplicate (CONTRACT §3), whatever the
// store's time precision.
func TestDuplicateAcrossRestartNanoTS(t *testing.T) {
	for _, store := range []string{"embedded", "postgis"} {
		t.Run(store, func(t *testing.T) {
			o := serveOpts{data: t.TempDir(), key: writeKey(t)}
			if store == "postgis" {
				if testing.Short() {
					t.Skip("-short: skipping PostGIS")
				}
				o.db = pgtest.New(t)
			}
			s := startServer(t, o)
			tok := s.token(t, "operator", "500000")
			name := "acc-ns-" + suffix(t)
			s.putVehicle(t, tok, name, 106.55, 29.56, nil)
			ts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second).Add(123456789).Format(time.RFC3339Nano)
			line := map[string]any{"id": name, "ts": ts, "lon": 106.551, "lat": 29.561}
			if res := s.postTelemetry(t, tok, line); res[0].Outcome != "applied" {
				t.Fatalf("first fix: %+v", res)
			}
			before, _ := s.get(t, tok, "vehicles", name)
			s.stop(t)
			s2 := startServer(t, o)
			if res := s2.postTelemetry(t, tok, line); res[0].Outcome != "duplicate" {
				t.Errorf("the same fix (ts %s) after a restart: outcome %q, want duplicate", ts, res[0].Outcome)
			}
			if f, _ := s2.get(t, tok, "vehicles", name); f.Version != before.Version {
				t.Errorf("version %d after resending, want %d", f.Version, before.Version)
			}
		})
	}
}
