package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TelemetryPrefix is where telemetry is published (CONTRACT §3:
// twin/telemetry/{name}): the publishes a handoff broker hands over.
const TelemetryPrefix = "twin/telemetry/"

// Sink takes the telemetry the broker hands over in process (see
// handoff). The twin's MQTT ingest (ingest/mqttin) is the one sink.
type Sink interface {
	// Telemetry is called on the publishing client's goroutine, in the
	// order that client sent its messages. done is nil for QoS 0;
	// otherwise the sink calls it exactly once, on any goroutine, when
	// the message is durable (in the journal) or dead-lettered, and the
	// broker acknowledges it to the publisher then. Telemetry may block
	// while the sink is behind: that holds the publisher back (its
	// connection is not read meanwhile), never drops. It reports false
	// when the sink has stopped taking messages (shutdown): done will not
	// be called and the message is not acknowledged, so the device
	// publishes it again to the next server.
	Telemetry(topic string, payload []byte, done func()) bool
}

// handoff is the hook of a broker started with Options.Handoff: it takes
// every telemetry PUBLISH from a device before mochi routes it and hands
// it to the Sink in process, instead of mochi routing it to the ingest's
// own TCP session. Why: routing cost the broker a subscriber lookup per
// publish (TopicsIndex.Subscribers builds four maps per message), an
// encode and a socket write, and the ingest a read and a decode, for a
// copy of a message already in memory: at 20k msgs/s that was about 40%
// of the server's CPU.
//
// Durability is kept, and made stronger: mochi would PUBACK a QoS 1
// publish as soon as it was routed (in memory only); the hook rejects the
// packet for mochi (no PUBACK, no routing) and PUBACKs it itself once the
// sink calls done, i.e. once the message is in the journal. Publishers are
// held back by a sink that blocks. QoS 2 (outside CONTRACT §3, which says
// 0 or 1) is taken too, but waits on the publisher's goroutine for done
// before mochi runs its PUBREC/PUBREL exchange, as it owns that state.
//
// Other subscribers of telemetry (an operator's mosquitto_sub, a bridge)
// still get every message: while any client holds a subscription that
// can match twin/telemetry/{name}, each publish is also routed through
// mochi's inline client, so they pay for routing and the twin's own
// ingest never does. Retained telemetry is retained the same way.
//
// Until a sink is attached (startup) telemetry publishes wait; once it is
// detached (shutdown) they are left unacknowledged.
type handoff struct {
	mqtt.HookBase
	srv  *mqtt.Server
	stop <-chan struct{}

	sink     atomic.Pointer[sinkBox]
	attached chan struct{} // closed by the first attach
	once     sync.Once

	// others is whether any subscription can match telemetry, from subs
	// (client id -> filters), kept by the subscribe hooks.
	others atomic.Bool
	mu     sync.Mutex
	subs   map[string]map[string]struct{}

	acks sync.Map // *mqtt.Client -> *ackQueue
}

// sinkBox lets a nil Sink (detached) be stored apart from "never set".
type sinkBox struct{ s Sink }

func newHandoff(srv *mqtt.Server, stop <-chan struct{}) *handoff {
	return &handoff{srv: srv, stop: stop, attached: make(chan struct{}), subs: map[string]map[string]struct{}{}}
}

func (h *handoff) ID() string { return "telemetry-handoff" }

func (h *handoff) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnClientExpired, mqtt.OnDisconnect:
		return true
	}
	return false
}

// attach sets the sink (nil detaches it: publishes are then refused).
func (h *handoff) attach(s Sink) {
	h.sink.Store(&sinkBox{s})
	h.once.Do(func() { close(h.attached) })
}

// current waits for a sink to be attached (or the client or the broker
// to go away: nil) and returns it; nil once detached.
func (h *handoff) current(cl *mqtt.Client) Sink {
	select {
	case <-h.attached:
		return h.sink.Load().s
	default:
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.attached:
			return h.sink.Load().s
		case <-h.stop:
			return nil
		case <-t.C:
			if cl.Closed() {
				return nil
			}
		}
	}
}

