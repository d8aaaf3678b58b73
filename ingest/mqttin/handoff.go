package mqttin

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// handedBatch is one log message on its way to its PubAck.
type handedBatch struct {
	f     jetstream.PubAckFuture // nil: the append failed, ConfirmBatch publishes again
	es    []journal.Entry
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

// batchHanded appends queued messages to the log, a batch at a time: what
// is queued when it looks (up to journal's batch bounds) goes as one log
// message, so a burst costs the log one message per batch and a lone
// message waits for nothing. It ends when handedIn is closed and drained.
func (i *Ingest) batchHanded(out chan<- handedBatch) {
	defer close(out)
	var (
		es    []journal.Entry
		dones []func()
		size  int
	)
	flush := func() {
		f, err := i.opts.Journal.AppendBatch(es)
		if err != nil {
			f = nil // ConfirmBatch publishes again, with retries
		}
		out <- handedBatch{f: f, es: es, dones: dones}
		es, dones, size = make([]journal.Entry, 0, len(es)), make([]func(), 0, len(dones)), 0
	}
	for m := range i.handedIn {
		es = append(es, m.e)
		dones = append(dones, m.done)
		size += len(m.e.Payload) + len(m.e.Topic) + len(m.e.Name) + 20
		if len(i.handedIn) == 0 || len(es) >= journal.MaxBatch || size >= journal.MaxBatchBytes {
			flush()
		}
	}
	if len(es) > 0 {
		flush()
	}
}

// ackHanded waits for each batch's PubAck in append order and then lets
// the broker acknowledge its messages; once ackCtx ends (shutdown with
// NATS away) the rest stays unacknowledged and the devices publish it
// again.
func (i *Ingest) ackHanded(in <-chan handedBatch, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		if _, err := i.opts.Journal.ConfirmBatch(i.ackCtx, b.f, b.es); err != nil {
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
