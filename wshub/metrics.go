package wshub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the hub's Prometheus series. They are per Hub; registering a
// second hub on the same registerer reuses the first one's collectors.
type metrics struct {
	clients   prometheus.Gauge
	sent      prometheus.Counter
	sentBytes prometheus.Counter
	coalesced prometheus.Counter
	dropped   *prometheus.CounterVec
	resyncs   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twin_ws_clients", Help: "Websocket clients connected."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_messages_sent_total", Help: "Websocket messages written to clients (snapshots, deltas, control)."}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_sent_bytes_total", Help: "Websocket payload bytes written to clients."}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_coalesced_total", Help: "Deltas that replaced a pending delta for the same object of a slow client."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_ws_dropped_clients_total", Help: "Clients closed by the hub, by reason (too_slow, write_error, shutdown)."}, []string{"reason"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_resyncs_total", Help: "Resyncs sent: queue overflow, resume too old, or the hub fell out of the feed window."}),
	}
	if reg == nil {
		return m
	}
	m.clients = register(reg, m.clients)
	m.sent = register(reg, m.sent)
	m.sentBytes = register(reg, m.sentBytes)
	m.coalesced = register(reg, m.coalesced)
	m.dropped = register(reg, m.dropped)
	m.resyncs = register(reg, m.resyncs)
	return m
}

// register registers c, or returns the collector already registered under
// the same name so that two hubs on one registry share series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
