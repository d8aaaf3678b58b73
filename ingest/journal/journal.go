// Package journal is telemetry's durable path (issue 13, CONTRACT §3):
// every source appends an accepted message to the JetStream telemetry
// stream (spine) and acknowledges its sender only after JetStream has
// confirmed it; the applier, run by whichever server holds the lease,
// applies the stream to the twin and acknowledges each message only once
// the store writer has flushed what it changed.
//
// Exactly once into the log: the Nats-Msg-Id is the object's name and the
// sample's ts (to the microsecond, the twin's duplicate key), so a message
// redelivered by the broker, or taken by two servers sharing an MQTT
// subscription, is stored once. Exactly once into the twin and the store:
// a message delivered again after a crash meets the twin's duplicate rule
// (same ts: duplicate; older: history only, and history is idempotent).
package journal

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/spine"
)

// Headers of a journaled message. The body is the payload as received.
const (
	HeaderName   = "Twin-Name"   // the object's name (topic suffix or NDJSON "id")
	HeaderSource = "Twin-Source" // "mqtt" or "http", the metrics' source label
	HeaderTopic  = "Twin-Topic"  // where it came from, for its dead letter
)

// OutcomeAccepted answers an HTTP line journaled on a server that is not
// the applier: it is durable and will be applied by the lease holder.
const OutcomeAccepted = "accepted"

// MsgID is the deduplication key of a sample: name and ts in microseconds.
func MsgID(name string, ts time.Time) string {
	return name + "@" + strconv.FormatInt(ts.UnixMicro(), 10)
}

// Journal appends telemetry to the log and, when this server leads, applies
// it (RunApplier). Safe for concurrent use.
type Journal struct {
	sp  *spine.Spine
	js  jetstream.JetStream
	log *slog.Logger
	m   *metrics

	// window bounds appends awaiting JetStream's PubAck (a slot is taken
	// by Append and given back by Confirm): below the connection's own
	// async limit, so an append waits here for room instead of stalling
	// in nats.go and failing over to the slow synchronous retry.
	window chan struct{}

	leading atomic.Bool
	nwait   atomic.Int64
	wmu     sync.Mutex
	waiters map[string][]chan result
}

type result struct {
	outcome string
	err     error
}

// New makes a Journal on sp; reg (may be nil) receives its metrics.
func New(sp *spine.Spine, log *slog.Logger, reg prometheus.Registerer) *Journal {
	if log == nil {
		log = slog.Default()
	}
	j := &Journal{sp: sp, js: sp.JetStream(), log: log.With("component", "journal"),
		waiters: map[string][]chan result{}, window: make(chan struct{}, AppendWindow)}
	j.m = newMetrics(reg, j)
	return j
}

// Entry is one message to journal.
type Entry struct {
	Source  string    // "mqtt" or "http"
	Topic   string    // for a dead letter
	Name    string    // the object's name
	TS      time.Time // the sample's ts (decoded)
	Payload []byte    // as received
}

func (e Entry) msg() *nats.Msg {
	// The keys are canonical already: set them directly (Header.Set
	// canonicalizes every key, per message, on the ingest's hot path).
	return &nats.Msg{Subject: spine.TelemetrySubject, Data: e.Payload, Header: nats.Header{
		HeaderName: {e.Name}, HeaderSource: {e.Source}, HeaderTopic: {e.Topic},
	}}
}

// AppendWindow is how many appends may await JetStream's PubAck at once
// (every source together). At 30k msgs/s and a few ms per PubAck a few
// hundred are in flight; the rest is room for bursts.
const AppendWindow = 8192

// Append publishes e without waiting for JetStream (it waits only while
// AppendWindow appends are unanswered); the future reports JetStream's
// acknowledgement. Every Append must be followed by a Confirm, which
// gives its window slot back; ack the sender only after Confirm.
func (j *Journal) Append(e Entry) (jetstream.PubAckFuture, error) {
	j.window <- struct{}{}
	f, err := j.js.PublishMsgAsync(e.msg(), jetstream.WithMsgID(MsgID(e.Name, e.TS)), jetstream.WithExpectStream(spine.TelemetryStream))
	if err != nil {
		<-j.window
		j.m.appendErrors.Inc()
		return nil, fmt.Errorf("journal: append %s: %w", e.Name, err)
	}
	return f, nil
}

// Confirm waits for f; when it failed (NATS unreachable, stream full) it
// publishes e again, with the same message id, until JetStream takes it or
// ctx ends. It counts the outcome.
//
// A PubAck that never comes (lost in a NATS reconnect: nats.go keeps such
// a future open) would hold the caller's pipeline forever, so after
// confirmWait without an answer e is published again the same way.
func (j *Journal) Confirm(ctx context.Context, f jetstream.PubAckFuture, e Entry) (*jetstream.PubAck, error) {
	if f != nil {
		select { // the common case, answered already: no timer
		case pa := <-f.Ok():
			<-j.window
			j.counted(e, pa)
			return pa, nil
		default:
		}
		t := time.NewTimer(confirmWait)
		defer t.Stop()
		select {
		case pa := <-f.Ok():
			<-j.window
			j.counted(e, pa)
			return pa, nil
		case err := <-f.Err():
			<-j.window
			j.m.appendErrors.Inc()
			j.log.Warn("journal append failed; retrying", "name", e.Name, "err", err)
		case <-t.C:
			<-j.window
			j.m.appendErrors.Inc()
			j.log.Warn("journal append unanswered; publishing it again", "name", e.Name, "waited", confirmWait)
		case <-ctx.Done():
			<-j.window
			return nil, ctx.Err()
		}
	}
	return j.AppendWait(ctx, e)
}

