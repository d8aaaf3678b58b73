package journal

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/backoff"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

// LeaseKey is the lease whose holder applies the telemetry log.
const LeaseKey = "applier"

// ApplierOptions configure RunApplier. Zero values take defaults.
type ApplierOptions struct {
	// Persisted returns the last feed sequence that is durable: the store
	// holds it (writer.Flushed), or, in a replicated twin, the change log
	// does (Feed.Last, the committed seq). A message is acknowledged once
	// it covers the message's changes. Required.
	Persisted func() uint64
	// DeadLetter publishes and counts a message the twin refused (unknown
	// device, removed object); source is the metrics label. Required.
	DeadLetter   func(source, topic string, payload []byte, err error)
	Metrics      *telemetry.Metrics // the shared ingest counters (required)
	AutoRegister bool
	Limits       telemetry.Limits
	Clock        clock.Clock // default the twin's
	// Workers apply in parallel; one object's messages always go to the
	// same worker, in stream order. Default 4.
	Workers int
	// OnLeader, if set, is told when this server becomes the applier or
	// stops being it.
	OnLeader func(leader bool)
}

// RunApplier competes for the applier lease until ctx ends; while this
// server holds it, it applies the telemetry stream to tw. It returns nil
// when ctx ends. A server of a replicated twin does not use it: the
// change log's leader (twin/changelog) holds the lease and calls Apply.
func (j *Journal) RunApplier(ctx context.Context, tw *twin.Twin, opts ApplierOptions) error {
	if err := opts.check(); err != nil {
		return err
	}
	return j.sp.RunLeader(ctx, LeaseKey, func(ctx context.Context) error { return j.Apply(ctx, tw, opts) }, nil)
}

func (o *ApplierOptions) check() error {
	if o.Persisted == nil || o.DeadLetter == nil || o.Metrics == nil {
		return errors.New("journal: ApplierOptions needs Persisted, DeadLetter and Metrics")
	}
	return nil
}

// Apply applies the telemetry stream to tw until ctx ends. The caller
// holds the lease (only one server applies). A message is acknowledged once
// opts.Persisted covers the feed head after its apply.
func (j *Journal) Apply(ctx context.Context, tw *twin.Twin, opts ApplierOptions) error {
	if err := opts.check(); err != nil {
		return err
	}
	if opts.Clock == nil {
		opts.Clock = tw.Clock()
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	a := &applier{j: j, tw: tw, opts: opts, seed: maphash.MakeSeed(), log: j.log.With("role", "applier")}
	j.leading.Store(true)
	j.m.leader.Set(1)
	if opts.OnLeader != nil {
		opts.OnLeader(true)
	}
	defer func() {
		j.leading.Store(false)
		j.m.leader.Set(0)
		if opts.OnLeader != nil {
			opts.OnLeader(false)
		}
	}()
	return a.lead(ctx)
}

type applier struct {
	j    *Journal
	tw   *twin.Twin
	opts ApplierOptions
	seed maphash.Seed
	log  *slog.Logger
}

// lead applies the stream until ctx ends (lease lost or shutdown).
func (a *applier) lead(ctx context.Context) error { //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
	gate := spine.NewAckGate(a.opts.Persisted, func(n int) { a.j.m.acked.Add(float64(n)) })
	a.j.m.setGate(gate)
	defer a.j.m.setGate(nil)
	gctx, stopGate := context.WithCancel(context.Background())
	gateDone := make(chan struct{})
	go func() {
		defer close(gateDone)
		// Flushes come every 200 ms; acking every 20 ms adds little delay.
		gate.Run(gctx, 20*time.Millisecond, 2*time.Second)
	}()

	shards := make([]chan work, a.opts.Workers)
	var wg sync.WaitGroup
	for n := range shards {
		ch := make(chan work, 1024)
		shards[n] = ch
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range ch {
				a.apply(w, gate)
			}
		}()
	}
	err := a.consumeAfresh(ctx, shards, gate)
	for _, ch := range shards {
		close(ch)
	}
	wg.Wait()
	stopGate()
	<-gateDone
	return err
}

// errAfresh ends one consumer's run: what was in flight to it may be lost
// and must be delivered again now, not after the ack wait.
var errAfresh = errors.New("journal: consumer to start afresh")

// consumeAfresh runs consume on a fresh consumer (spine.FreshApplier),
// and again on a new one each time that ends with errAfresh, until ctx
// ends or the consumer is taken by another server. Entries of the old
// consumer still in the shards are applied as well: the new one delivers
// them again, which the twin takes as duplicates.
func (a *applier) consumeAfresh(ctx context.Context, shards []chan work, gate *spine.AckGate) error {
	wait := backoff.Backoff{First: 100 * time.Millisecond, Most: 2 * time.Second}
	for first := true; ; first = false {
		// Taken before the consumer is made: a reconnect in between
		// starts it afresh once more, rather than going unseen.
		reconnected := a.j.sp.Reconnected()
		cons, err := a.j.sp.FreshApplier(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && first:
			return err
		case err != nil: // NATS just came back; JetStream may not answer yet
			a.log.Warn("telemetry consumer: cannot make it afresh; retrying", "err", err, "retry_in", wait.Next())
			if !wait.Wait(ctx) {
				return nil
			}
			continue
		}
		wait.Reset()
		if err := a.consume(ctx, cons, shards, gate, reconnected); !errors.Is(err, errAfresh) {
			return err
		}
	}
}

