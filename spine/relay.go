package spine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Relay makes any server answer writes (issue 13 item 1): only the leader
// mutates the twin, so an HTTP write that reaches a follower is sent to
// the leader over NATS request/reply (method, URL, headers, body, the
// caller's address) and run there through the same handler; the leader
// answers with status, headers, body and the seq its change reached in the
// change log; the follower waits until its own twin has installed that seq
// before it answers (read your writes), so a client sees its write on the
// server it wrote to, whichever that is.
//
// On the leader a write runs locally, and its answer waits until the
// changes it made are in the change log (committed), so an answered write
// is durable and visible on every server within the log's delivery.
//
// The relay is generic: it wraps the whole HTTP handler, and every method
// but GET, HEAD and OPTIONS under the prefixes (default /api/) goes
// through it, except the paths that are durable on any server by
// themselves (POST /api/telemetry, journaled). A future write route needs
// nothing.
type Relay struct {
	sp   *Spine
	next http.Handler
	opts RelayOptions
	log  *slog.Logger
	m    relayMetrics

	mu    sync.Mutex
	sub   *nats.Subscription
	local bool   // this server leads
	blobs *Blobs // RelayBucket, opened at the first large body
	// holder is the lease holder last seen by Run; moved is closed (and
	// replaced) when it changes.
	holder string
	moved  chan struct{}
}

// errLeaderMoved: the leader a write was sent to was replaced before it
// answered.
var errLeaderMoved = errors.New("spine: the leader changed while the write was in flight")

// Run watches the lease (RelayOptions.LeaseKey) until ctx ends, so that a
// write in flight to a leader that dies is answered as soon as another
// server takes over. Without a LeaseKey it returns at once.
func (r *Relay) Run(ctx context.Context) error {
	if r.opts.LeaseKey == "" {
		return nil
	}
	for ctx.Err() == nil {
		w, err := r.sp.leases.Watch(ctx, r.opts.LeaseKey)
		if err != nil {
			r.log.Warn("relay: cannot watch the lease; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		initial := true
		for e := range w.Updates() {
			if e == nil {
				initial = false // the current value is in
				continue
			}
			// Only a new holder counts: a leader stepping down deletes the
			// lease and still answers what it has; a dead one's expires
			// silently, and its successor's Create is the sign.
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			holder := string(e.Value())
			r.mu.Lock()
			if holder != r.holder {
				r.holder = holder
				if !initial {
					close(r.moved)
					r.moved = make(chan struct{})
				}
			}
			r.mu.Unlock()
		}
		_ = w.Stop()
	}
	return nil
}

// Holder returns the lease holder Run last saw ("" before it saw one, or
// without a LeaseKey).
func (r *Relay) Holder() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holder
}

// leaderMoved returns a channel closed when the lease holder changes.
func (r *Relay) leaderMoved() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.moved
}

// request sends m to the leader and waits for the answer, or errLeaderMoved
// when the lease holder changes meanwhile (the leader died or stepped
// down: it may or may not have run the write, and will not answer).
func (r *Relay) request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	moved := r.leaderMoved()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		m   *nats.Msg
		err error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := r.sp.nc.RequestMsgWithContext(ctx, m)
		done <- answer{resp, err}
	}()
	select {
	case a := <-done:
		return a.m, a.err
	case <-moved:
		return nil, errLeaderMoved
	}
}

// RelayBucket is the object store bucket through which a follower hands
// the leader a request body larger than a NATS message may be (an
// evidence photo is up to 4 MiB; NATS' max_payload defaults to 1 MiB).
// Each blob is read once and deleted; the bucket's TTL removes any that
// a leader dying mid-request left.
const RelayBucket = "TWIN_RELAY"

// relayInlineMax is the largest body sent inside the NATS request; a
// larger one goes through RelayBucket. Headers need room too, and a
// server's max_payload may be set below the default.
func (r *Relay) relayInlineMax() int {
	return int(r.sp.nc.MaxPayload()) - 64<<10
}

// relayBlobs opens RelayBucket once.
func (r *Relay) relayBlobs(ctx context.Context) (*Blobs, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blobs != nil {
		return r.blobs, nil
	}
	st, err := r.sp.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      RelayBucket,
		Description: "CityTwin: request bodies relayed from followers to the leader, read once",
		Storage:     jetstream.FileStorage,
		Replicas:    r.sp.opts.Replicas,
		TTL:         10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("spine: object store %s: %w", RelayBucket, err)
	}
	r.blobs = &Blobs{store: st}
	return r.blobs, nil
}

