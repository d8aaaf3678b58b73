// Package broker runs the embedded MQTT broker (mochi-mqtt) that `twin serve`
// starts when no external broker is configured (--mqtt empty). Devices,
// and the ingest's publishing connections (alerts, dead letters), connect
// to it over TCP as to any broker. Telemetry is the exception: `twin serve`
// starts it with Options.Handoff, and the broker hands each telemetry
// publish to the ingest (ingest/mqttin) in process through a Sink
// (handoff.go) instead of routing it to an ingest subscriber over loopback
// TCP, which cost as much CPU as the rest of the ingest at 20k msgs/s. A
// broker started without Handoff routes telemetry like any topic (the
// ingest then subscribes over TCP, as it does to an external broker).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrAddrInUse is wrapped by Start when the listen address is taken, most
// often by another MQTT broker (e.g. Mosquitto on 1883).
var ErrAddrInUse = errors.New("address already in use")

// Broker is a running embedded broker. It accepts every client (the broker
// listens on loopback by default; access control is the HTTP API's job).
// Close is safe to call more than once and from any goroutine.
type Broker struct {
	srv    *mqtt.Server
	addr   string
	once   sync.Once
	stopCh chan struct{}
	log    *slog.Logger
	bp     *backPressure
	ho     *handoff // nil unless started with Options.Handoff
}

// HeldBack returns how many telemetry publishes waited because a
// subscriber had BackPressureInflight messages in flight.
func (b *Broker) HeldBack() int64 { return b.bp.waits.Load() }

// Start listens on addr (host:port; port 0 picks a free one) and serves
// until ctx is cancelled or Close is called. When the port is taken the error
// wraps ErrAddrInUse and tells the operator what to do.
func Start(ctx context.Context, addr string, logger *slog.Logger) (*Broker, error) {
	return StartWith(ctx, addr, Options{Logger: logger})
}

// Options configure StartWith.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Handoff hands telemetry publishes (twin/telemetry/+) to the Sink
	// given to SetSink, in process, instead of routing them (handoff.go).
	// They wait from the start until a sink is set, so none is routed to
	// nobody and acknowledged in between.
	Handoff bool

	holdAt int // back-pressure threshold; default BackPressureInflight (tests use a small one)
}

// StartWith is Start with options.
func StartWith(ctx context.Context, addr string, o Options) (*Broker, error) {
	logger, holdAt := o.Logger, o.holdAt
	if logger == nil {
		logger = slog.Default()
	}
	if holdAt <= 0 {
		holdAt = BackPressureInflight
	}
	// More headroom than mochi's defaults (8,192) for a subscriber that
	// falls behind a telemetry burst: beyond these the broker drops QoS 1
	// messages for that client (see Dropped).
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 1 << 16
	// The inline client takes the server's own publishes (publish.go) and
	// routes handed-off telemetry to other subscribers (handoff.go).
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: logger.With("component", "mqtt-broker")})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(new(bulkSubscribers), nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	bp := &backPressure{srv: srv, log: logger, holdAt: holdAt}
	if err := srv.AddHook(bp, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	stopCh := make(chan struct{})
	var ho *handoff
	if o.Handoff {
		// After back-pressure: a slow subscriber of telemetry of someone
		// else's still holds publishers back as before.
		ho = newHandoff(srv, stopCh)
		if err := srv.AddHook(ho, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook: %w", err)
		}
	}
	tcp := newTCPListener("tcp", addr)
	tcp.clients = srv.Clients.GetAll
	tcp.disconnect = func(cl *mqtt.Client) { _ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown) }
	if err := srv.AddListener(tcp); err != nil {
		if isAddrInUse(err) {
			return nil, fmt.Errorf("%s is already in use (another MQTT broker?); pass --mqtt tcp://%s to use it or --mqtt-listen to pick another port: %w",
				addr, addr, ErrAddrInUse)
		}
		return nil, fmt.Errorf("broker: listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	b := &Broker{srv: srv, addr: tcp.Address(), stopCh: stopCh, log: logger, bp: bp, ho: ho}
	bp.stop = b.stopCh
	go bp.watch()
	go func() {
		select {
		case <-ctx.Done():
			b.Close()
		case <-b.stopCh:
		}
	}()
	logger.Info("embedded MQTT broker listening", "addr", b.addr)
	return b, nil
}

// SetSink makes s the taker of telemetry publishes; nil stops handing
// them over (they are left unacknowledged from then on). It panics on a
// broker started without Options.Handoff: nothing would take telemetry.
func (b *Broker) SetSink(s Sink) {
	if b.ho == nil {
		panic("broker: SetSink on a broker started without Options.Handoff")
	}
	b.ho.attach(s)
}

// Handoff reports whether the broker hands telemetry over (Options.Handoff).
func (b *Broker) Handoff() bool { return b.ho != nil }

// Addr returns the address the broker listens on (host:port), with the
// real port when Start was given port 0.
func (b *Broker) Addr() string { return b.addr }

// Dropped returns how many messages the broker dropped because a
// subscriber's queue or in-flight window was full.
func (b *Broker) Dropped() int64 {
	return atomic.LoadInt64(&b.srv.Info.MessagesDropped) + atomic.LoadInt64(&b.srv.Info.InflightDropped)
}

// URL returns the broker URL clients use, e.g. tcp://127.0.0.1:1883.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// closeWait bounds how long Close waits for mochi to finish disconnecting
// clients. Its listener is closed first (the port is free at once), but a
// client connection being torn down while its peer is busy can keep mochi's
// Close waiting indefinitely (seen in TestBrokerRestartResumes under load),
// and shutdown must never hang on a device that does not go away.
const closeWait = 5 * time.Second

// Close stops listening and disconnects every client, waiting at most
// closeWait for the disconnects to finish; the port is free again when
// Close returns.
func (b *Broker) Close() {
	b.once.Do(func() {
		close(b.stopCh)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = b.srv.Close()
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			b.log.Warn("embedded MQTT broker: clients still disconnecting after close; not waiting for them", "waited", closeWait)
		}
	})
}

func isAddrInUse(err error) bool {
	if errors.Is(err, syscall.EADDRINUSE) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && errors.Is(op.Err, syscall.EADDRINUSE)
}

// BulkReceiveMaximum is the MQTT 5 Receive Maximum from which a client is
// served without mochi's send quota (see bulkSubscribers).
const BulkReceiveMaximum = 4096

// bulkSubscribers serves MQTT 5 clients that ask for a Receive Maximum of
// BulkReceiveMaximum or more (the twin's own ingest asks for 65535)
// without mochi's per-client send quota. Why: with a quota, after every
// packet such a client sends (every PUBACK) mochi looks for the next
// message held back by collecting and sorting the client's whole in-flight
// set, so a subscriber with tens of thousands of messages in flight makes
// each PUBACK cost O(n log n) under the lock publishers need too: the
// broker stalls and publishers' pings time out. Without a quota mochi
// sends at once, as it does to v3.1.1 clients; MaximumInflight still
// bounds what one client may have in flight. Clients asking for less keep
// the flow control they asked for.
type bulkSubscribers struct{ mqtt.HookBase }

func (h *bulkSubscribers) ID() string { return "bulk-subscribers" }

func (h *bulkSubscribers) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }

