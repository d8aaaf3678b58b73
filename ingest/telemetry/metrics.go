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

	// messages holds Messages' series made at start, by source and
	// outcome; read only after NewMetrics (see Message).
	messages map[[2]string]prometheus.Counter
}

// Message is Messages' series for source and outcome: the ones made at
// start are looked up in a map rather than through WithLabelValues,
// which hashes both labels on every call, once per message applied (~1 %
// of a geofenced write's CPU, issue 16 goal 1).
func (m *Metrics) Message(source, outcome string) prometheus.Counter {
	if c, ok := m.messages[[2]string{source, outcome}]; ok {
		return c
	}
	return m.Messages.WithLabelValues(source, outcome)
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
	m.messages = map[[2]string]prometheus.Counter{}
	for _, src := range []string{"mqtt", "http"} {
		for _, o := range []string{OutcomeApplied, OutcomeHistory, OutcomeDuplicate, OutcomeDeadletter} {
			m.messages[[2]string{src, o}] = m.Messages.WithLabelValues(src, o)
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
