package mqttin

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/proxy"

	"github.com/citytwin/citytwin/ingest/journal"
)

// sub5 is one MQTT 5 subscriber connection of an Ingest: it connects,
// subscribes and reconnects until its context ends. Each live connection
// (a link) runs a pipeline that never waits for one message at a time:
//
//	reader (decode, validate, append to the log without waiting)
//	  -> acker (waits for JetStream's PubAcks in receive order)
//	  -> writer (PUBACKs in batches, one write for all that are ready)
//
// so up to ReceiveMaximum messages are between the broker and the log at
// once, and PUBACKs go out in the order the PUBLISHes came, as MQTT 5
// requires [MQTT-4.6.0-2].
type sub5 struct {
	i        *Ingest
	v311     bool // MQTT 3.1.1 (--mqtt-protocol 3): same packets, no properties
	clientID string
	subs     []subscription
	up       func(bool) // subscribed (true) or lost (false)
}

// protocol is the MQTT version the connection speaks, for logs: 3 (v3.1.1,
// whose Receive Maximum the broker ignores) or 5.
func (s *sub5) protocol() int {
	if s.v311 {
		return 3
	}
	return 5
}

// link5 is one network connection of a sub5.
type link5 struct {
	v311      bool
	conn      net.Conn
	r         *bufio.Reader
	keepAlive time.Duration

	acks     chan ack5 // in receive order
	lastRecv atomic.Int64

	// Owned by the reader: telemetry taken but not yet appended, sent
	// to the log as one message when the socket has nothing more ready
	// or the batch is full (journal.AppendBatch), so a burst costs the
	// log one message per batch, not one per PUBLISH, and a lone
	// message waits for nothing.
	batch      []journal.Entry
	batchIDs   []uint16
	batchBytes int
	spans      []journal.Span // scratch for flush5

	mu     sync.Mutex
	out    []byte // PUBACKs and PINGREQs not yet written
	wake   chan struct{}
	failed atomic.Bool // a write failed: the link is going away
}

// ack5 is a received message on its way to its PUBACK.
type ack5 struct {
	id  uint16         // QoS 1 packet id; 0: nothing to acknowledge (QoS 0)
	ids []uint16       // journaled: their packet ids (0: QoS 0), in receive order
	g   *journal.Group // journaled: PUBACK once the log has the group
}

const (
	subscribeID  = 1
	writeTimeout = 10 * time.Second
)

// run keeps the subscriber connected until ctx ends, then returns after a
// clean disconnect (journaled messages PUBACKed within the Ingest's ack
// deadline, the rest left to the broker's session).
func (s *sub5) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		l, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.i.log.Warn("MQTT connect failed; retrying", "broker", s.i.opts.BrokerURL, "client", s.clientID, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.i.opts.MaxReconnectInterval)
			continue
		}
		backoff = 100 * time.Millisecond
		err = s.serve(ctx, l)
		if ctx.Err() == nil {
			s.i.log.Warn("MQTT connection lost; reconnecting", "broker", s.i.opts.BrokerURL, "client", s.clientID, "err", err)
		}
	}
}

// dial connects, sends CONNECT and SUBSCRIBE and reads the CONNACK; the
// SUBACK comes through the reader (queued messages may precede it).
func (s *sub5) dial(ctx context.Context) (*link5, error) {
	o := s.i.opts
	u, err := url.Parse(o.BrokerURL)
	if err != nil {
		return nil, fmt.Errorf("mqtt5: broker URL: %w", err)
	}
	host := u.Host
	secure := u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts"
	if u.Port() == "" {
		port := "1883"
		if secure {
			port = "8883"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	if cd, ok := proxy.FromEnvironmentUsing(d).(proxy.ContextDialer); ok {
		conn, err = cd.DialContext(dctx, "tcp", host)
	} else {
		conn, err = d.DialContext(dctx, "tcp", host)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt5: dial %s: %w", host, err)
	}
	if secure {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("mqtt5: TLS with %s: %w", host, err)
		}
		conn = tc
	}
	l := &link5{v311: s.v311, conn: conn, r: bufio.NewReaderSize(conn, ReadBufferSize), keepAlive: 30 * time.Second,
		acks: make(chan ack5, int(o.ReceiveMaximum)+64), wake: make(chan struct{}, 1)}
	user, pass, hasPass := "", "", false
	if u.User != nil {
		user = u.User.Username()
		pass, hasPass = u.User.Password()
	}
	_ = conn.SetDeadline(time.Now().Add(o.ConnectTimeout))
	connect := connectPacket(s.clientID, user, pass, hasPass, uint16(l.keepAlive/time.Second), uint32(o.SessionExpiry/time.Second), o.ReceiveMaximum, s.v311)
	if _, err := conn.Write(connect); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mqtt5: CONNECT: %w", err)
	}
	p, err := readPacket(l.r)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mqtt5: waiting for CONNACK: %w", err)
	}
	if p.typ != pktConnack {
		conn.Close()
		return nil, fmt.Errorf("mqtt5: packet type %d instead of CONNACK", p.typ)
	}
	ca, err := decodeConnack(p, s.v311)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ca.reason != 0 {
		conn.Close()
		if s.v311 {
			return nil, fmt.Errorf("mqtt: broker refused the v3.1.1 connection: return code %d", ca.reason)
		}
		return nil, fmt.Errorf("mqtt5: broker refused the connection: reason 0x%02x %s (does it speak MQTT 5? --mqtt-protocol 3 uses v3.1.1)", ca.reason, ca.reasonString)
	}
	if ca.serverKeepAlive >= 0 { // [MQTT-3.2.2-21]
		l.keepAlive = time.Duration(ca.serverKeepAlive) * time.Second
	}
	if _, err := conn.Write(subscribePacket(subscribeID, s.subs, s.v311)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mqtt5: SUBSCRIBE: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	l.lastRecv.Store(time.Now().UnixNano())
	s.i.log.Debug("MQTT connected", "client", s.clientID, "protocol", s.protocol(), "session_present", ca.sessionPresent, "keepalive", l.keepAlive)
	return l, nil
}

