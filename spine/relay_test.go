package spine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/spine"
)

// TestRelay: a write on a server that does not lead runs on the leader
// (same handler, same headers and body), is answered with the leader's
// status, body and seq once this server has reached that seq; reads are
// served locally; with no leader the answer is 503 with Retry-After.
func TestRelay(t *testing.T) {
	url := natstest.Start(t)
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

// TestRelayLargeBody: a body larger than a NATS message may be (an
// evidence photo of up to 4 MiB; max_payload is 1 MiB by default) reaches
// the leader whole, through the relay's object store bucket, which keeps
// nothing once answered.
func TestRelayLargeBody(t *testing.T) {
	url := natstest.Start(t)
	leaderSp := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "a"})
	followerSp := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "b"})
	var got atomic.Value
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(b)
		w.WriteHeader(http.StatusCreated)
	})
	opts := spine.RelayOptions{Committed: func(context.Context) (uint64, error) { return 1, nil },
		Reached: func(context.Context, uint64) error { return nil }}
	leader := spine.NewRelay(leaderSp, echo, opts)
	follower := spine.NewRelay(followerSp, echo, opts)
	leader.SetLeader(true)
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/incidents/x/evidence", bytes.NewReader(body))
	w := httptest.NewRecorder()
	follower.ServeHTTP(w, req)
	if w.Code != http.StatusCreated {
		t.Fatalf("large body through the relay: %d %s", w.Code, w.Body)
	}
	if b, _ := got.Load().([]byte); !bytes.Equal(b, body) {
		t.Fatalf("the leader got %d bytes, want the %d sent", len(b), len(body))
	}
	ctx := context.Background()
	st, err := followerSp.JetStream().ObjectStore(ctx, spine.RelayBucket)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := st.List(ctx); err == nil || len(l) != 0 {
		t.Fatalf("relay bucket keeps %d blobs after the answer (err %v)", len(l), err)
	}
}

// TestBlobs: a blob put on one server is read on another; the same name
// again is kept as is; a missing one is fs.ErrNotExist.
func TestBlobs(t *testing.T) {
	url := natstest.Start(t)
	ctx := context.Background()
	a, err := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "a"}).Blobs(ctx, spine.EvidenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "b"}).Blobs(ctx, spine.EvidenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("photo"), 100_000)
	if err := a.Put(ctx, "x.jpg", data); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "x.jpg", data); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "x.jpg"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get on b: %d bytes, %v", len(got), err)
	}
	if _, err := b.Get(ctx, "y.jpg"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing blob: %v", err)
	}
}

// TestRelayLeaderDiesMidRequest: a write delivered to a leader that never
// answers (killed with -9 while it had it) is answered 503 "leader
// changed" as soon as another server holds the lease, not at the relay's
// timeout.
func TestRelayLeaderDiesMidRequest(t *testing.T) {
	url := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followerSp := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "b"})
	dead := open(t, spine.Options{URL: url, DataDir: t.TempDir(), Name: "a"})
	kv, err := followerSp.JetStream().KeyValue(ctx, spine.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "applier", []byte("a")); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	sub, err := dead.Conn().Subscribe(spine.RelaySubject, func(*nats.Msg) { got <- struct{}{} }) // takes it, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	follower := spine.NewRelay(followerSp, http.NotFoundHandler(), spine.RelayOptions{LeaseKey: "applier", Timeout: time.Minute,
		Committed: func(context.Context) (uint64, error) { return 1, nil },
		Reached:   func(context.Context, uint64) error { return nil }})
	done := make(chan error, 1)
	go func() { done <- follower.Run(ctx) }()
	eventually(t, "the relay watching the lease", func() bool { return follower.Holder() == "a" })
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		follower.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/api/entities/vehicles/x", strings.NewReader("{}")))
		answered <- w
	}()
	<-got                                                          // the dead leader has the write
	if _, err := kv.Put(ctx, "applier", []byte("c")); err != nil { // another server takes over
		t.Fatal(err)
	}
	w := <-answered
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "leader changed") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("write in flight to a dead leader: %d %s", w.Code, w.Body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
