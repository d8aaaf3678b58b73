package mqttin

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/twin"
)

// The embedded broker hands telemetry over in process (Options.Embedded,
// ingest/broker's handoff): no subscriber connection, no copy of each
// message encoded, written, read and decoded again over loopback. The
// path after the edge is the MQTT 5 subscriber's (conn5.go), with the
// broker's publisher goroutines in place of the socket reader:
//
//	Telemetry (each publisher's goroutine: validate, queue in arrival order)
//	  -> batcher (append to the log in batches, without waiting)
//	  -> acker (wait for JetStream in order, then done: the broker PUBACKs)
//
// so a QoS 1 publish is acknowledged to its device only once the log has
// it, and a full queue holds the publishers back.

// handed is a validated message waiting for the batcher.
type handed struct {
	e    journal.Entry
	done func() // the broker's PUBACK; nil for QoS 0
}

// handedBatch is handed-over telemetry in one journaled group, on its way
// to the log.
type handedBatch struct {
	g     *journal.Group
	dones []func()
}

// handedBatches bounds batches appended and not yet confirmed (each up to
// journal.MaxBatch messages); past it the batcher, then the publishers, wait.
const handedBatches = 1024

// Telemetry takes one telemetry publish from the embedded broker
// (broker.Sink), on the publishing client's goroutine. It reports false
// once the ingest has stopped.
func (i *Ingest) Telemetry(topic string, payload []byte, done func()) bool {
	// The gate is held across the edge and the queueing: shutdown closes
	// the queues (and the dead letters') only once no call is inside.
	i.gate.RLock()
	defer i.gate.RUnlock()
	if i.closed || i.handedIn == nil {
		return false
	}
	if i.opts.Journal == nil {
		// Applied directly (tests, benchmarks): acknowledged on receipt.
		i.shards[i.shardOf(strings.TrimPrefix(topic, TelemetryPrefix))] <- inbound{topic: topic, payload: payload}
		if done != nil {
			done()
		}
		return true
	}
	name, msg, ok := i.edge(topic, payload)
	if !ok { // dead-lettered: done with it
		if done != nil {
			done()
		}
		return true
	}
	if done == nil && i.opts.Local != nil && i.opts.Local() {
		// QoS 0 on the leader: straight into the twin (Options.Local).
		outcome, err := telemetry.Apply(i.tw, name, msg, i.opts.AutoRegister)
		switch {
		case errors.Is(err, twin.ErrNotLeader): // no longer: the log takes it
		case err != nil:
			i.deadLetter(topic, payload, err)
			return true
		default:
			i.metrics.Message("mqtt", outcome).Inc()
			return true
		}
	}
	i.handedIn <- handed{e: journal.Entry{Source: "mqtt", Topic: topic, Name: name, TS: msg.TS, Payload: payload}, done: done}
	return true
}

// batchHanded gives queued messages to the log's group commit (the
// Committer the MQTT 5 links share), what is queued when it looks at a
// time, so a burst costs the log one message per group and a lone
// message waits for nothing. It ends when handedIn is closed and drained.
func (i *Ingest) batchHanded(out chan<- handedBatch) {
	defer close(out)
	var (
		es    []journal.Entry
		dones []func()
		spans []journal.Span
	)
	flush := func() {
		n := len(dones)
		spans = i.commit.Add(es, spans[:0])
		for _, sp := range spans {
			out <- handedBatch{g: sp.G, dones: dones[:sp.N:sp.N]}
			dones = dones[sp.N:]
		}
		clear(spans)
		es, dones = es[:0], make([]func(), 0, n)
	}
	for m := range i.handedIn {
		es = append(es, m.e)
		dones = append(dones, m.done)
		if len(i.handedIn) == 0 || len(es) >= journal.MaxBatch {
			flush()
		}
	}
	if len(es) > 0 {
		flush()
	}
}

// ackHanded waits for each group in append order and then lets the broker
// acknowledge its messages; once ackCtx ends (shutdown with NATS away)
// the rest stays unacknowledged and the devices publish it again.
func (i *Ingest) ackHanded(in <-chan handedBatch, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		if <-b.g.Done(); b.g.Err() != nil {
			continue
		}
		for _, d := range b.dones {
			if d != nil {
				d()
			}
		}
	}
}

// embeddedDropped is the topic mochi publishes its drop counter on; the
// embedded broker's count is read in process under that name.
const embeddedDropped = "$SYS/broker/messages/dropped"

// watchEmbedded feeds the embedded broker's drop count (messages it
// dropped for other subscribers: queue or in-flight limits) to the
// twin_broker_dropped_* metrics every second until ctx ends, as the $SYS
// subscription does for an external broker.
func (i *Ingest) watchEmbedded(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		i.sys.observe(embeddedDropped, strconv.AppendInt(nil, i.opts.Embedded.Dropped(), 10))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
