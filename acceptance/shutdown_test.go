package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSigtermLosesNothing (issue 11 item 2): telemetry streams in, each
// reading raising an alert; the server gets SIGTERM mid-stream and stops
// in order (intake, rules, egress, writer, broker), exiting 0. After a
// restart on the same data every reading the server acknowledged is in
// history, and every alert its rule raised is stored: the rules drained the
// feed before the writer's final flush, so no alert of the last readings is
// lost (their telemetry, already persisted, is never replayed to raise them
// again).
func TestSigtermLosesNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, []byte(rulesV1), 0o644); err != nil {
		t.Fatal(err)
	}
	o := serveOpts{data: t.TempDir(), key: writeKey(t), args: []string{"--rules", file}}
	s := startServer(t, o)
	op := s.token(t, "operator", "500000")
	sfx := suffix(t)
	const devices = 80
	name := func(i int) string { return fmt.Sprintf("acc-term%d-%s", i, sfx) }
	for i := 0; i < devices; i++ {
		s.must(t, http.StatusCreated, http.MethodPut, "/api/entities/devices/"+name(i), op, pointFeature(106.55, 29.56, map[string]any{"kind": "thermo"}))
	}

	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	wg.Add(1)
	ts := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	go func() {
		defer wg.Done()
		for i := 0; i < devices; i++ {
			line, _ := json.Marshal(map[string]any{"id": name(i), "ts": ts, "values": map[string]any{"temp": 60.0}})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/api/telemetry", strings.NewReader(string(line)+"\n"))
			req.Header.Set("Authorization", "Bearer "+op)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				return // the server is gone
			}
			var out struct {
				Results []lineResult `json:"results"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			cancel()
			if err == nil && resp.StatusCode == http.StatusOK && len(out.Results) == 1 && out.Results[0].Outcome != "error" {
				mu.Lock()
				acked = append(acked, i)
				mu.Unlock()
			}
		}
	}()
	eventually(t, 60*time.Second, "a third of the stream acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= devices/3
	})
	s.stop(t) // SIGTERM mid-stream; fails the test unless it exits 0
	wg.Wait()
	if t.Failed() {
		return
	}
	mu.Lock()
	got := append([]int(nil), acked...)
	mu.Unlock()
	t.Logf("%d of %d readings acknowledged before SIGTERM", len(got), devices)

	s2 := startServer(t, o)
	eventually(t, 60*time.Second, "every acknowledged reading in history and its alert stored", func() bool {
		var fc featureCollection
		s2.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/alerts/items?rule=acc-hot&limit=1000", op, nil).json(t, &fc)
		alerts := map[string]bool{}
		for _, f := range fc.Features {
			if subj, _ := f.Props["subject"].(string); subj != "" {
				alerts[subj] = true
			}
		}
		for _, i := range got {
			if !alerts["devices/"+name(i)] {
				return false
			}
			r := s2.do(t, http.MethodGet, "/api/entities/devices/"+name(i)+"/history", op, nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), `"values"`) {
				return false
			}
		}
		return true
	})
}
