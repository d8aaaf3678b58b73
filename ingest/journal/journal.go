// Package journal is telemetry's durable path (issue 13, CONTRACT §3):
// every source appends an accepted message to the JetStream telemetry
// stream (spine) and acknowledges its sender only after JetStream has
// confirmed it; the applier, run by whichever server holds the lease,
// applies the stream to the twin and acknowledges each message only once
// the store writer has flushed what it changed.
//
// Into the log: a lone message's Nats-Msg-Id is the object's name and the
// sample's ts (to the microsecond, the twin's duplicate key), so a message
// redelivered by the broker, or taken by two servers sharing an MQTT
// subscription, is stored once. Messages are mostly journaled in batches
// (AppendBatch, batch.go), one log message each: a batch retried is
// stored once, a line seen again in another batch is stored again. Exactly once into the twin and the store:
// a message delivered again after a crash meets the twin's duplicate rule
// (same ts: duplicate; older: history only, and history is idempotent).
package journal

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// waitKey is MsgID as a map key for the Submit callers waiting for their
// outcome: built per line on both sides (caller and applier), so the
// string concatenation MsgID costs is left out of the hot path.
type waitKey struct {
	name string
	us   int64 // ts in microseconds
}

func keyOf(name string, ts time.Time) waitKey { return waitKey{name, ts.UnixMicro()} }

// keyOfMsgID reads MsgID's form back ("" name when it is not one).
func keyOfMsgID(id string) waitKey {
	i := strings.LastIndexByte(id, '@')
	if i < 0 {
		return waitKey{}
	}
	us, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return waitKey{}
	}
	return waitKey{id[:i], us}
}

// Journal appends telemetry to the log and, when this server leads, applies
// it (RunApplier). Safe for concurrent use.
type Journal struct {
	sp  *spine.Spine
	js  jetstream.JetStream
	log *slog.Logger
	m   *metrics

	// window bounds appends awaiting JetStream's PubAck (a slot is taken
	// by AppendBatch and given back by ConfirmBatch): below the connection's own
	// async limit, so an append waits here for room instead of stalling
	// in nats.go and failing over to the slow synchronous retry.
	window chan struct{}

	leading atomic.Bool
	nwait   atomic.Int64 // waiters registered
	wmu     sync.Mutex
	waiters map[waitKey][]waiter // by line, longest waiting first
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
		waiters: map[waitKey][]waiter{}, window: make(chan struct{}, AppendWindow)}
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

// AppendWindow is how many appends may await JetStream's PubAck at once
// (every source together; a batch counts once). At 30k msgs/s and a few
// ms per PubAck a few hundred are in flight; the rest is room for bursts.
const AppendWindow = 8192

// AppendBatch publishes es as ONE log message (batch.go) without waiting
// for JetStream (it waits only while AppendWindow appends are
// unanswered); the future reports JetStream's acknowledgement. JetStream
// stores, delivers, acknowledges and removes the batch once, where one
// message per entry cost each of those per entry (about a third of the
// server's CPU per telemetry message). Every AppendBatch must be followed
// by a ConfirmBatch on the same slice, which gives its window slot back;
// ack the senders only after it. One entry is journaled as a plain
// message with its own Nats-Msg-Id. The Committer (group.go) is how
// sources call it.
func (j *Journal) AppendBatch(es []Entry) (jetstream.PubAckFuture, error) {
	j.window <- struct{}{}
	m, id := batchMsg(es)
	f, err := j.js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithExpectStream(spine.TelemetryStream))
	if err != nil {
		<-j.window
		j.m.appendErrors.Inc()
		return nil, fmt.Errorf("journal: append %s (%d entries): %w", es[0].Name, len(es), err)
	}
	return f, nil
}

