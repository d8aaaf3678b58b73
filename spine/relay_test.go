package spine_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citytwin/citytwin/spine"
)

// TestRelay: a write on a server that does not lead runs on the leader
// (same handler, same headers and body), is answered with the leader's
// status, body and seq once this server has reached that seq; reads are
// served locally; with no leader the answer is 503 with Retry-After.
func TestRelay(t *testing.T) {
	url := natsServer(t)
	leaderSp := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "a"})
	followerSp := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "b"})
	var ranOn atomic.Value
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ranOn.Store(name)
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Auth-Seen", r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + string(b)))
		})
	}
	var reached atomic.Uint64
	opts := func() spine.RelayOptions {
		return spine.RelayOptions{NoLeaderWait: 300 * time.Millisecond,
			Committed: func(context.Context) (uint64, error) { return 7, nil },
			Reached:   func(_ context.Context, seq uint64) error { reached.Store(seq); return nil }}
	}
	leader := spine.NewRelay(leaderSp, handler("a"), opts())
	follower := spine.NewRelay(followerSp, handler("b"), opts())

	put := func(r http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPut, "/api/entities/vehicles/x?y=1", strings.NewReader("body"))
		req.Header.Set("Authorization", "Bearer t")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}
	if w := put(follower); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"error"`) {
		t.Fatalf("no leader: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	leader.SetLeader(true)
	w := put(follower)
	if w.Code != http.StatusCreated || w.Body.String() != "PUT /api/entities/vehicles/x?y=1 body" || ranOn.Load() != "a" ||
		w.Header().Get("X-Auth-Seen") != "Bearer t" || w.Header().Get(spine.SeqHeader) != "7" || reached.Load() != 7 {
		t.Fatalf("relayed: %d %s on %v, headers %v, reached %d", w.Code, w.Body, ranOn.Load(), w.Header(), reached.Load())
	}
	if w := put(leader); w.Code != http.StatusCreated || ranOn.Load() != "a" || w.Header().Get(spine.SeqHeader) != "7" {
		t.Fatalf("local on the leader: %d %v", w.Code, w.Header())
	}
	get := httptest.NewRequest(http.MethodGet, "/api/entities/vehicles/x", nil)
	follower.ServeHTTP(httptest.NewRecorder(), get)
	if ranOn.Load() != "b" {
		t.Fatal("a read went to the leader")
	}
	leader.SetLeader(false)
	if w := put(follower); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("after the leader stepped down: %d", w.Code)
	}
}
