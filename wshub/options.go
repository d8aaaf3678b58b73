package wshub

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin/timeline"
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
	// Replay answers subscribes with "at" (replay.go) from the store's
	// timeline; nil refuses them with an error message.
	Replay *timeline.Reader
	// QueueBytes bounds what is pending per client, in bytes of encoded
	// messages plus a fixed overhead per message (default 2 MiB), so a
	// client's cost does not depend on how large the objects it watches
	// are. A delta for an object already pending replaces it (coalescing);
	// one that would go over the budget drops everything pending for a
	// resync, and the client counts as behind (HopelessAfter). A single
	// message larger than the budget is still sent when nothing else is
	// pending. Messages are encoded once and shared by every client they
	// go to, so the budget is an upper bound of the memory a client pins.
	QueueBytes int
	// MaxMessageBytes bounds one client->server message (default 64 KiB);
	// a longer message closes the connection with 1009 (message too big).
	MaxMessageBytes int64
	// PingInterval is how often an idle link is pinged (default 20 s). A link
	// that sends nothing, not even a pong, for two intervals is closed.
	PingInterval time.Duration
	// HopelessAfter is how long a client may stay behind (its queue went
	// over QueueBytes and it has not caught up since) before it is closed
	// with code 4008 "too slow" (default 5 s, measured on Clock). It is also
	// about how long one websocket write may make no progress (wall clock;
	// the deadline is moved in steps, so a write may be cut after 7/8 of it).
	HopelessAfter time.Duration
	// SnapshotRate bounds how many snapshots (or resumes) per second one
	// client gets built (default 2, with bursts of SnapshotBurst, default
	// 4; on Clock). Subscribes arriving faster are coalesced: only the
	// latest one not yet served is answered, so a client that pans fast
	// gets its final view and one that floods subscribes costs a few
	// snapshots a second. Snapshots are built by the client's writer, so
	// a client that does not read gets none built.
	SnapshotRate  float64
	SnapshotBurst int
	// MessageRate bounds the messages one client may send per second
	// (default 20, with bursts of MessageBurst, default 40; on Clock). A
	// client over it is closed with 1008 (policy violation).
	MessageRate  float64
	MessageBurst int
	// MaxClients caps the websockets open at once (default 4096; 0 takes
	// the default, negative means no cap); MaxPerPrincipal caps them per
	// token subject (default 64) and MaxPerIP per remote address (default
	// 256: an operations room behind one NAT). An upgrade over a cap is
	// answered 429 before the upgrade and counted in
	// twin_ws_rejected_total{reason}.
	MaxClients      int
	MaxPerPrincipal int
	MaxPerIP        int
	// SendBuffer is the kernel send buffer of each websocket's socket
	// (SO_SNDBUF, default 256 KiB; Linux doubles it; negative keeps the
	// kernel's autotuning, up to 4 MiB a socket by default). Together with
	// QueueBytes it bounds the memory a client that stops reading holds,
	// and it makes such a client block (and be found behind) sooner.
	SendBuffer int
	// FlushInterval is the least time between two writes of one client's
	// queue to its socket (default DefaultFlushInterval; negative writes
	// each delta as soon as it is routed). What is routed meanwhile goes
	// out in one write: at high fan-out a write per delta (a syscall and a
	// wake-up of the client's writer each) was most of the server's CPU.
	// It adds at most this much latency, and none to a client's first
	// delta after a quiet spell; while one round of writes to every busy
	// client takes over an eighth of it, the pause after the round is
	// eight times the round, up to three times FlushInterval (flushPause),
	// and it ends once the oldest delta waiting was committed 1.5 times
	// FlushInterval ago (flushTarget), though never before FlushInterval.
	FlushInterval time.Duration
	// MaxResume bounds how many feed changes a resume (`since`) may replay
	// (default 65536); further back answers resync and a fresh snapshot.
	MaxResume int
	// Clock measures lateness (HopelessAfter); default wall clock.
	Clock clock.Clock
}

// Defaults of Options, also the flag defaults of `twin serve`.
const (
	DefaultQueueBytes      = 2 << 20
	DefaultSendBuffer      = 256 << 10
	DefaultHopelessAfter   = 5 * time.Second
	DefaultSnapshotRate    = 2.0
	DefaultMessageRate     = 20.0
	DefaultMaxClients      = 4096
	DefaultMaxPerPrincipal = 64
	DefaultMaxPerIP        = 256
	DefaultFlushInterval   = 10 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.HopelessAfter <= 0 {
		o.HopelessAfter = DefaultHopelessAfter
	}
	if o.SnapshotRate <= 0 {
		o.SnapshotRate = DefaultSnapshotRate
	}
	if o.SnapshotBurst <= 0 {
		o.SnapshotBurst = 4
	}
	if o.MessageRate <= 0 {
		o.MessageRate = DefaultMessageRate
	}
	if o.MessageBurst <= 0 {
		o.MessageBurst = 40
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.MaxPerPrincipal == 0 {
		o.MaxPerPrincipal = DefaultMaxPerPrincipal
	}
	if o.MaxPerIP == 0 {
		o.MaxPerIP = DefaultMaxPerIP
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultSendBuffer
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxResume <= 0 {
		o.MaxResume = 65536
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}