// RelayOptions configure NewRelay.
type RelayOptions struct {
	// Writes reports whether a request is a write to relay; default: a
	// method other than GET, HEAD, OPTIONS on a path under /api/ other
	// than /api/telemetry.
	Writes func(r *http.Request) bool
	// Journaled reports a write that is durable on any server by itself
	// (journaled): served where it arrives, but on the leader answered
	// only once its changes are committed, like a relayed write; default
	// POST /api/telemetry.
	Journaled func(r *http.Request) bool
	// Committed returns the seq up to which the change log holds this
	// server's changes once everything made so far is logged: on the
	// leader it waits until its tentative changes are committed and
	// returns the seq (or an error when leadership was lost). Required.
	Committed func(ctx context.Context) (uint64, error)
	// Reached waits until this server's twin has installed seq. Required.
	Reached func(ctx context.Context, seq uint64) error
	// LeaseKey is the leader's lease (spine.RunLeader's key). With it, Run
	// watches who holds it, and a write in flight to a leader that is
	// replaced meanwhile (killed mid-request: it will never answer) is
	// answered 503 at once instead of at Timeout. Empty: not watched.
	LeaseKey string
	// Timeout bounds one relayed request; default 15s. NoLeaderWait is how
	// long a follower retries while no leader answers (a failover) before
	// answering 503; default 3s.
	Timeout      time.Duration
	NoLeaderWait time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

type relayMetrics struct {
	forwarded *prometheus.CounterVec
}

// Relay headers on the NATS messages.
const (
	relayMethod = "Twin-Relay-Method"
	relayURL    = "Twin-Relay-Url"
	relayRemote = "Twin-Relay-Remote"
	relayStatus = "Twin-Relay-Status"
	relaySeq    = "Twin-Relay-Seq"
	// relayBody names the blob (RelayBucket) holding a body too large for
	// one NATS message; the message itself then carries none.
	relayBody = "Twin-Relay-Body"
	// SeqHeader is the HTTP response header telling the client the change
	// log seq its write reached.
	SeqHeader = "X-Twin-Seq"
)

// NewRelay wraps next.
func NewRelay(sp *Spine, next http.Handler, opts RelayOptions) *Relay {
	if opts.Writes == nil {
		opts.Writes = DefaultWrites
	}
	if opts.Journaled == nil {
		opts.Journaled = func(r *http.Request) bool {
			return r.Method == http.MethodPost && r.URL.Path == "/api/telemetry"
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.NoLeaderWait <= 0 {
		opts.NoLeaderWait = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Relay{sp: sp, next: next, opts: opts, log: opts.Logger.With("component", "relay"), moved: make(chan struct{})}
	r.m.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_relay_requests_total",
		Help: "HTTP writes by how they were served: local (this server leads), forwarded (to the leader), served (for a follower), no_leader (503)"}, []string{"how"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(r.m.forwarded)
	}
	return r
}

// DefaultWrites: a method other than GET, HEAD, OPTIONS under /api/, but
// not POST /api/telemetry (journaled on any server).
func DefaultWrites(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/api/telemetry"
}

// SetLeader is told when this server starts or stops leading: while it
// leads it answers relayed writes.
func (r *Relay) SetLeader(leading bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.local = leading
	if leading && r.sub == nil {
		sub, err := r.sp.nc.Subscribe(RelaySubject, r.serveRemote)
		if err != nil {
			r.log.Error("relay: cannot subscribe; followers' writes will get 503", "err", err)
			return
		}
		r.sub = sub
	}
	if !leading && r.sub != nil {
		_ = r.sub.Unsubscribe()
		r.sub = nil
	}
}

func (r *Relay) leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.local
}

// ServeHTTP relays writes, serves everything else.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	write, journaled := r.opts.Writes(req), r.opts.Journaled(req)
	if !write && !journaled {
		r.next.ServeHTTP(w, req)
		return
	}
	if r.leading() {
		r.m.forwarded.WithLabelValues("local").Inc()
		r.serveLocal(w, req)
		return
	}
	if journaled {
		r.next.ServeHTTP(w, req)
		return
	}
	r.forward(w, req)
}

// serveLocal runs a write here and answers once its changes are logged.
func (r *Relay) serveLocal(w http.ResponseWriter, req *http.Request) {
	rec := holdResponse()
	defer rec.release()
	r.next.ServeHTTP(rec, req)
	ctx, cancel := context.WithTimeout(req.Context(), r.opts.Timeout)
	defer cancel()
	seq, err := r.opts.Committed(ctx)
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, "write not confirmed", "this server lost the leadership before the change log took the write: "+err.Error(), true)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set(SeqHeader, strconv.FormatUint(seq, 10))
	w.WriteHeader(rec.status())
	_, _ = w.Write(rec.body)
}

