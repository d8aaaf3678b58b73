package main

import (
	"flag"
	"log/slog"

	"github.com/citytwin/citytwin/server"
	"github.com/citytwin/citytwin/wshub"
)

// limitConfig holds the flags that bound what one client can cost the
// server (issue 11 items 4-6): HTTP timeouts and connection caps, and the
// websocket hub's budgets (applied to wshub.Options by apply).
type limitConfig struct {
	http server.Limits
	ws   wshub.Options
}

// applyWS copies the websocket limits into o.
func (lc *limitConfig) applyWS(o *wshub.Options) {
	o.QueueBytes, o.HopelessAfter, o.SendBuffer = lc.ws.QueueBytes, lc.ws.HopelessAfter, lc.ws.SendBuffer
	o.SnapshotRate, o.MessageRate = lc.ws.SnapshotRate, lc.ws.MessageRate
	o.MaxClients, o.MaxPerPrincipal, o.MaxPerIP = lc.ws.MaxClients, lc.ws.MaxPerPrincipal, lc.ws.MaxPerIP
	o.FlushInterval = lc.ws.FlushInterval
}

// addLimitFlags registers the limit flags on fs (documented in README.md).
func addLimitFlags(fs *flag.FlagSet) *limitConfig {
	lc := &limitConfig{}
	h := &lc.http
	fs.DurationVar(&h.ReadHeaderTimeout, "http-read-header-timeout", server.DefaultReadHeaderTimeout, "time a request's line and headers may take to arrive")
	fs.DurationVar(&h.BodyTimeout, "http-body-timeout", server.DefaultBodyTimeout, "time a request body may take to arrive after its headers")
	fs.DurationVar(&h.WriteTimeout, "http-write-timeout", server.DefaultWriteTimeout, "time to write a response (not websockets: they bound each frame)")
	fs.DurationVar(&h.IdleTimeout, "http-idle-timeout", server.DefaultIdleTimeout, "time a keep-alive connection may wait for its next request")
	fs.IntVar(&h.MaxHeaderBytes, "http-max-header-bytes", server.DefaultMaxHeaderBytes, "largest request line and headers (431 beyond)")
	fs.IntVar(&h.MaxConns, "http-max-conns", 0, "open HTTP connections, websockets included (0: 10000, at most half the open-file limit); at the cap the longest-idle connection is closed for a new one")
	fs.IntVar(&h.Reserve, "http-reserve-conns", server.DefaultReserveConns, "connections beyond --http-max-conns that answer only /healthz and /readyz")
	w := &lc.ws
	fs.IntVar(&w.QueueBytes, "ws-queue-bytes", wshub.DefaultQueueBytes, "bytes of messages pending per websocket client before it is resynced and counts as behind")
	fs.IntVar(&w.SendBuffer, "ws-send-buffer", wshub.DefaultSendBuffer, "kernel send buffer of each websocket socket, bytes (-1: the kernel's autotuning)")
	fs.DurationVar(&w.HopelessAfter, "ws-hopeless-after", wshub.DefaultHopelessAfter, "a websocket client behind (or a write making no progress) this long is closed with 4008")
	fs.Float64Var(&w.SnapshotRate, "ws-snapshot-rate", wshub.DefaultSnapshotRate, "snapshots built per second per websocket client (faster subscribes are coalesced: the latest wins)")
	fs.Float64Var(&w.MessageRate, "ws-message-rate", wshub.DefaultMessageRate, "messages per second a websocket client may send (burst twice that); faster closes it with 1008")
	fs.IntVar(&w.MaxClients, "ws-max-clients", 0, "websockets open at once (0: 4096, at most half of --http-max-conns; -1: no cap)")
	fs.IntVar(&w.MaxPerPrincipal, "ws-max-per-principal", wshub.DefaultMaxPerPrincipal, "websockets per token subject (-1: no cap)")
	fs.IntVar(&w.MaxPerIP, "ws-max-per-ip", wshub.DefaultMaxPerIP, "websockets per remote address (-1: no cap)")
	fs.DurationVar(&w.FlushInterval, "ws-flush-interval", wshub.DefaultFlushInterval, "least time between two writes to one websocket: deltas routed meanwhile go out in one write (a syscall each); adds at most this much latency, up to 3 times it while a round of writes to every busy client takes over an eighth of it, less once the oldest waiting delta was committed 1.5 times it ago (negative: write each delta at once)")
	return lc
}

// resolve raises the open-file limit to its hard limit and fits the
// connection cap under it, so that connections can never exhaust the
// descriptors the store, the broker and the logs need.
func (lc *limitConfig) resolve(log *slog.Logger) {
	soft, err := raiseFileLimit()
	if err != nil {
		log.Warn("cannot read or raise the open-file limit", "err", err)
	}
	h := &lc.http
	switch {
	case h.MaxConns > 0:
		if soft > 0 && uint64(h.MaxConns+h.Reserve) > soft {
			log.Warn("--http-max-conns is above the open-file limit: connections may exhaust it", "max_conns", h.MaxConns, "nofile", soft)
		}
	default:
		h.MaxConns = server.DefaultMaxConns
		if soft > 0 {
			if half := int(min(soft/2, uint64(server.DefaultMaxConns))) - h.Reserve; half < h.MaxConns {
				h.MaxConns = max(half, 16)
			}
		}
	}
	// Websockets are never evicted as idle: left uncapped they could hold
	// every HTTP slot.
	if lc.ws.MaxClients == 0 {
		lc.ws.MaxClients = max(1, min(wshub.DefaultMaxClients, h.MaxConns/2))
	}
	log.Debug("connection caps", "http_max_conns", h.MaxConns, "reserve", h.Reserve, "ws_max_clients", lc.ws.MaxClients, "nofile", soft)
}
