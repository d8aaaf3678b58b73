package mqttin

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// deadLetterQueue publishes twin/deadletter. It never drops a letter to make
// room: a full queue makes the source wait (CONTRACT §3: a message is never
// silently dropped). An MQTT worker that waits stops taking messages, its
// shard fills, paho's router waits, and the broker holds back telemetry:
// the intake slows to the pace at which the broker takes dead letters.
//
// That is safe only because dead letters go out on a connection of their
// own: paho reads every packet of a connection on one goroutine, so PUBACKs
// for dead letters published on the ingest connection would queue behind
// the very telemetry that waits for them.
//
// A letter the broker does not acknowledge is published again (at least
// once) until it is, or until shutdown's DeadLetterDrain has passed; only
// then, or when an HTTP request is gone while it waits, is a letter
// dropped: logged with its content and counted.
type deadLetterQueue struct {
	i      *Ingest
	client paho.Client
	q      chan []byte
	stop   chan struct{} // closed by giveUp: publish what works, drop the rest
	once   sync.Once

	dropped prometheus.Counter // twin_deadletter_dropped_total
	waited  prometheus.Counter // twin_deadletter_waits_total
	retried prometheus.Counter // twin_deadletter_retries_total
	// logged is when a wait, retry or drop was last logged (unix ns): a
	// flood must not turn into a flood of log lines.
	logged atomic.Int64
}

// deadLetterWindow bounds dead letters published but not yet acknowledged.
const deadLetterWindow = 256

func newDeadLetters(i *Ingest) *deadLetterQueue {
	o := i.opts
	d := &deadLetterQueue{i: i, q: make(chan []byte, o.DeadLetterQueue), stop: make(chan struct{})}
	d.dropped = counter(o.Registerer, "twin_deadletter_dropped_total",
		"Dead letters that never reached twin/deadletter: the broker stayed away through shutdown's drain, or an HTTP request left while waiting for room (each is logged; still counted in twin_deadletter_total).")
	d.waited = counter(o.Registerer, "twin_deadletter_waits_total",
		"Times a source waited because the dead-letter queue was full: ingest slowed to the broker's pace instead of dropping.")
	d.retried = counter(o.Registerer, "twin_deadletter_retries_total",
		"Dead letters published again because the broker did not acknowledge them.")
	co := paho.NewClientOptions().
		AddBroker(o.BrokerURL).
		SetClientID(o.ClientID + "-deadletter").
		SetCleanSession(true). // publishes only: no session to keep
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(o.MaxReconnectInterval).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(10 * time.Second)
	if u, err := url.Parse(o.BrokerURL); err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") {
		co.SetCustomOpenConnectionFn(dialBuffered)
	}
	d.client = paho.NewClient(co)
	return d
}

// counter registers (or reuses) a counter; nil reg keeps it unregistered.
func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
	}
	return c
}

// enqueueDeadLetter queues d, waiting while the queue is full until there
// is room or ctx ends (then d is dropped: logged and counted).
func (i *Ingest) enqueueDeadLetter(ctx context.Context, d DeadLetter) {
	b, _ := json.Marshal(d) // strings only: cannot fail
	dl := i.dead
	select {
	case dl.q <- b:
		return
	default:
	}
	dl.waited.Inc()
	dl.logOnce("dead-letter queue full: ingest waits for the broker to take dead letters (twin_deadletter_waits_total)", "queue", cap(dl.q))
	select {
	case dl.q <- b:
	case <-ctx.Done():
		dl.drop(b, ctx.Err())
	}
}

// DeadLetterFunc returns a function that publishes other sources' dead
// letters (ingest/httpin's Options.DeadLetter) on twin/deadletter. It waits
// while the queue is full, until ctx (the request) ends; it does not
// count in twin_deadletter_total: the source counts.
func (i *Ingest) DeadLetterFunc() func(ctx context.Context, topic string, payload []byte, reason string) {
	return func(ctx context.Context, topic string, payload []byte, reason string) {
		d := NewDeadLetter(topic, payload, nil)
		d.Reason = reason
		i.gate.RLock()
		defer i.gate.RUnlock()
		if i.closed {
			i.dead.dropped.Inc()
			i.log.Warn("dead letter after shutdown logged only", "topic", topic, "reason", reason, "payload", d.Payload+d.PayloadBase64)
			return
		}
		i.enqueueDeadLetter(ctx, d)
	}
}

// run connects the dead-letter connection and publishes queued letters
// with QoS 1 until the queue is closed and empty; then it disconnects.
// Up to deadLetterWindow publishes are in flight at once (acks awaited in
// order on a second goroutine), so a burst drains at the broker's pace
// rather than one round trip per letter.
func (d *deadLetterQueue) run(done chan<- struct{}) {
	defer close(done)
	d.client.Connect() // retries in the background; publishes wait for it
	defer d.client.Disconnect(250)
	type sent struct {
		tok paho.Token
		b   []byte
	}
	inflight := make(chan sent, deadLetterWindow)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for s := range inflight {
			d.confirm(s.tok, s.b)
		}
	}()
	for b := range d.q {
		inflight <- sent{d.client.Publish(DeadLetterTopic, 1, false, b), b}
	}
	close(inflight)
	<-acked
}

// confirm waits for a letter's PUBACK and publishes it again until the
// broker has it; after giveUp it drops what the broker has not taken.
func (d *deadLetterQueue) confirm(tok paho.Token, b []byte) {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-tok.Done():
			if tok.Error() == nil {
				return
			}
		case <-time.After(30 * time.Second): // a lost PUBACK: publish again
		case <-d.stop:
			d.drop(b, errors.New("broker away at shutdown"))
			return
		}
		d.retried.Inc()
		d.logOnce("dead letter not acknowledged by the broker; publishing it again", "err", tok.Error())
		select {
		case <-time.After(backoff):
		case <-d.stop:
			d.drop(b, errors.New("broker away at shutdown"))
			return
		}
		backoff = min(2*backoff, time.Second)
		tok = d.client.Publish(DeadLetterTopic, 1, false, b)
	}
}

// giveUp ends waiting for the broker (shutdown's drain has passed).
func (d *deadLetterQueue) giveUp() { d.once.Do(func() { close(d.stop) }) }

// close ends the queue; call once, after every sender is done.
func (d *deadLetterQueue) close() { close(d.q) }

func (d *deadLetterQueue) drop(b []byte, why error) {
	d.dropped.Inc()
	d.i.log.Error("dead letter dropped (twin_deadletter_dropped_total)", "why", why, "dead_letter", string(b))
}

// logOnce logs at most one line a second for waits and retries.
func (d *deadLetterQueue) logOnce(msg string, args ...any) {
	if now := time.Now().UnixNano(); now-d.logged.Load() >= int64(time.Second) {
		d.logged.Store(now)
		d.i.log.Warn(msg, args...)
	}
}