// ConfirmBatch waits for f, what AppendBatch(es) returned (es the same
// entries in the same order); when it failed (NATS unreachable, stream
// full, or no answer) it publishes es again, with the same message id (a
// second copy is a duplicate, not a second message), until JetStream
// takes it or ctx ends. It counts the outcome.
//
// A PubAck that never comes (lost in a NATS reconnect, or a clustered
// stream's leader died before answering) fails the future
// spine.Options.AckTimeout after its own publish (the spine's JetStream
// context), so the futures waiting in line behind it fail together and
// are published again at once. A timer per call, which this used to
// start, counted from when the caller got to each one: ten seconds per
// batch, in turn.
func (j *Journal) ConfirmBatch(ctx context.Context, f jetstream.PubAckFuture, es []Entry) (*jetstream.PubAck, error) {
	if f != nil {
		select {
		case pa := <-f.Ok():
			<-j.window
			j.counted(es, pa)
			return pa, nil
		case err := <-f.Err():
			<-j.window
			j.m.appendErrors.Inc()
			j.log.Warn("journal append failed; retrying", "name", es[0].Name, "entries", len(es), "err", err)
		case <-ctx.Done():
			<-j.window
			return nil, ctx.Err()
		}
	}
	return j.appendWait(ctx, es)
}

// AppendWait publishes e and waits for JetStream's acknowledgement,
// retrying with back-off until it is taken or ctx ends.
func (j *Journal) AppendWait(ctx context.Context, e Entry) (*jetstream.PubAck, error) {
	return j.appendWait(ctx, []Entry{e})
}