// OnPublish runs on the publishing client's goroutine after mochi's
// checks (ACL, topic aliases, QoS capped) and before it acks and routes.
func (h *handoff) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, TelemetryPrefix) {
		return pk, nil
	}
	sink := h.current(cl)
	if sink == nil {
		return pk, packets.ErrRejectPacket // not acknowledged: the device publishes it again
	}
	qos := pk.FixedHeader.Qos
	if h.others.Load() || pk.FixedHeader.Retain {
		// mochi's inline client: routing (and retaining) for the others,
		// our hook skips it (Inline). It cannot fail with InlineClient on.
		_ = h.srv.Publish(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, qos)
	}
	switch qos {
	case 0:
		sink.Telemetry(pk.TopicName, pk.Payload, nil)
		return pk, packets.CodeSuccessIgnore // nothing to ack; mochi routes nothing
	case 1:
		q := h.ackQueue(cl)
		id := pk.PacketID
		sink.Telemetry(pk.TopicName, pk.Payload, func() { q.add(cl, id) })
		return pk, packets.ErrRejectPacket
	}
	durable := make(chan struct{})
	if !sink.Telemetry(pk.TopicName, pk.Payload, func() { close(durable) }) {
		return pk, packets.ErrRejectPacket
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-durable:
			return pk, packets.CodeSuccessIgnore // mochi acks (PUBREC) and routes nothing
		case <-h.stop:
			return pk, packets.ErrRejectPacket
		case <-t.C:
			if cl.Closed() {
				return pk, packets.ErrRejectPacket
			}
		}
	}
}

// ackQueue returns cl's PUBACK queue.
func (h *handoff) ackQueue(cl *mqtt.Client) *ackQueue {
	if q, ok := h.acks.Load(cl); ok {
		return q.(*ackQueue)
	}
	q, _ := h.acks.LoadOrStore(cl, new(ackQueue))
	return q.(*ackQueue)
}

// ackQueue holds one client's PUBACKs while a goroutine of its own writes
// them: the sink calls done on its own (shared) goroutine, which must
// never wait for one device's socket (a device that stops reading would
// stall every other's acknowledgements). Per client, PUBACKs go out in
// the order done was called, which is the order of the publishes.
type ackQueue struct {
	mu      sync.Mutex
	ids     []uint16
	writing bool
}

func (q *ackQueue) add(cl *mqtt.Client, id uint16) {
	q.mu.Lock()
	q.ids = append(q.ids, id)
	start := !q.writing
	q.writing = true
	q.mu.Unlock()
	if start {
		go q.write(cl)
	}
}

// write sends the queued PUBACKs until none is left. A client gone by
// then does not get them (WritePacket fails): it publishes again.
func (q *ackQueue) write(cl *mqtt.Client) {
	var ids []uint16
	for {
		q.mu.Lock()
		ids, q.ids = q.ids, ids[:0]
		if len(ids) == 0 {
			q.writing = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		for _, id := range ids {
			_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
		}
	}
}

// OnDisconnect forgets the connection's PUBACK queue (a reconnect is a new
// *mqtt.Client; PUBACKs still queued for this one fail harmlessly).
func (h *handoff) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.acks.Delete(cl) }

// MayMatchTelemetry reports whether an MQTT subscription filter can match
// some topic twin/telemetry/{name} ($share/{group}/ prefix allowed).
func MayMatchTelemetry(filter string) bool {
	if len(filter) >= 7 && strings.EqualFold(filter[:7], "$share/") { // mochi's prefix is any case
		_, f, found := strings.Cut(filter[7:], "/")
		if !found {
			return false
		}
		filter = f
	} else if strings.HasPrefix(filter, "$") {
		return false
	}
	levels := strings.Split(filter, "/")
	want := []string{"twin", "telemetry"}
	for k, l := range levels {
		switch {
		case l == "#":
			return true
		case k < 2:
			if l != "+" && l != want[k] {
				return false
			}
		case k == 2:
			// any name, or +
		case k == 3:
			return false // twin/telemetry/x/y: deeper than any name (x/# returned above)
		}
	}
	return len(levels) >= 3
}

// OnSubscribed keeps others: a subscription that can match telemetry
// makes every telemetry publish routed for it too, from now on.
func (h *handoff) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, f := range pk.Filters {
		if k < len(codes) && codes[k] >= packets.ErrUnspecifiedError.Code || !MayMatchTelemetry(f.Filter) {
			continue
		}
		m := h.subs[cl.ID]
		if m == nil {
			m = map[string]struct{}{}
			h.subs[cl.ID] = m
		}
		m[f.Filter] = struct{}{}
	}
	h.others.Store(len(h.subs) > 0)
}

// OnUnsubscribed runs for an UNSUBSCRIBE and when mochi drops a client's
// subscriptions (clean session ended, session taken over clean).
func (h *handoff) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.subs[cl.ID]; m != nil {
		for _, f := range pk.Filters {
			delete(m, f.Filter)
		}
		if len(m) == 0 {
			delete(h.subs, cl.ID)
		}
	}
	h.others.Store(len(h.subs) > 0)
}

// OnClientExpired: a persistent session that expired takes its
// subscriptions with it.
func (h *handoff) OnClientExpired(cl *mqtt.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, cl.ID)
	h.others.Store(len(h.subs) > 0)
}