// serveRemote runs a follower's write (on the leader).
func (r *Relay) serveRemote(m *nats.Msg) {
	go func() {
		h := m.Header
		body := m.Data
		if name := h.Get(relayBody); name != "" {
			ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
			b, err := r.takeBody(ctx, name)
			cancel()
			if err != nil {
				r.log.Warn("relay: request body not readable", "blob", name, "err", err)
				r.reply(m, http.StatusServiceUnavailable, nil, nil, 0) // the follower retries
				return
			}
			body = b
		}
		req, err := http.NewRequest(h.Get(relayMethod), h.Get(relayURL), bytes.NewReader(body))
		if err != nil {
			r.reply(m, http.StatusBadRequest, nil, []byte(`{"error":"bad relayed request"}`), 0)
			return
		}
		for k, v := range h {
			if strings.HasPrefix(k, "Twin-Relay-") {
				continue
			}
			req.Header[k] = v
		}
		req.RemoteAddr = h.Get(relayRemote)
		req.ContentLength = int64(len(body))
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
		defer cancel()
		req = req.WithContext(ctx)
		if !r.leading() {
			// Lost the leadership meanwhile: let the follower retry.
			r.reply(m, http.StatusServiceUnavailable, nil, nil, 0)
			return
		}
		r.m.forwarded.WithLabelValues("served").Inc()
		rec := holdResponse()
		defer rec.release() // reply has sent the body by then
		r.next.ServeHTTP(rec, req)
		seq, err := r.opts.Committed(ctx)
		if err != nil {
			r.reply(m, http.StatusServiceUnavailable, nil, nil, 0)
			return
		}
		r.reply(m, rec.status(), rec.Header(), rec.body, seq)
	}()
}

// takeBody reads a relayed body from RelayBucket. The blob stays until
// the follower deletes it (it may retry the request on another leader) or
// the bucket's TTL removes it.
func (r *Relay) takeBody(ctx context.Context, name string) ([]byte, error) {
	bl, err := r.relayBlobs(ctx)
	if err != nil {
		return nil, err
	}
	return bl.Get(ctx, name)
}

func (r *Relay) reply(m *nats.Msg, status int, hdr http.Header, body []byte, seq uint64) {
	out := nats.NewMsg(m.Reply)
	for k, v := range hdr {
		out.Header[k] = v
	}
	out.Header.Set(relayStatus, strconv.Itoa(status))
	out.Header.Set(relaySeq, strconv.FormatUint(seq, 10))
	out.Data = body
	if err := m.RespondMsg(out); err != nil {
		r.log.Warn("relay: reply", "err", err)
	}
}

// forward sends a write to the leader and answers once this server has
// installed its change.
func (r *Relay) forward(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "read body", err.Error(), false)
		return
	}
	m := nats.NewMsg(RelaySubject)
	for k, v := range req.Header {
		m.Header[k] = v
	}
	m.Header.Set(relayMethod, req.Method)
	m.Header.Set(relayURL, req.URL.RequestURI())
	m.Header.Set(relayRemote, req.RemoteAddr)
	m.Data = body
	ctx, cancel := context.WithTimeout(req.Context(), r.opts.Timeout)
	defer cancel()
	if len(body) > r.relayInlineMax() {
		// Too large for one NATS message: hand it over as a blob.
		bl, err := r.relayBlobs(ctx)
		if err == nil {
			name := rand.Text()
			err = bl.Put(ctx, name, body)
			defer bl.Delete(name) //nolint:contextcheck // the request's context may be done by then
			m.Header.Set(relayBody, name)
			m.Data = nil
		}
		if err != nil {
			writeJSONError(w, http.StatusServiceUnavailable, "body not relayed", err.Error(), true)
			return
		}
	}
	deadline := time.Now().Add(r.opts.NoLeaderWait)
	var resp *nats.Msg
	for {
		resp, err = r.request(ctx, m)
		if errors.Is(err, errLeaderMoved) {
			r.m.forwarded.WithLabelValues("no_leader").Inc()
			writeJSONError(w, http.StatusServiceUnavailable, "leader changed", "the leader was replaced while it had this write: it may or may not have been applied; retry (a PUT or DELETE safely)", true)
			return
		}
		retry := errors.Is(err, nats.ErrNoResponders) || (err == nil && resp.Header.Get(relayStatus) == "503" && len(resp.Data) == 0)
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil || resp.Header.Get(relayStatus) == "503" && len(resp.Data) == 0 {
		r.m.forwarded.WithLabelValues("no_leader").Inc()
		detail := "no server leads the twin right now (failover in progress?)"
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			detail = err.Error()
		}
		writeJSONError(w, http.StatusServiceUnavailable, "no leader", detail, true)
		return
	}
	r.m.forwarded.WithLabelValues("forwarded").Inc()
	status, _ := strconv.Atoi(resp.Header.Get(relayStatus))
	seq, _ := strconv.ParseUint(resp.Header.Get(relaySeq), 10, 64)
	if seq > 0 {
		if err := r.opts.Reached(ctx, seq); err != nil {
			r.log.Warn("relay: the leader took the write but this server has not installed it yet", "seq", seq, "err", err)
		}
	}
	for k, v := range resp.Header {
		if strings.HasPrefix(k, "Twin-Relay-") {
			continue
		}
		w.Header()[k] = v
	}
	w.Header().Set(SeqHeader, strconv.FormatUint(seq, 10))
	if status == 0 {
		status = http.StatusBadGateway
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Data)
}

func writeJSONError(w http.ResponseWriter, status int, msg, detail string, retry bool) {
	w.Header().Set("Content-Type", "application/json")
	if retry {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "detail": detail})
}

// String describes the relay for logs.
func (r *Relay) String() string { return fmt.Sprintf("relay(leading=%v)", r.leading()) }
