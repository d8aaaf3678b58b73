package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what one client can hold of the HTTP server: a connection,
// a goroutine and its buffers for as long as it likes, and file
// descriptors until /healthz stops answering (issue 11 item 5). Zero
// values take the defaults noted per field.
type Limits struct {
	// ReadHeaderTimeout is how long a request's line and headers may take
	// to arrive, counted from when the server starts reading the request
	// (default 10 s). It also closes new connections that never send
	// anything; IdleTimeout covers the wait between keep-alive requests.
	ReadHeaderTimeout time.Duration
	// BodyTimeout is how long a request body may take to arrive after its
	// headers (default 60 s). It is set per request on requests with a
	// body, and cleared once the body is read, instead of
	// http.Server.ReadTimeout: that one would also cut a handler's
	// background read (cancelling the context of a long GET) and is
	// meaningless for a websocket, whose hub sets its own deadlines.
	BodyTimeout time.Duration
	// WriteTimeout bounds writing a response, from the end of its request's
	// headers (default 60 s). Websocket upgrades are exempt: the hub
	// bounds every frame it writes instead.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (default 60 s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers (default 64 KiB;
	// larger answers 431).
	MaxHeaderBytes int
	// MaxConns bounds open connections, websockets included (default
	// 10,000; cmd/twin lowers it to half the file limit). At the cap a
	// new connection closes the connection that has been idle (between
	// requests, or connected and silent) the longest, so idle keep-alives
	// can never starve new clients; when none is idle it takes a Reserve
	// slot, or is closed at once.
	MaxConns int
	// Reserve connections above MaxConns answer one /healthz or /readyz
	// request each (then close), and 503 to anything else, so a probe
	// still gets an answer when every regular slot is busy (default 32).
	Reserve int
}

// Defaults of Limits, also the flag defaults of `twin serve`.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConns          = 10000
	DefaultReserveConns      = 32
)

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.BodyTimeout, DefaultBodyTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.Reserve <= 0 {
		l.Reserve = DefaultReserveConns
	}
	return l
}

// HTTP is an http.Server with Limits applied: timeouts, header size, and a
// listener that caps connections. Create it with NewHTTP; its methods are
// safe for concurrent use.
type HTTP struct {
	hs     *http.Server
	lim    Limits
	conns  *connLimiter
	health map[string]bool
}

// HTTPOptions configure NewHTTP.
type HTTPOptions struct {
	Limits     Limits
	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // connection metrics; nil keeps them unregistered
}

// NewHTTP wraps h in a bounded http.Server.
func NewHTTP(h http.Handler, opts HTTPOptions) *HTTP {
	lim := opts.Limits.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &HTTP{lim: lim, conns: newConnLimiter(lim.MaxConns, lim.Reserve, log, opts.Registerer),
		health: map[string]bool{"/healthz": true, "/readyz": true}}
	s.hs = &http.Server{
		Handler:           s.bound(h),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ConnState:         s.conns.track,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Serve accepts connections on ln, capped by Limits.MaxConns, until
// Shutdown; it returns http.ErrServerClosed then.
func (s *HTTP) Serve(ln net.Listener) error {
	return s.hs.Serve(&limitListener{Listener: ln, l: s.conns})
}

// Shutdown stops accepting, closes idle connections and waits for active
// requests until ctx ends (http.Server.Shutdown).
func (s *HTTP) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }

type connKey struct{}

// bound applies the per-request parts of Limits: reserve connections serve
// only health probes; a request body gets BodyTimeout; a websocket upgrade
// loses WriteTimeout.
func (s *HTTP) bound(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, _ := r.Context().Value(connKey{}).(*limitedConn); lc != nil && lc.reserve {
			w.Header().Set("Connection", "close")
			if !s.health[r.URL.Path] {
				w.Header().Set("Retry-After", "1")
				WriteError(w, http.StatusServiceUnavailable, "server busy",
					"connection limit reached: only /healthz and /readyz are answered")
				return
			}
		}
		rc := http.NewResponseController(w)
		switch {
		case isUpgrade(r):
			// The websocket hub puts a deadline on every frame it writes.
			_ = rc.SetWriteDeadline(time.Time{})
		case r.Body != nil && r.Body != http.NoBody:
			if err := rc.SetReadDeadline(time.Now().Add(s.lim.BodyTimeout)); err == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// isUpgrade reports whether r asks to switch protocols (a websocket).
func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// deadlineBody clears the connection's read deadline once the body has
// been read to its end, so the server's background read (which watches for
// the client going away while the handler runs) is not cut by it.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
