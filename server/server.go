package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Access says who may call a route.
type Access uint8

const (
	// Public routes need no token (health, metrics, the client's files).
	Public Access = iota
	// Read routes need any valid token (or anonymous loopback in demo mode).
	Read
	// Write routes need a token whose role is in Route.Roles.
	Write
)

// Route is one mounted handler.
type Route struct {
	Pattern string // Go 1.22 ServeMux pattern, e.g. "GET /api/nearby"
	Handler http.Handler
	Access  Access
	Roles   []auth.Role // for Write; empty = any role
	// QueryToken accepts the token in ?access_token= as well: only for the
	// websocket, whose browser API cannot set headers. Elsewhere a query
	// token would end up in logs, histories and Referer headers, so it is
	// refused (401).
	QueryToken bool
}

// MetricsAccess says who may read /metrics.
type MetricsAccess string

// Metrics access modes (serve --metrics-access).
const (
	// MetricsLoopback: callers on a loopback address only (the default).
	MetricsLoopback MetricsAccess = "loopback"
	// MetricsToken: a bearer token of a city-level admin (a scraper's).
	MetricsToken MetricsAccess = "token"
	// MetricsPublic: anyone who can reach the port.
	MetricsPublic MetricsAccess = "public"
)

// ParseMetricsAccess checks a --metrics-access value.
func ParseMetricsAccess(s string) (MetricsAccess, error) {
	switch m := MetricsAccess(s); m {
	case MetricsLoopback, MetricsToken, MetricsPublic:
		return m, nil
	}
	return "", fmt.Errorf("metrics access %q: want loopback, token or public", s)
}

// Check is a named readiness probe (store, broker).
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// Options configure the server.
type Options struct {
	Logger   *slog.Logger
	Gatherer prometheus.Gatherer // for /metrics; default prometheus.DefaultGatherer
	Key      auth.Key            // token signing secret; required unless every route is Public
	// AnonymousLoopback lets requests from loopback addresses without a token
	// read everything city-wide (the demo; logged at start). Writes still
	// need a token.
	AnonymousLoopback bool
	Checks            []Check
	// MetricsAccess guards /metrics; default MetricsLoopback.
	MetricsAccess MetricsAccess
	Clock         clock.Clock
	Routes        []Route
}

// Server is the HTTP front of one CityTwin process.
type Server struct {
	opts Options
	mux  *http.ServeMux
	log  *slog.Logger
	// tokens verifies bearer tokens and remembers the good ones (nil
	// without opts.Key).
	tokens *auth.Verifier
}

// New builds the server's handler tree.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	if len(opts.Key) > 0 {
		s.tokens = auth.NewVerifier(opts.Key)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	if opts.MetricsAccess == "" {
		opts.MetricsAccess = MetricsLoopback
	}
	s.opts.MetricsAccess = opts.MetricsAccess
	s.mux.Handle("GET /metrics", s.metricsGuard(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	for _, rt := range opts.Routes {
		s.mux.Handle(rt.Pattern, s.guard(rt))
	}
	return s
}

// ServeHTTP recovers from panics (answering a JSON 500, never a stack trace)
// and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			WriteError(w, http.StatusInternalServerError, "internal error", nil)
		}
	}()
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// Unknown path or method: JSON instead of the mux's plain text.
		rec := &statusProbe{}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.Header().Get("Allow"))
			WriteError(w, http.StatusMethodNotAllowed, "method not allowed", r.Method)
			return
		}
		WriteError(w, http.StatusNotFound, "not found", r.URL.Path)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// statusProbe captures the status the mux's fallback handler would write.
type statusProbe struct {
	h      http.Header
	status int
}

func (p *statusProbe) Header() http.Header {
	if p.h == nil {
		p.h = http.Header{}
	}
	return p.h
}
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	res := map[string]string{}
	ok := true
	for _, c := range s.opts.Checks {
		if err := c.Fn(ctx); err != nil {
			res[c.Name] = err.Error()
			ok = false
		} else {
			res[c.Name] = "ok"
		}
	}
	if !ok {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": res})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": res})
}

// metricsGuard applies Options.MetricsAccess: metrics name every layer's
// counts and the process' internals, so by default only the machine itself
// (a local Prometheus or node agent) may read them.
func (s *Server) metricsGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.opts.MetricsAccess {
		case MetricsPublic:
		case MetricsToken:
			p, err := s.authenticate(r, false)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="citytwin"`)
				WriteError(w, http.StatusUnauthorized, "unauthorized", err.Error())
				return
			}
			if !p.IsCityAdmin() {
				WriteError(w, http.StatusForbidden, "forbidden", "metrics need a city-level admin token")
				return
			}
		default:
			if !isLoopback(r) {
				WriteError(w, http.StatusForbidden, "forbidden", "metrics are served to loopback callers only (serve --metrics-access)")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// guard authenticates a request for a route and puts its principal in the context.
func (s *Server) guard(rt Route) http.Handler {
	if rt.Access == Public {
		return rt.Handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r, rt.QueryToken)
		if err != nil {
			if errors.Is(err, auth.ErrNoToken) && rt.Access == Read && s.opts.AnonymousLoopback && isLoopback(r) {
				p = auth.Principal{Subject: "anonymous", Role: auth.Planner, Region: auth.CityCode}
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="citytwin"`)
				WriteError(w, http.StatusUnauthorized, "unauthorized", err.Error())
				return
			}
		}
		if rt.Access == Write && len(rt.Roles) > 0 && !hasRole(p.Role, rt.Roles) {
			WriteError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("role %s may not do this", p.Role))
			return
		}
		rt.Handler.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// errQueryToken refuses ?access_token= on routes other than the websocket.
var errQueryToken = fmt.Errorf("%w: access_token in the URL is accepted on /ws only; send 'Authorization: Bearer <token>'", auth.ErrBadToken)

// authenticate reads a bearer token from the Authorization header or, when
// query is set (websockets, which cannot set headers), the access_token
// query parameter.
func (s *Server) authenticate(r *http.Request, query bool) (auth.Principal, error) {
	tok := ""
	if r.URL.Query().Has("access_token") && !query {
		return auth.Principal{}, errQueryToken
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return auth.Principal{}, fmt.Errorf("%w: Authorization must be 'Bearer <token>'", auth.ErrBadToken)
		}
		tok = strings.TrimSpace(rest)
	} else {
		tok = r.URL.Query().Get("access_token")
	}
	if tok == "" {
		return auth.Principal{}, auth.ErrNoToken
	}
	if s.tokens == nil {
		return auth.Principal{}, fmt.Errorf("%w: server has no signing key", auth.ErrBadToken)
	}
	return s.tokens.Parse(tok, s.opts.Clock.Now())
}

func hasRole(r auth.Role, roles []auth.Role) bool {
	if r == auth.Admin {
		return true
	}
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
