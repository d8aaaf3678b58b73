package mqttin

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/ingest/journal"
)

// ackQueue bounds messages appended to the log and waiting for their
// PUBACK. The broker's in-flight limit per connection (Mosquitto: 20)
// bounds it in practice; a full queue stalls the workers, which stalls
// the broker: back-pressure, never a drop.
const ackQueue = 1 << 14

// pending is a v3.1.1 message given to the log's group commit, waiting
// for its group to be confirmed before it is PUBACKed.
type pending struct {
	ack func()
	g   *journal.Group
}

// journal gives a decoded v3.1.1 message to the log's group commit (shared
// with every other connection) without waiting; the acker PUBACKs it once
// its group is in the log. One log message per MQTT message cost a store
// write, a delivery, an ack and a removal each: through nats-server's
// MQTT at QoS 0 the server spent ~50 us a message, a quarter of it in
// the stream's writes and removals, where the MQTT 5 links' groups of
// 25-30 paid them once a group.
func (i *Ingest) journal(in inbound, name string, ts time.Time) {
	e := [1]journal.Entry{{Source: "mqtt", Topic: in.topic, Name: name, TS: ts, Payload: in.payload}}
	var span [1]journal.Span
	g := i.commit.Add(e[:], span[:0])[0].G
	select {
	case i.acks <- pending{ack: in.ack, g: g}:
	case <-i.ackCtx.Done():
		// Shutting down with the acker stuck (NATS away): leave it
		// unacked; the broker delivers it again next session.
	}
}

// ackJournaled PUBACKs messages in the order they were given to the log,
// each once its group is confirmed (the Committer retries a failed
// publish with the group's message id, so it is stored once). A group
// that failed leaves its messages unacknowledged, and the broker delivers
// them again next session: the Committer runs until this has drained and
// fails what is left when ackCtx ends (shutdown with NATS away), so every
// wait here ends.
func (i *Ingest) ackJournaled(done chan<- struct{}) {
	defer close(done)
	for p := range i.acks {
		if <-p.g.Done(); p.g.Err() != nil {
			continue
		}
		p.ack()
	}
}

// Reject dead-letters a message the journal's applier could not apply
// (unknown device, removed object), counting it under source like this
// package's own dead letters. For journal.ApplierOptions.DeadLetter.
func (i *Ingest) Reject(source, topic string, payload []byte, err error) {
	d := NewDeadLetter(topic, payload, err)
	i.metrics.DeadLetters.WithLabelValues(d.Reason).Inc()
	i.metrics.Message(source, "deadletter").Inc()
	i.gate.RLock()
	defer i.gate.RUnlock()
	if i.closed {
		i.log.Warn("dead letter after shutdown logged only", "topic", topic, "reason", d.Reason, "detail", d.Detail, "payload", d.Payload+d.PayloadBase64)
		return
	}
	i.enqueueDeadLetter(context.Background(), d)
}

// Broker $SYS topics counting messages the broker dropped (queue or
// in-flight limits): Mosquitto's, then mochi-mqtt's (the embedded broker).
var sysDroppedTopics = []string{"$SYS/broker/publish/messages/dropped", "$SYS/broker/messages/dropped"}

// sysWatch follows the broker's dropped-messages counter: a broker drops
// QoS 1 messages silently when a subscriber's queue is full (Mosquitto:
// max_queued_messages 1000), and only this counter tells.
type sysWatch struct {
	log     *slog.Logger
	dropped prometheus.Gauge
	// rises counts drops seen happening while connected (the alert's
	// source: increase(twin_broker_dropped_total[5m]) > 0).
	rises prometheus.Counter
	mu    sync.Mutex
	last  map[string]int64
}

func newSysWatch(log *slog.Logger, reg prometheus.Registerer) *sysWatch {
	w := &sysWatch{log: log, last: map[string]int64{},
		dropped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twin_broker_dropped_messages",
			Help: "The MQTT broker's own count of messages it dropped (queue or in-flight limits; $SYS/broker/publish/messages/dropped on Mosquitto). Any rise means lost telemetry: add subscriber connections or raise the broker's max_queued_messages.",
		})}
	if reg != nil {
		if err := reg.Register(w.dropped); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if g, ok := are.ExistingCollector.(prometheus.Gauge); ok {
					w.dropped = g
				}
			}
		}
	}
	w.rises = counter(reg, "twin_broker_dropped_total",
		"Messages the MQTT broker dropped while this server watched its $SYS counters (each rise is also logged at error level). Alert on any increase: telemetry was lost in the broker, before CityTwin could take it.")
	return w
}

// subscribe asks the broker for its dropped counters; a broker without
// them (or refusing $SYS) just never reports.
func (w *sysWatch) subscribe(c paho.Client) {
	for _, t := range sysDroppedTopics {
		c.Subscribe(t, 0, w.onMessage)
	}
}

func (w *sysWatch) onMessage(_ paho.Client, m paho.Message) { w.observe(m.Topic(), m.Payload()) }

// observe takes one $SYS counter value.
func (w *sysWatch) observe(topic string, payload []byte) {
	n, err := strconv.ParseInt(strings.TrimSpace(string(payload)), 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	prev, seen := w.last[topic]
	w.last[topic] = n
	w.mu.Unlock()
	w.dropped.Set(float64(n))
	switch {
	case !seen && n > 0:
		w.log.Warn("the MQTT broker has dropped messages since it started (before this connection)", "topic", topic, "dropped_total", n)
	case seen && n > prev:
		w.rises.Add(float64(n - prev))
		w.log.Error("the MQTT broker dropped messages (its queue or in-flight limit); telemetry was lost before reaching CityTwin",
			"topic", topic, "dropped_total", n, "new", n-prev)
	}
}
