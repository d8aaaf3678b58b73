// Package httpin is the HTTP side of ingest (CONTRACT §3, §5): NDJSON
// telemetry (POST /api/telemetry), entity registration (PUT/GET/DELETE
// /api/entities/{layer}/{name}) and an object's history. The server mounts
// the handlers and authenticates; every handler filters by the request's
// principal (auth.FromContext), answering 404 for objects out of scope, as
// if absent.
package httpin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// Options configure an API. Zero values take defaults.
type Options struct {
	// MaxBody bounds request bodies in bytes (default 8 MiB); larger ones
	// get 413 and nothing is applied.
	MaxBody int64
	// Limits apply to each telemetry line (MaxBytes per line).
	Limits telemetry.Limits
	// AutoRegister creates vehicles/{id} for unknown telemetry ids.
	AutoRegister bool
	// DeadLetter receives every rejected telemetry line (the server
	// publishes it to twin/deadletter); nil = counted and logged only.
	DeadLetter func(ctx context.Context, topic string, payload []byte, reason string)
	// Enricher, when set, lets PUT check that a region-scoped principal
	// creates or moves an object only inside its region (the twin's own
	// enricher; without it only the object's current state is checked).
	Enricher twin.Enricher
	// MaxVertices bounds the positions of one PUT geometry (default
	// 20,000: a district boundary has a few thousand); larger ones get 400
	// before any costlier check.
	MaxVertices int
	// DefaultHistoryLimit is the history limit when none is asked (default
	// 1000); MaxHistoryLimit caps what may be asked (default 100000).
	DefaultHistoryLimit int
	MaxHistoryLimit     int
	Logger              *slog.Logger          // default slog.Default()
	Registerer          prometheus.Registerer // nil: metrics unregistered
	Clock               clock.Clock           // default the twin's clock
	// Submit, when set, makes telemetry durable: each valid line goes into
	// the log (ingest/journal) instead of straight into the twin, and the
	// answer waits for it. It returns the line's outcome, or an error that
	// the log's applier has already dead-lettered and counted, or one the
	// log could not take the line for (not the line's fault).
	Submit func(ctx context.Context, name string, ts time.Time, line []byte) (string, error)
	// SubmitAll, when set, is used instead of Submit: every valid line of
	// a body at once, so the log takes them pipelined (one round trip for
	// the body, not one per line). It returns one Submitted per Line, in
	// order, each as Submit would have answered.
	SubmitAll func(ctx context.Context, lines []Line) []Submitted
	// Local, when set and true for a request, applies its lines to the
	// twin here instead of Submit/SubmitAll, and Committed then waits
	// until the change log holds what they changed before the answer:
	// on the server that leads (it applies the log too), the change log
	// makes a line as durable as the telemetry log would, without a
	// second log write, its delivery back, its ack and a decode on the
	// way (~15 % of the CPU of a geofenced write, issue 16 goal 1). A
	// line the twin refuses because this server no longer leads goes to
	// the log after all. Both or neither.
	Local     func() bool
	Committed func(ctx context.Context) error
}

// Line is a valid telemetry line on its way to the log (SubmitAll).
type Line struct {
	Name string
	TS   time.Time
	Body []byte
}

// Submitted is a Line's fate: its outcome, or an error as Submit's.
type Submitted struct {
	Outcome string
	Err     error
}

// DefaultMaxVertices is Options.MaxVertices' default.
const DefaultMaxVertices = 20000

// DeadLetterTopic is the "topic" HTTP dead letters carry: the source.
const DeadLetterTopic = "POST /api/telemetry"

// API holds the handlers. Safe for concurrent use.
type API struct {
	tw      *twin.Twin
	st      twin.Store
	opts    Options
	log     *slog.Logger
	metrics *telemetry.Metrics
	// scratch holds *telemetryScratch: a batch's results, indexes and
	// answer, reused across requests.
	scratch sync.Pool
}

// New builds the handlers over the twin and its store (history reads).
func New(tw *twin.Twin, st twin.Store, opts Options) *API {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 8 << 20
	}
	if opts.MaxVertices <= 0 {
		opts.MaxVertices = DefaultMaxVertices
	}
	if opts.DefaultHistoryLimit <= 0 {
		opts.DefaultHistoryLimit = 1000
	}
	if opts.MaxHistoryLimit <= 0 {
		opts.MaxHistoryLimit = 100000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = tw.Clock()
	}
	return &API{tw: tw, st: st, opts: opts, log: opts.Logger.With("component", "httpin"),
		metrics: telemetry.NewMetrics(opts.Registerer)}
}

// Mount registers the handlers on mux with Go 1.22 patterns.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/telemetry", a.Telemetry)
	mux.HandleFunc("PUT /api/entities/{layer}/{name}", a.PutEntity)
	mux.HandleFunc("GET /api/entities/{layer}/{name}", a.GetEntity)
	mux.HandleFunc("DELETE /api/entities/{layer}/{name}", a.DeleteEntity)
	mux.HandleFunc("GET /api/entities/{layer}/{name}/history", a.History)
}

// Metrics returns the ingest counters (shared with ingest/mqttin).
func (a *API) Metrics() *telemetry.Metrics { return a.metrics }

// sees applies the request principal's scope (auth.Of: no principal in
// the context sees nothing, as the server's guard always sets one).
func sees(r *http.Request, f *twin.Feature) bool {
	return auth.Of(r.Context()).Sees(f)
}

// pathID reads {layer}/{name}: an unknown layer is 404, a bad name 400.
func pathID(w http.ResponseWriter, r *http.Request) (twin.ID, bool) {
	id, err := twin.MakeID(r.PathValue("layer"), r.PathValue("name"))
	if err != nil {
		if errors.Is(err, twin.ErrUnknownLayer) {
			httpx.Error(w, http.StatusNotFound, "unknown layer", err.Error())
		} else {
			httpx.Error(w, http.StatusBadRequest, "bad object name", err.Error())
		}
		return twin.ID{}, false
	}
	return id, true
}

func notFound(w http.ResponseWriter, id twin.ID) {
	httpx.Error(w, http.StatusNotFound, "object not found", id.String())
}

// readBody reads the whole body within MaxBody; on failure it has answered.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := httpx.ReadBody(w, r, a.opts.MaxBody)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpx.Error(w, http.StatusRequestEntityTooLarge, "request body too large", map[string]int64{"max_bytes": mbe.Limit})
			return nil, false
		}
		httpx.Error(w, http.StatusBadRequest, "cannot read request body", err.Error())
		return nil, false
	}
	return body, true
}