// serve runs a link until it fails or ctx ends.
func (s *sub5) serve(ctx context.Context, l *link5) error {
	var up atomic.Bool
	defer func() {
		if up.Load() {
			s.up(false)
		}
	}()
	stopWatch := context.AfterFunc(ctx, func() {
		// Unblock the reader: shutdown stops taking messages at once.
		_ = l.conn.SetReadDeadline(time.Now())
	})
	defer stopWatch()

	ackerDone := make(chan struct{})
	go s.acker(l, ackerDone)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		l.writer(ctx, ackerDone)
	}()

	err := s.read(l, &up) //nolint:contextcheck // shutdown stops the reader by its read deadline; a message taken is finished (dead letters included), not abandoned
	s.i.flush5(l)
	close(l.acks) // the acker drains what was taken, then the writer
	<-writerDone
	l.conn.Close()
	return err
}

// read takes packets until the link fails, the broker disconnects us or
// shutdown sets the read deadline.
func (s *sub5) read(l *link5, up *atomic.Bool) error {
	for {
		p, err := readPacket(l.r)
		if err != nil {
			return err
		}
		l.lastRecv.Store(time.Now().UnixNano())
		switch p.typ {
		case pktPublish:
			m, err := decodePublish(p, l.v311)
			if err != nil {
				return err
			}
			s.i.take5(l, m)
			if l.r.Buffered() == 0 {
				// The next read waits for the network: append what
				// was taken now rather than after it.
				s.i.flush5(l)
			}
		case pktSuback:
			sa, err := decodeSuback(p, l.v311)
			if err != nil {
				return err
			}
			if sa.id != subscribeID || len(sa.reasons) == 0 || sa.reasons[0] >= 0x80 {
				code := byte(0)
				if len(sa.reasons) > 0 {
					code = sa.reasons[0]
				}
				s.i.log.Error("subscribe refused; reconnecting", "filter", s.subs[0].filter, "reason", fmt.Sprintf("0x%02x", code))
				return fmt.Errorf("mqtt5: SUBSCRIBE %s refused (reason 0x%02x)", s.subs[0].filter, code)
			}
			if up.CompareAndSwap(false, true) {
				s.up(true)
				s.i.log.Info("MQTT telemetry ingest subscribed", "broker", s.i.opts.BrokerURL, "filter", s.subs[0].filter,
					"client", s.clientID, "protocol", s.protocol(), "receive_maximum", s.i.opts.ReceiveMaximum)
			}
		case pktPingresp:
		case pktDisconnect:
			code, reason := decodeDisconnect(p)
			return fmt.Errorf("mqtt5: broker disconnected us: reason 0x%02x %s", code, reason)
		default:
			return fmt.Errorf("mqtt5: unexpected packet type %d", p.typ)
		}
	}
}

// take5 handles one PUBLISH on the reader's goroutine: $SYS counters, or
// telemetry validated at the edge and appended to the log without waiting.
// The acker PUBACKs it once the log has it.
func (i *Ingest) take5(l *link5, m inPublish) {
	if strings.HasPrefix(m.topic, "$SYS/") {
		i.flush5(l) // PUBACKs in receive order
		i.sys.observe(m.topic, m.payload)
		l.acks <- ack5{id: m.id}
		return
	}
	if i.opts.Journal == nil {
		// Applied directly (tests, benchmarks): acknowledged on receipt.
		i.dispatch(inbound{topic: m.topic, payload: m.payload})
		l.acks <- ack5{id: m.id}
		return
	}
	name, msg, ok := i.edge(m.topic, m.payload)
	if !ok { // dead-lettered
		i.flush5(l)
		l.acks <- ack5{id: m.id}
		return
	}
	l.batch = append(l.batch, journal.Entry{Source: "mqtt", Topic: m.topic, Name: name, TS: msg.TS, Payload: m.payload})
	l.batchIDs = append(l.batchIDs, m.id)
	l.batchBytes += len(m.payload) + len(m.topic) + len(name) + 20
	if len(l.batch) >= journal.MaxBatch || l.batchBytes >= journal.MaxBatchBytes {
		i.flush5(l)
	}
}

