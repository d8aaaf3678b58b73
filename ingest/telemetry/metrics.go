package telemetry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one ingested message (label "outcome" of
// twin_ingest_messages_total).
const (
	OutcomeApplied    = "applied"
	OutcomeHistory    = "history"
	OutcomeDuplicate  = "duplicate"
	OutcomeDeadletter = "deadletter"
)

// Metrics are the ingest counters shared by every telemetry source (MQTT
// and HTTP): both packages call NewMetrics on the same registerer and get
// the same counters, so /metrics has one series family per name.
type Metrics struct {
	// Messages counts messages by source ("mqtt", "http") and outcome.
	Messages *prometheus.CounterVec
	// DeadLetters counts rejected messages by Reason.
	DeadLetters *prometheus.CounterVec
}

// NewMetrics registers (or, when another ingest already did, reuses) the
// counters twin_ingest_messages_total{source,outcome} and
// twin_deadletter_total{reason}. A nil registerer keeps them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_ingest_messages_total",
			Help: "Telemetry messages ingested, by source (mqtt, http) and outcome (applied, history, duplicate, deadletter).",
		}, []string{"source", "outcome"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twin_deadletter_total",
			Help: "Telemetry messages that could not be applied and went to twin/deadletter, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		m.Messages = register(reg, m.Messages)
		m.DeadLetters = register(reg, m.DeadLetters)
	}
	// Every series exists from start, at 0: a counter that appears only
	// with its first event hides that event from rate() and increase().
	for _, src := range []string{"mqtt", "http"} {
		for _, o := range []string{OutcomeApplied, OutcomeHistory, OutcomeDuplicate, OutcomeDeadletter} {
			m.Messages.WithLabelValues(src, o)
		}
	}
	for _, r := range Reasons() {
		m.DeadLetters.WithLabelValues(string(r))
	}
	return m
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		// A clashing, differently shaped metric is a programming error;
		// keep counting unregistered rather than crash ingest.
	}
	return c
}
