package spine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultApplierAckWait is how long the applier may hold a message
// unacknowledged before JetStream delivers it again
// (Options.ApplierAckWait). Acks wait for the store's flush (normally well
// under a second); a store outage longer than this makes JetStream
// redeliver, which the twin absorbs as duplicates.
const DefaultApplierAckWait = time.Minute

// FreshApplier deletes the applier consumer and creates it again, so that
// every message still in the telemetry stream (work-queue retention: every
// message not yet acknowledged) is delivered at once and in stream order.
// The new lease holder calls it: the previous holder's unacknowledged
// messages would otherwise wait Options.ApplierAckWait for redelivery,
// after newer ones. So does the holder when its link to NATS came back
// (Reconnected) or its consumer's leader changed: what was in flight to it
// then is lost, and counted delivered until the same wait ends. No
// position is lost in between, since the stream itself holds exactly the
// unacknowledged messages.
func (s *Spine) FreshApplier(ctx context.Context) (jetstream.Consumer, error) {
	if err := s.js.DeleteConsumer(ctx, TelemetryStream, ApplierConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("spine: delete consumer %s: %w", ApplierConsumer, err)
	}
	c, err := s.js.CreateConsumer(ctx, TelemetryStream, jetstream.ConsumerConfig{
		Durable:       ApplierConsumer,
		Description:   "CityTwin applier: the lease holder applies telemetry to its twin",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.opts.ApplierAckWait,
		MaxAckPending: 1 << 17,
		Replicas:      s.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("spine: create consumer %s: %w", ApplierConsumer, err)
	}
	return c, nil
}

// AckGate acknowledges messages once what they changed is persisted: each
// message is added with a watermark (for the twin, the feed sequence of
// its last change) and acknowledged when persisted() reaches it. Add is
// safe for concurrent use; Run does the acking.
type AckGate struct {
	persisted func() uint64
	onAck     func(n int)

	mu      sync.Mutex
	pending []gated
	wake    chan struct{}
}

type gated struct {
	m  jetstream.Msg
	wm uint64
}

// NewAckGate makes a gate; onAck (may be nil) is told how many messages
// each round acknowledged.
func NewAckGate(persisted func() uint64, onAck func(n int)) *AckGate {
	return &AckGate{persisted: persisted, onAck: onAck, wake: make(chan struct{}, 1)}
}

// Add queues m for acknowledgement once persisted() >= watermark; a zero
// watermark acknowledges at the next round.
func (g *AckGate) Add(m jetstream.Msg, watermark uint64) {
	g.mu.Lock()
	g.pending = append(g.pending, gated{m, watermark})
	n := len(g.pending)
	g.mu.Unlock()
	if n == 1 {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// Pending returns how many messages wait for their acknowledgement.
func (g *AckGate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

// Run acknowledges what persisted() covers, every interval, until ctx
// ends; then it keeps going for at most linger so the last flush's
// messages are acknowledged on a clean stop (what is left is delivered
// again to the next applier, which is harmless).
func (g *AckGate) Run(ctx context.Context, interval, linger time.Duration) { //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var deadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if deadline == nil {
				deadline = time.After(linger)
				ctx = context.Background()
			}
		case <-deadline:
			return
		case <-tick.C:
		case <-g.wake:
		}
		if g.round() == 0 && deadline != nil && g.Pending() == 0 {
			return
		}
	}
}

// round acks every pending message whose watermark is persisted.
func (g *AckGate) round() int {
	p := g.persisted()
	g.mu.Lock()
	var ack []jetstream.Msg
	keep := g.pending[:0]
	for _, x := range g.pending {
		if x.wm <= p {
			ack = append(ack, x.m)
		} else {
			keep = append(keep, x)
		}
	}
	clear(g.pending[len(keep):])
	g.pending = keep
	g.mu.Unlock()
	for _, m := range ack {
		// Fire and forget: a lost ack means one redelivery, which the twin
		// absorbs; waiting for a confirmation per message would cost a
		// round trip each.
		_ = m.Ack()
	}
	if len(ack) > 0 && g.onAck != nil {
		g.onAck(len(ack))
	}
	return len(ack)
}
