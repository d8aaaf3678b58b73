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
	rejected  *prometheus.CounterVec
	// subscribesCoalesced counts subscribes replaced by a later one
	// before they were served.
	subscribesCoalesced prometheus.Counter
	// Replays started, replays handed over to live, replay deltas queued.
	replays, replayLive, replayDeltas prometheus.Counter
	// flushAge is the age of each flush round's oldest delta when the
	// round starts: from its commit in the twin to its socket writes.
	flushAge prometheus.Histogram
	reg      prometheus.Registerer
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
			Name: "twin_ws_dropped_clients_total", Help: "Clients closed by the hub, by reason (too_slow, too_many_messages, write_error, shutdown)."}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_ws_rejected_total", Help: "Websocket upgrades refused with 429, by the cap they hit (total, ip, principal)."}, []string{"reason"}),
		subscribesCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_subscribes_coalesced_total", Help: "Subscribes replaced by a later one from the same client before they were served."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_resyncs_total", Help: "Resyncs sent: queue overflow, resume too old, or the hub fell out of the feed window."}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_replays_total", Help: "Websocket replays started (subscribe with at)."}),
		replayLive: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_replays_live_total", Help: "Websocket replays that reached now and went on live."}),
		replayDeltas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_ws_replay_deltas_total", Help: "Replayed deltas queued to websocket clients."}),
		flushAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "twin_ws_flush_age_seconds", Help: "Age of the oldest delta of each round of websocket writes when the round starts: from the change's commit in the twin (its server time) to the writes.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 5, 30)}),
	}
	m.reg = reg
	defer m.initLabels()
	if reg == nil {
		return m
	}
	m.clients = register(reg, m.clients)
	m.sent = register(reg, m.sent)
	m.sentBytes = register(reg, m.sentBytes)
	m.coalesced = register(reg, m.coalesced)
	m.dropped = register(reg, m.dropped)
	m.resyncs = register(reg, m.resyncs)
	m.rejected = register(reg, m.rejected)
	m.subscribesCoalesced = register(reg, m.subscribesCoalesced)
	m.replays = register(reg, m.replays)
	m.replayLive = register(reg, m.replayLive)
	m.replayDeltas = register(reg, m.replayDeltas)
	m.flushAge = register(reg, m.flushAge)
	return m
}

// Label values of the hub's counter vectors, each given a 0 series at
// start: a counter that appears only with its first event hides that event
// from rate() and increase(). TestLabelValuesInitialised finds every value
// the package counts with and requires it here.
var (
	dropReasons   = [...]string{"too_slow", "too_many_messages", "write_error", "shutdown"}
	rejectReasons = [...]string{"total", "ip", "principal"}
)

func (m *metrics) initLabels() {
	for _, r := range dropReasons {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
}

// queued registers the twin_ws_queued_bytes gauge, computed by fn when
// scraped (the first hub on a registry wins).
func (m *metrics) queued(fn func() float64) {
	if m.reg == nil {
		return
	}
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "twin_ws_queued_bytes", Help: "Bytes of encoded messages pending in websocket clients' queues (bounded per client by --ws-queue-bytes)."}, fn))
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
