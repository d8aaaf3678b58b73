package main

import (
	"flag"
	"log/slog"

	"github.com/citytwin/citytwin/server"
)

// limitConfig holds the flags that bound what one client can cost the
// server (issue 11 items 4-6): HTTP timeouts and connection caps.
type limitConfig struct {
	http server.Limits
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
	if h.MaxConns > 0 {
		if soft > 0 && uint64(h.MaxConns+h.Reserve) > soft {
			log.Warn("--http-max-conns is above the open-file limit: connections may exhaust it", "max_conns", h.MaxConns, "nofile", soft)
		}
		return
	}
	h.MaxConns = server.DefaultMaxConns
	if soft > 0 {
		if half := int(min(soft/2, uint64(server.DefaultMaxConns))) - h.Reserve; half < h.MaxConns {
			h.MaxConns = max(half, 16)
		}
	}
	log.Debug("HTTP connection cap", "max_conns", h.MaxConns, "reserve", h.Reserve, "nofile", soft)
}
