package httpin

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
)

// TestHistoryLatestFirst: GET .../history?limit=N answers the latest N
// samples, newest first, by default (issue 11 item 14), over a real store
// with a dense burst and sparse samples years apart; order=asc keeps the
// oldest first.
func TestHistoryLatestFirst(t *testing.T) {
	f := newFixture(t, Options{MaxHistoryLimit: 5000})
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.api.st = st // the mounted handlers read the real store
	f.do(t, "PUT", "/api/entities/vehicles/truck", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]}}`)
	id := twin.NewID(twin.Vehicles, "truck")
	var all []time.Time // oldest first
	var ss []twin.Sample
	add := func(ts time.Time) {
		all = append(all, ts)
		ss = append(ss, twin.Sample{ID: id, Time: ts, HasPos: true, Pos: orb.Point{106.6, 29.6}})
	}
	add(time.Date(2003, 5, 1, 0, 0, 0, 0, time.UTC)) // sparse, years back
	add(time.Date(2019, 5, 1, 0, 0, 0, 0, time.UTC))
	for k := 0; k < 3000; k++ { // dense: 10 per second
		add(t0.Add(-time.Hour + time.Duration(k)*100*time.Millisecond))
	}
	if err := st.AppendHistory(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	get := func(q string) []time.Time {
		req := fmt.Sprintf("/api/entities/vehicles/truck/history%s", q)
		code, b := f.do(t, "GET", req, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", req, code, b)
		}
		var fc struct {
			Features []struct {
				Properties struct {
					TS time.Time `json:"ts"`
				} `json:"properties"`
			} `json:"features"`
		}
		if err := json.Unmarshal(b, &fc); err != nil {
			t.Fatal(err)
		}
		var out []time.Time
		for _, ft := range fc.Features {
			out = append(out, ft.Properties.TS)
		}
		return out
	}
	newest := func(n int) []time.Time {
		var out []time.Time
		for k := len(all) - 1; k >= 0 && len(out) < n; k-- {
			out = append(out, all[k])
		}
		return out
	}
	same := func(what string, got, want []time.Time) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d samples, want %d", what, len(got), len(want))
		}
		for k := range want {
			if !got[k].Equal(want[k]) {
				t.Fatalf("%s: [%d] = %s, want %s", what, k, got[k], want[k])
			}
		}
	}
	same("limit=5", get("?limit=5"), newest(5))
	same("limit=5&order=desc", get("?limit=5&order=desc"), newest(5))
	same("limit=2500", get("?limit=2500"), newest(2500))
	same("every sample", get("?limit=5000"), newest(len(all)))
	same("order=asc", get("?limit=3&order=asc"), all[:3])
	to := t0.Add(-30 * time.Minute)
	var before []time.Time
	for k := len(all) - 1; k >= 0 && len(before) < 4; k-- {
		if all[k].Before(to) {
			before = append(before, all[k])
		}
	}
	same("to=", get("?limit=4&to="+to.Format(time.RFC3339)), before)
	same("sparse only", get("?limit=10&to=2020-01-01T00:00:00Z"), []time.Time{all[1], all[0]})
	same("from= after the sparse ones", get("?limit=10&from=2010-01-01T00:00:00Z&to=2020-01-01T00:00:00Z"), []time.Time{all[1]})
}