// OnSessionEstablished runs after the session (and its quotas) is set up
// and before the client's first packet is read.
func (h *bulkSubscribers) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.ReceiveMaximum >= BulkReceiveMaximum {
		cl.State.Inflight.ResetSendQuota(0)
	}
}

// BackPressureInflight is how many QoS 1 messages a connected subscriber
// of telemetry may have in flight before publishers of telemetry wait.
const BackPressureInflight = 16384

// telemetryTopic is a topic the telemetry subscription matches, to ask
// mochi who subscribes (CONTRACT §3: twin/telemetry/{name}).
const telemetryTopic = "twin/telemetry/x"

// backPressure makes the embedded broker slow telemetry publishers down
// instead of dropping: mochi never pushes back on a publisher, and drops a
// subscriber's messages once it has MaximumInflight of them in flight (or
// its write queue is full). So while a connected subscriber of telemetry
// (the twin's ingest, behind on a burst) has BackPressureInflight or more
// in flight, a telemetry PUBLISH waits before mochi takes it: the device's
// PUBACK is delayed, its client stops sending, TCP does the rest. The wait
// ends when the subscriber is down to half, or the publisher or broker
// goes away. A subscriber that is offline does not hold anyone back (its
// session's messages are its own broker-side problem), nor do other
// topics, so alerts and notifications are never delayed by it.
type backPressure struct {
	mqtt.HookBase
	srv       *mqtt.Server
	log       *slog.Logger
	stop      <-chan struct{}
	holdAt    int // BackPressureInflight
	congested atomic.Bool
	waits     atomic.Int64
}

func (h *backPressure) ID() string { return "telemetry-back-pressure" }

func (h *backPressure) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish runs on the publishing client's goroutine, before mochi acks
// and routes the message.
func (h *backPressure) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !h.congested.Load() || cl.Net.Inline || !strings.HasPrefix(pk.TopicName, "twin/telemetry/") {
		return pk, nil
	}
	h.waits.Add(1)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for h.congested.Load() && !cl.Closed() {
		select {
		case <-h.stop:
			return pk, nil
		case <-t.C:
		}
	}
	return pk, nil
}

// watch samples the telemetry subscribers' in-flight counts every 5 ms
// until the broker stops.
func (h *backPressure) watch() {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			h.congested.Store(false)
			return
		case <-t.C:
		}
		worst, who := 0, ""
		look := func(id string) {
			if c, ok := h.srv.Clients.Get(id); ok && !c.Closed() {
				if n := c.State.Inflight.Len(); n > worst {
					worst, who = n, id
				}
			}
		}
		subs := h.srv.Topics.Subscribers(telemetryTopic)
		for id := range subs.Subscriptions {
			look(id)
		}
		for _, group := range subs.Shared {
			for id := range group {
				look(id)
			}
		}
		was := h.congested.Load()
		switch {
		case !was && worst >= h.holdAt:
			h.congested.Store(true)
			h.log.Warn("embedded MQTT broker: a telemetry subscriber is behind; holding telemetry publishers back instead of dropping",
				"client", who, "in_flight", worst)
		case was && worst < h.holdAt/2:
			h.congested.Store(false)
			h.log.Info("embedded MQTT broker: telemetry subscribers caught up; publishers released", "in_flight", worst)
		}
	}
}