// confirmWait is how long Confirm waits for a PubAck before publishing
// again (the message id makes a second copy a duplicate, not a second
// message).
const confirmWait = 10 * time.Second

// AppendWait publishes e and waits for JetStream's acknowledgement,
// retrying with back-off until it is taken or ctx ends.
func (j *Journal) AppendWait(ctx context.Context, e Entry) (*jetstream.PubAck, error) {
	backoff := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pa, err := j.js.PublishMsg(pctx, e.msg(), jetstream.WithMsgID(MsgID(e.Name, e.TS)), jetstream.WithExpectStream(spine.TelemetryStream))
		cancel()
		if err == nil {
			j.counted(e, pa)
			return pa, nil
		}
		j.m.appendErrors.Inc()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("journal: append %s: %w", e.Name, err)
		}
		j.log.Warn("journal append failed; retrying", "name", e.Name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("journal: append %s: %w", e.Name, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (j *Journal) counted(e Entry, pa *jetstream.PubAck) {
	if pa.Duplicate {
		j.m.duplicates.WithLabelValues(e.Source).Inc()
		return
	}
	j.m.appended.WithLabelValues(e.Source).Inc()
}

// Submit journals e and, when this server applies the log, waits until e
// is applied and returns its outcome (read your writes): applied, history,
// duplicate, or the apply error (already dead-lettered by the applier). On
// a standby, or if the applier does not get to it within ctx, it answers
// OutcomeAccepted: journaled, to be applied by the lease holder.
func (j *Journal) Submit(ctx context.Context, e Entry) (string, error) {
	id := MsgID(e.Name, e.TS)
	var ch chan result
	if j.leading.Load() {
		ch = make(chan result, 1)
		j.wmu.Lock()
		j.waiters[id] = append(j.waiters[id], ch)
		j.wmu.Unlock()
		j.nwait.Add(1)
		defer j.unwait(id, ch)
	}
	pa, err := j.AppendWait(ctx, e)
	if err != nil {
		return "", err
	}
	if pa.Duplicate {
		return telemetry.OutcomeDuplicate, nil
	}
	if ch == nil {
		return OutcomeAccepted, nil
	}
	select {
	case r := <-ch:
		return r.outcome, r.err
	case <-ctx.Done():
	case <-time.After(submitWait):
	}
	return OutcomeAccepted, nil
}

// submitWait bounds how long Submit waits for the applier after the log
// took the message; past it the message is durable and answered accepted.
const submitWait = 10 * time.Second

// Result is one entry's fate in SubmitAll: an outcome (applied, history,
// duplicate, OutcomeAccepted) or the error Submit would have returned.
type Result struct {
	Outcome string
	Err     error
}

// SubmitAll is Submit for many entries at once (an NDJSON body): it
// appends them all without waiting (pipelined, as MQTT does), then waits
// for every PubAck, then for the applier's outcomes, all within one
// submitWait. So a 1,000-line body costs about one round trip to the log
// and one apply, not 1,000 of each. Results are in the order of es.
func (j *Journal) SubmitAll(ctx context.Context, es []Entry) []Result {
	out := make([]Result, len(es))
	waits := make([]chan result, len(es))
	ids := make([]string, len(es))
	if j.leading.Load() {
		j.wmu.Lock()
		for k, e := range es {
			ids[k] = MsgID(e.Name, e.TS)
			waits[k] = make(chan result, 1)
			j.waiters[ids[k]] = append(j.waiters[ids[k]], waits[k])
		}
		j.wmu.Unlock()
		j.nwait.Add(int64(len(es)))
		defer func() {
			for k, ch := range waits {
				j.unwait(ids[k], ch)
			}
		}()
	}
	// Confirm on a second goroutine, in order, while this one appends: a
	// body longer than AppendWindow would otherwise wait for its own slots.
	type sent struct {
		k int
		f jetstream.PubAckFuture
	}
	q := make(chan sent, 256)
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		for s := range q {
			pa, err := j.Confirm(ctx, s.f, es[s.k])
			switch {
			case err != nil:
				out[s.k].Err = err
			case pa.Duplicate:
				out[s.k].Outcome = telemetry.OutcomeDuplicate
			}
		}
	}()
	for k, e := range es {
		f, err := j.Append(e)
		if err != nil {
			f = nil // Confirm publishes it again, with retries
		}
		q <- sent{k, f}
	}
	close(q)
	<-confirmed
	deadline := time.NewTimer(submitWait)
	defer deadline.Stop()
	waiting := true
	for k := range out {
		if out[k].Err != nil || out[k].Outcome != "" {
			continue
		}
		out[k].Outcome = OutcomeAccepted
		if waits[k] == nil || !waiting {
			continue
		}
		select {
		case r := <-waits[k]:
			out[k] = Result{Outcome: r.outcome, Err: r.err}
		case <-ctx.Done():
			waiting = false
		case <-deadline.C:
			waiting = false
		}
	}
	return out
}

func (j *Journal) unwait(id string, ch chan result) {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	ws := j.waiters[id]
	for i, c := range ws {
		if c == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(j.waiters, id)
	} else {
		j.waiters[id] = ws
	}
	j.nwait.Add(-1)
}

// notify tells Submit callers waiting for id how it went.
func (j *Journal) notify(id string, r result) {
	if j.nwait.Load() == 0 {
		return
	}
	j.wmu.Lock()
	defer j.wmu.Unlock()
	for _, c := range j.waiters[id] {
		select {
		case c <- r:
		default:
		}
	}
}

// Leading reports whether this server currently applies the log.
func (j *Journal) Leading() bool { return j.leading.Load() }
