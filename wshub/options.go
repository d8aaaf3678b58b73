package wshub

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Hub. Zero values take the defaults noted per field.
type Options struct {
	// Logger receives connection-level events; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the hub's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// AllowedOrigins lists browser origins ("https://ops.example.cn") that
	// may open a websocket. Empty means same-origin only (Origin's host must
	// equal the request's Host); "*" allows every origin. Requests without an
	// Origin header (non-browser clients) are always allowed: the token, not
	// the origin, is what authenticates them.
	AllowedOrigins []string
	// Authorize authenticates the upgrade request (bearer header or
	// ?access_token=). A non-nil error answers 401 before the upgrade. Nil
	// means anonymous city-wide access (tests, demo on loopback).
	Authorize func(r *http.Request) (auth.Principal, error)
	// QueueSize bounds the messages pending per client (default 1024).
	// Deltas for an object already pending replace it and do not count.
	QueueSize int
	// MaxMessageBytes bounds one client->server message (default 64 KiB);
	// a longer message closes the connection with 1009 (message too big).
	MaxMessageBytes int64
	// PingInterval is how often an idle link is pinged (default 20 s). A link
	// that sends nothing, not even a pong, for two intervals is closed.
	PingInterval time.Duration
	// HopelessAfter is how long a client may stay behind (its queue
	// overflowed and it has not caught up since) before it is closed with
	// code 4008 "too slow" (default 10 s, measured on Clock). It is also the
	// wall-clock deadline of one websocket write.
	HopelessAfter time.Duration
	// MaxResume bounds how many feed changes a resume (`since`) may replay
	// (default 65536); further back answers resync and a fresh snapshot.
	MaxResume int
	// Clock measures lateness (HopelessAfter); default wall clock.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.HopelessAfter <= 0 {
		o.HopelessAfter = 10 * time.Second
	}
	if o.MaxResume <= 0 {
		o.MaxResume = 65536
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}
