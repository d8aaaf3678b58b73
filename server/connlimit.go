package server

import (
	"container/list"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter counts the server's connections and keeps the idle ones in
// the order they became idle, so that at the cap the longest-idle one can
// be closed for a newcomer (as nginx reuses keep-alive connections when it
// runs out). Idle means http.StateNew (connected, no request yet) or
// http.StateIdle (between keep-alive requests): closing those loses no
// work, and HTTP clients retry a request on a keep-alive connection closed
// under them. Active requests and hijacked websockets are never evicted;
// their own timeouts and the hub's caps bound them. Safe for concurrent use.
type connLimiter struct {
	max, reserve int
	log          *slog.Logger
	m            connMetrics

	mu          sync.Mutex
	open        int       // regular connections
	reserveOpen int       // reserve connections
	idle        list.List // of *limitedConn, longest idle first
	lastWarn    time.Time
}

type connMetrics struct {
	open     *prometheus.GaugeVec
	max      prometheus.Gauge
	evicted  prometheus.Counter
	rejected prometheus.Counter
}

func newConnLimiter(max, reserve int, log *slog.Logger, reg prometheus.Registerer) *connLimiter {
	l := &connLimiter{max: max, reserve: reserve, log: log, m: connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "twin_http_connections", Help: "Open HTTP connections (websockets included), by slot (regular, reserve)."}, []string{"slot"}),
		max: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twin_http_connections_max", Help: "The cap on regular HTTP connections (--http-max-conns)."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_http_connections_evicted_total", Help: "Idle HTTP connections closed at the cap to admit a new one."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_http_connections_rejected_total", Help: "HTTP connections closed on accept: the cap and the reserve were full of active connections."}),
	}}
	l.m.max.Set(float64(max))
	if reg != nil {
		for _, c := range []prometheus.Collector{l.m.open, l.m.max, l.m.evicted, l.m.rejected} {
			if err := reg.Register(c); err != nil {
				log.Warn("register HTTP connection metric", "err", err)
			}
		}
	}
	return l
}

// limitedConn is a counted connection. Close releases its slot once.
type limitedConn struct {
	net.Conn
	l       *connLimiter
	reserve bool
	elem    *list.Element // in l.idle while idle; guarded by l.mu
	closed  bool          // released; guarded by l.mu
	once    sync.Once
}

// NetConn returns the underlying connection (as tls.Conn does), so that
// the websocket hub can tune the socket.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the socket's raw descriptor when the connection is a
// socket, so that the websocket hub can write to it without blocking (a
// limitedConn changes no byte on the wire).
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if s, ok := c.Conn.(syscall.Conn); ok {
		return s.SyscallConn()
	}
	return nil, errNotSocket
}

// errNotSocket is SyscallConn's answer for a connection that is no socket.
var errNotSocket = errors.New("not a socket")

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// admit counts a new connection, evicting the longest-idle one at the cap;
// nil means no room at all.
func (l *connLimiter) admit(nc net.Conn) *limitedConn {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.m.open.WithLabelValues("regular").Set(float64(l.open))
			l.mu.Unlock()
			return &limitedConn{Conn: nc, l: l}
		}
		var victim *limitedConn
		if e := l.idle.Front(); e != nil {
			victim = l.idle.Remove(e).(*limitedConn)
			victim.elem = nil
		} else if l.reserveOpen < l.reserve {
			l.reserveOpen++
			l.m.open.WithLabelValues("reserve").Set(float64(l.reserveOpen))
			l.warnLocked("HTTP connection cap reached with no idle connection; serving health probes from the reserve")
			l.mu.Unlock()
			return &limitedConn{Conn: nc, l: l, reserve: true}
		} else {
			l.warnLocked("HTTP connection cap and reserve full of active connections; closing new connections")
		}
		l.mu.Unlock()
		if victim == nil {
			return nil
		}
		_ = victim.Close() // frees its slot; the loop takes it
		l.m.evicted.Inc()
	}
}

// warnLocked logs msg at most once a minute.
func (l *connLimiter) warnLocked(msg string) {
	if now := time.Now(); now.Sub(l.lastWarn) >= time.Minute {
		l.lastWarn = now
		l.log.Warn(msg, "max", l.max, "reserve", l.reserve)
	}
}

func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.closed = true
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	if c.reserve {
		l.reserveOpen--
		l.m.open.WithLabelValues("reserve").Set(float64(l.reserveOpen))
		return
	}
	l.open--
	l.m.open.WithLabelValues("regular").Set(float64(l.open))
}

// track is the http.Server's ConnState hook: it keeps l.idle in the order
// connections became idle. Reserve connections serve one request and are
// never evicted.
func (l *connLimiter) track(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*limitedConn)
	if !ok || c.reserve {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		if c.closed {
			return
		}
		if c.elem != nil {
			l.idle.MoveToBack(c.elem)
		} else {
			c.elem = l.idle.PushBack(c)
		}
	default: // active, hijacked, closed
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
	}
}

// limitListener admits accepted connections through a connLimiter; those
// with no room are closed at once (the client sees a reset rather than a
// hang in the kernel's accept queue).
type limitListener struct {
	net.Listener
	l *connLimiter
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := ln.l.admit(nc); c != nil {
			return c, nil
		}
		_ = nc.Close()
		ln.l.m.rejected.Inc()
	}
}