// consume hands what cons delivers to the shards until ctx ends (nil), the
// consumer is deleted by another server (an error), or it has to start
// afresh (errAfresh): the link to NATS came back after a loss, or the
// consumer's leader changed or stopped answering.
func (a *applier) consume(ctx context.Context, cons jetstream.Consumer, shards []chan work, gate *spine.AckGate, reconnected <-chan struct{}) error {
	fail := make(chan error, 1)
	afresh := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
			a.j.m.redelivered.Inc()
		}
		h := m.Headers()
		if v := h.Get(HeaderBatch); v != "" {
			n, _ := strconv.Atoi(v)
			lines, err := decodeBatch(m.Data(), n)
			if err != nil {
				// Not written by this code: nothing to apply, never
				// redeliverable into sense. Logged and acked.
				a.log.Error("telemetry log message is not a batch; skipped", "err", err, "bytes", len(m.Data()))
				gate.Add(m, 0)
				return
			}
			b := &batch{m: m}
			b.left.Store(int32(len(lines)))
			for k := range lines {
				l := &lines[k]
				shards[maphash.String(a.seed, l.name)%uint64(len(shards))] <- work{l: l, b: b}
			}
			return
		}
		l := &line{name: h.Get(HeaderName), source: h.Get(HeaderSource), topic: []byte(h.Get(HeaderTopic)), payload: m.Data()}
		shards[maphash.String(a.seed, l.name)%uint64(len(shards))] <- work{l: l, m: m, id: h.Get(nats.MsgIdHdr)}
	}, jetstream.PullMaxBytes(pullBytes), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		var to chan error
		switch {
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			to = fail // another server recreated it: it holds the lease now
		case errors.Is(err, jetstream.ErrConsumerLeadershipChanged), errors.Is(err, jetstream.ErrNoHeartbeat):
			to = afresh
		default:
			a.log.Warn("telemetry consumer", "err", err)
			return
		}
		select {
		case to <- err:
		default:
		}
	}))
	if err != nil {
		return fmt.Errorf("journal: consume: %w", err)
	}
	a.log.Info("applying the telemetry log", "stream", spine.TelemetryStream)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go a.watchBacklog(wctx, cons)
	select {
	case <-ctx.Done():
	case err = <-fail:
		err = fmt.Errorf("journal: consumer gone: %w", err)
	case <-reconnected:
		a.log.Info("NATS link came back: the telemetry consumer starts afresh, so what was in flight is delivered again now")
		a.j.m.afresh.Inc()
		err = errAfresh
	case cause := <-afresh:
		a.log.Info("telemetry consumer starts afresh, so what was in flight is delivered again now", "cause", cause)
		a.j.m.afresh.Inc()
		err = errAfresh
	}
	cc.Stop()
	<-cc.Closed()
	return err
}

// work is one entry for a shard: a plain log message (m), or a line of
// a batch (b), acked once all its lines are applied.
type work struct {
	l  *line
	m  jetstream.Msg
	id string // the message id of a plain message
	b  *batch
}

// batch is a log message of several entries being applied.
type batch struct {
	m    jetstream.Msg
	left atomic.Int32
}

// apply applies one journaled entry; the ack gate gets its message once
// every entry of it is applied.
func (a *applier) apply(w work, gate *spine.AckGate) {
	l := w.l
	msg, err := telemetry.Decode(l.payload, a.opts.Clock.Now(), a.opts.Limits)
	var id waitKey // who may wait for it (Submit), when anyone waits
	if a.j.nwait.Load() > 0 {
		switch {
		case w.b == nil: // its message id says what the sender journaled
			id = keyOfMsgID(w.id)
		case err == nil:
			id = keyOf(l.name, msg.TS)
		}
	}
	var outcome string
	if err == nil {
		outcome, err = telemetry.Apply(a.tw, l.name, msg, a.opts.AutoRegister)
	}
	if err != nil {
		// Checked at the edge already, so only what needs the twin lands
		// here (unknown device, removed object). Nothing to store.
		a.opts.DeadLetter(l.source, string(l.topic), l.payload, err)
	} else {
		a.opts.Metrics.Message(l.source, outcome).Inc()
	}
	// The feed's head covers this entry's changes (and, for a duplicate,
	// the earlier delivery's, which may still be unpersisted; in a
	// replicated twin the head may be tentative, not yet logged). For a
	// batch, the last entry applied reads a head that covers them all.
	switch {
	case w.b == nil && err != nil:
		gate.Add(w.m, 0)
	case w.b == nil:
		gate.Add(w.m, a.tw.Feed().Head())
	case w.b.left.Add(-1) == 0:
		gate.Add(w.b.m, a.tw.Feed().Head())
	}
	if id.name != "" {
		a.j.notify(id, result{outcome: outcome, err: err})
	}
}

// watchBacklog samples the consumer's backlog for the lag metric.
func (a *applier) watchBacklog(ctx context.Context, cons jetstream.Consumer) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			a.j.m.backlog.Set(float64(info.NumPending + uint64(info.NumAckPending)))
		}
	}
}

// pullBytes bounds what the applier's consumer buffers: by bytes, since
// a log message is one entry or a batch of up to MaxBatch (about 16k
// single messages or 80 full batches).
const pullBytes = 4 << 20