// flush5 gives the reader's batch to the log's group commit (shared by
// every link) without waiting; the acker PUBACKs its messages once the
// log has their group.
func (i *Ingest) flush5(l *link5) {
	if len(l.batch) == 0 {
		return
	}
	l.spans = i.commit.Add(l.batch, l.spans[:0])
	ids := l.batchIDs
	for _, sp := range l.spans {
		l.acks <- ack5{ids: ids[:sp.N:sp.N], g: sp.G}
		ids = ids[sp.N:]
	}
	l.batch, l.batchIDs, l.batchBytes = l.batch[:0], make([]uint16, 0, cap(l.batchIDs)), 0
	clear(l.spans)
}

// acker waits for the log's answer to each message in receive order and
// queues its PUBACK; when ackCtx ends (shutdown with NATS away) the rest
// is left unacknowledged for the broker to deliver again.
func (s *sub5) acker(l *link5, done chan<- struct{}) {
	defer close(done)
	for a := range l.acks {
		if a.g != nil {
			if <-a.g.Done(); a.g.Err() != nil {
				continue
			}
			l.queue(func(b []byte) []byte {
				for _, id := range a.ids {
					if id != 0 {
						b = appendPuback(b, id)
					}
				}
				return b
			})
			continue
		}
		if a.id != 0 {
			l.queue(func(b []byte) []byte { return appendPuback(b, a.id) })
		}
	}
}

// queue adds a packet for the writer and wakes it.
func (l *link5) queue(add func([]byte) []byte) {
	l.mu.Lock()
	l.out = add(l.out)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// ackPace is the least time between two writes of a link: after a write
// the writer waits this long, so every PUBACK the log confirmed meanwhile
// goes in the next write. Written as soon as ready, a link wrote about
// once per journaled group (a syscall each here and a wake-up of the
// broker's loop); paced, at 19k msgs/s through Mosquitto the server's
// writes fell from 0.26 to 0.08 a message and its reads (the broker's
// PUBLISHes then come in longer runs) from 0.41 to 0.20, for 7 µs less
// CPU per message (49 to 42, registration included). A PUBACK later by
// at most this much costs nothing: the broker may have ReceiveMaximum
// messages in flight to us, and one not acknowledged when the link drops
// is delivered again and absorbed as a duplicate.
const ackPace = 2 * time.Millisecond

// writer writes queued packets, all that are ready in one write, pings
// the broker and watches for its silence, until the acker is done; then,
// on shutdown, it says goodbye (DISCONNECT, session kept).
func (l *link5) writer(ctx context.Context, ackerDone <-chan struct{}) {
	var tick <-chan time.Time
	if l.keepAlive > 0 {
		t := time.NewTicker(l.keepAlive / 2)
		defer t.Stop()
		tick = t.C
	}
	var buf []byte
	flush := func() {
		l.mu.Lock()
		buf, l.out = l.out, buf[:0]
		l.mu.Unlock()
		if len(buf) == 0 || l.failed.Load() {
			return
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := l.conn.Write(buf); err != nil {
			l.failed.Store(true)
			_ = l.conn.Close() // the reader sees it and the link is redone
		}
	}
	for {
		select {
		case <-l.wake:
			flush()
			// The PUBACKs confirmed meanwhile go in the next write.
			time.Sleep(ackPace)
		case <-tick:
			if silent := time.Since(time.Unix(0, l.lastRecv.Load())); silent > l.keepAlive*3/2 {
				l.failed.Store(true)
				_ = l.conn.Close()
				continue
			}
			l.queue(func(b []byte) []byte { return append(b, pingreqPacket...) })
		case <-ackerDone:
			flush()
			if ctx.Err() != nil && !l.failed.Load() {
				_ = l.conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = l.conn.Write(disconnectPacket)
			}
			return
		}
	}
}

// errOwnUnsupported marks broker URLs our own subscriber client (this
// file, MQTT 5 or 3.1.1) cannot dial (websockets, unix sockets): those
// keep paho's v3.1.1 client.
var errOwnUnsupported = errors.New("mqtt: URL scheme not supported by our subscriber client")

// ownDialable reports whether our own subscriber client can dial rawURL.
func ownDialable(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		return nil
	}
	return fmt.Errorf("%w: %s", errOwnUnsupported, u.Scheme)
}
