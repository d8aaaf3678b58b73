package journal

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/spine"
)

// metrics an operator needs to see the log: what went in, what was
// applied and acknowledged, what came back, how far behind the applier is.
type metrics struct {
	appended     *prometheus.CounterVec
	messages     *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	appendErrors prometheus.Counter
	acked        prometheus.Counter
	redelivered  prometheus.Counter
	afresh       prometheus.Counter
	backlog      prometheus.Gauge
	leader       prometheus.Gauge

	mu   sync.Mutex
	gate *spine.AckGate
}

func newMetrics(reg prometheus.Registerer, j *Journal) *metrics {
	m := &metrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_journal_appended_total",
			Help: "Telemetry messages JetStream took into the log, by source (the sender was acknowledged after this).",
		}, []string{"source"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_journal_log_messages_total",
			Help: "Log messages JetStream took, by source of their first entry: a batch of entries counts once, so twin_journal_appended_total divided by this is the mean batch (what JetStream's per-message cost is spread over).",
		}, []string{"source"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_journal_duplicates_total",
			Help: "Telemetry messages JetStream already had (same name and ts within 2 min: a broker redelivery or a second server of a shared subscription).",
		}, []string{"source"}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_journal_append_errors_total",
			Help: "Failed appends to the log (each is retried; the sender is not acknowledged meanwhile).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_journal_acked_total",
			Help: "Log messages acknowledged by the applier after the store flushed their changes.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_journal_redelivered_total",
			Help: "Log messages delivered to the applier more than once (after a crash, a failover or an ack timeout).",
		}),
		afresh: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twin_journal_consumer_afresh_total",
			Help: "Times the applier made its consumer afresh because the link to NATS came back or the consumer's leader changed: what was in flight then is delivered again at once instead of after the ack wait.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twin_journal_backlog",
			Help: "Log messages not yet acknowledged by the applier (pending plus in flight), sampled every 2 s on the applier.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twin_journal_leader",
			Help: "1 while this server holds the applier lease.",
		}),
	}
	ackPending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "twin_journal_ack_pending",
		Help: "Applied log messages waiting for the store flush before their ack (applier lag behind the store).",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.gate == nil {
			return 0
		}
		return float64(m.gate.Pending())
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.appended, m.messages, m.duplicates, m.appendErrors, m.acked, m.redelivered, m.afresh, m.backlog, m.leader, ackPending} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					j.log.Warn("metric not registered", "err", err)
				}
			}
		}
	}
	return m
}

func (m *metrics) setGate(g *spine.AckGate) {
	m.mu.Lock()
	m.gate = g
	m.mu.Unlock()
}