func (j *Journal) appendWait(ctx context.Context, es []Entry) (*jetstream.PubAck, error) {
	backoff := 50 * time.Millisecond
	for {
		m, id := batchMsg(es)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pa, err := j.js.PublishMsg(pctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(spine.TelemetryStream))
		cancel()
		if err == nil {
			j.counted(es, pa)
			return pa, nil
		}
		j.m.appendErrors.Inc()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("journal: append %s: %w", es[0].Name, err)
		}
		j.log.Warn("journal append failed; retrying", "name", es[0].Name, "entries", len(es), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("journal: append %s: %w", es[0].Name, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// counted counts a log message's entries (a batch's entries share one
// source in practice; each is counted under its own).
func (j *Journal) counted(es []Entry, pa *jetstream.PubAck) {
	vec := j.m.appended
	if pa.Duplicate {
		vec = j.m.duplicates
	} else {
		j.m.messages.WithLabelValues(es[0].Source).Inc()
	}
	src, n := es[0].Source, 0
	for _, e := range es {
		if e.Source != src {
			vec.WithLabelValues(src).Add(float64(n))
			src, n = e.Source, 0
		}
		n++
	}
	vec.WithLabelValues(src).Add(float64(n))
}

// Submit journals e and, when this server applies the log, waits until e
// is applied and returns its outcome (read your writes): applied, history,
// duplicate, or the apply error (already dead-lettered by the applier). On
// a standby, or if the applier does not get to it within ctx, it answers
// OutcomeAccepted: journaled, to be applied by the lease holder.
func (j *Journal) Submit(ctx context.Context, e Entry) (string, error) {
	r := j.SubmitAll(ctx, []Entry{e})[0]
	return r.Outcome, r.Err
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
	var w *waiting
	if j.leading.Load() {
		w = j.wait(es)
		defer j.unwait(es, w)
	}
	// Batches of consecutive lines, one log message each (AppendBatch),
	// confirmed on a second goroutine, in order, while this one appends: a
	// body longer than AppendWindow batches would otherwise wait for its
	// own slots.
	type sent struct {
		from, to int
		f        jetstream.PubAckFuture
	}
	q := make(chan sent, 256)
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		for s := range q {
			pa, err := j.ConfirmBatch(ctx, s.f, es[s.from:s.to])
			for k := s.from; k < s.to; k++ {
				switch {
				case err != nil:
					out[k].Err = err
				case pa.Duplicate:
					out[k].Outcome = telemetry.OutcomeDuplicate
				}
			}
		}
	}()
	for from := 0; from < len(es); {
		to := from + BatchLen(es[from:])
		f, err := j.AppendBatch(es[from:to])
		if err != nil {
			f = nil // ConfirmBatch publishes it again, with retries
		}
		q <- sent{from, to, f}
		from = to
	}
	close(q)
	<-confirmed
	if w == nil {
		for k := range out {
			if out[k].Err == nil && out[k].Outcome == "" {
				out[k].Outcome = OutcomeAccepted
			}
		}
		return out
	}
	// Entries the log refused or took as duplicates are not applied: no
	// outcome to wait for.
	j.wmu.Lock()
	for k := range out {
		if out[k].Err != nil || out[k].Outcome != "" {
			j.unwaitOne(es[k], w, k)
		}
	}
	left := w.left
	j.wmu.Unlock()
	if left > 0 {
		deadline := time.NewTimer(submitWait)
		select {
		case <-w.done:
		case <-ctx.Done():
		case <-deadline.C:
		}
		deadline.Stop()
	}
	j.wmu.Lock()
	defer j.wmu.Unlock()
	for k := range out {
		switch r := w.out[k]; {
		case out[k].Err != nil || out[k].Outcome != "":
		case r.outcome != "" || r.err != nil:
			out[k] = Result{Outcome: r.outcome, Err: r.err}
		default: // the applier did not get to it in time
			out[k].Outcome = OutcomeAccepted
		}
	}
	return out
}

// waiting is one SubmitAll call waiting for the applier's outcomes of its
// entries: one record and one wake-up per call, not a channel per entry
// (a channel made, sent on and received from per line was ~2 % of the
// server's CPU under HTTP telemetry). Guarded by Journal.wmu.
type waiting struct {
	out  []result      // by entry; an outcome or an error once answered
	left int           // entries registered and not answered yet
	done chan struct{} // closed when left reaches 0
}

// waiter is entry k of a waiting call.
type waiter struct {
	w *waiting
	k int
}

// wait registers every entry of es as waiting for its outcome.
func (j *Journal) wait(es []Entry) *waiting {
	w := &waiting{out: make([]result, len(es)), left: len(es), done: make(chan struct{})}
	j.wmu.Lock()
	for k, e := range es {
		id := keyOf(e.Name, e.TS)
		j.waiters[id] = append(j.waiters[id], waiter{w, k})
	}
	j.wmu.Unlock()
	j.nwait.Add(int64(len(es)))
	return w
}

// unwait removes what is left of w's entries from the waiters.
func (j *Journal) unwait(es []Entry, w *waiting) {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	for k := range es {
		if w.left == 0 {
			return
		}
		j.unwaitOne(es[k], w, k)
	}
}

// unwaitOne removes entry k of w from the waiters, if it still waits.
// Caller holds wmu.
func (j *Journal) unwaitOne(e Entry, w *waiting, k int) {
	id := keyOf(e.Name, e.TS)
	ws := j.waiters[id]
	for i, x := range ws {
		if x.w == w && x.k == k {
			ws = append(ws[:i], ws[i+1:]...)
			if len(ws) == 0 {
				delete(j.waiters, id)
			} else {
				j.waiters[id] = ws
			}
			j.nwait.Add(-1)
			w.settle()
			return
		}
	}
}

// settle counts one entry of w as done with. Caller holds wmu.
func (w *waiting) settle() {
	if w.left--; w.left == 0 {
		close(w.done)
	}
}

// notify tells the longest-waiting Submit caller waiting for id how it
// went, and forgets it: the same line twice (in one body, or in two
// requests; each copy is in the log, batches are not deduplicated per
// line) gets one outcome per apply, in order: applied, then duplicate.
func (j *Journal) notify(id waitKey, r result) {
	if j.nwait.Load() == 0 {
		return
	}
	j.wmu.Lock()
	defer j.wmu.Unlock()
	ws := j.waiters[id]
	if len(ws) == 0 {
		return
	}
	x := ws[0]
	if len(ws) == 1 {
		delete(j.waiters, id)
	} else {
		j.waiters[id] = ws[1:]
	}
	j.nwait.Add(-1)
	x.w.out[x.k] = r
	x.w.settle()
}

// Leading reports whether this server currently applies the log.
func (j *Journal) Leading() bool { return j.leading.Load() }
