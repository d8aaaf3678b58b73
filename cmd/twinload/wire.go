package main

// The publisher side of the MQTT load: MQTT 3.1.1 packets encoded by
// mochi-mqtt's packets package and written straight to the socket, one
// flush per pacing tick, with the PUBACKs counted by a reader goroutine.
// Why not paho: its per-message token, goroutine hand-offs and channel
// sends cost the load tool ~30 µs of CPU per QoS 1 message on this
// machine, as much as the broker and more than half the server's, so on two
// shared cores the tool itself capped the rate it could offer (~16 k/s).
// This writer costs a few µs, leaving the cores to the broker and server.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// wireConn is one publishing connection. Publish and Flush are called from
// one goroutine (the connection's pacer); the reader runs on its own.
type wireConn struct {
	conn  net.Conn
	w     *bufio.Writer
	qos   byte
	slots chan struct{} // QoS 1 publishes awaiting their PUBACK (the window)
	id    uint16
	buf   bytes.Buffer
	pk    packets.Packet

	sent   int64
	acked  atomic.Int64
	closed chan struct{} // the reader ended (connection lost or closed)
	err    atomic.Value  // error: why the reader ended
}

// dialWire connects to broker (tcp://host:port) as clientID with a clean
// session and waits for the CONNACK.
func dialWire(broker, clientID string, qos byte) (*wireConn, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", broker, err)
	}
	if u.Scheme != "tcp" && u.Scheme != "mqtt" {
		return nil, fmt.Errorf("broker URL %q: only tcp:// is supported", broker)
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", broker, err)
	}
	wc := &wireConn{conn: c, w: bufio.NewWriterSize(c, 256<<10), qos: qos, slots: make(chan struct{}, window), closed: make(chan struct{})}
	connect := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			ClientIdentifier: clientID,
		},
	}
	if err := connect.ConnectEncode(&wc.buf); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(wc.buf.Bytes()); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s: %w", broker, err)
	}
	r := bufio.NewReaderSize(c, 64<<10)
	typ, body, err := readWirePacket(r)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s: no CONNACK: %w", broker, err)
	}
	if typ != packets.Connack || len(body) < 2 {
		c.Close()
		return nil, fmt.Errorf("connect %s: no CONNACK (packet type %d)", broker, typ)
	}
	if body[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("connect %s: refused, return code %d", broker, body[1])
	}
	_ = c.SetDeadline(time.Time{})
	go wc.read(r)
	return wc, nil
}

// read counts PUBACKs (the broker acks one connection's QoS 1 publishes in
// order, so a count is enough) and frees their window slots.
func (wc *wireConn) read(r *bufio.Reader) {
	defer close(wc.closed)
	for {
		typ, _, err := readWirePacket(r)
		if err != nil {
			wc.err.Store(err)
			return
		}
		if typ == packets.Puback {
			wc.acked.Add(1)
			<-wc.slots
		}
	}
}

// readWirePacket reads one MQTT control packet: its type and body.
func readWirePacket(r *bufio.Reader) (byte, []byte, error) {
	hb, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return 0, nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hb >> 4, body, nil
}

// Publish buffers one PUBLISH. With QoS 1 it first takes a window slot;
// when the window is full it flushes and waits for PUBACKs (or the
// connection's end, then it reports the error).
func (wc *wireConn) Publish(topic string, payload []byte) error {
	if wc.qos > 0 {
		select {
		case wc.slots <- struct{}{}:
		default:
			if err := wc.w.Flush(); err != nil {
				return err
			}
			select {
			case wc.slots <- struct{}{}:
			case <-wc.closed:
				return wc.readErr()
			}
		}
		wc.id++
		if wc.id == 0 {
			wc.id = 1
		}
	}
	wc.pk = packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: wc.qos},
		ProtocolVersion: 4,
		TopicName:       topic,
		Payload:         payload,
		PacketID:        wc.id,
	}
	wc.buf.Reset()
	if err := wc.pk.PublishEncode(&wc.buf); err != nil {
		return err
	}
	if _, err := wc.w.Write(wc.buf.Bytes()); err != nil {
		return err
	}
	wc.sent++
	return nil
}

// Flush writes what Publish buffered.
func (wc *wireConn) Flush() error { return wc.w.Flush() }

func (wc *wireConn) readErr() error {
	if err, ok := wc.err.Load().(error); ok {
		return err
	}
	return errors.New("connection closed")
}

// Wait flushes and waits until every QoS 1 publish is PUBACKed, the
// connection ends, or timeout passes; it returns how many were acked.
func (wc *wireConn) Wait(timeout time.Duration) int64 {
	if err := wc.w.Flush(); err != nil {
		return wc.acked.Load()
	}
	if wc.qos == 0 {
		return 0
	}
	deadline := time.Now().Add(timeout)
	for wc.acked.Load() < wc.sent && time.Now().Before(deadline) {
		select {
		case <-wc.closed:
			return wc.acked.Load()
		case <-time.After(5 * time.Millisecond): // polling a counter the reader moves
		}
	}
	return wc.acked.Load()
}

// Close sends DISCONNECT (so the broker drops no will and logs a clean
// end) and closes the socket.
func (wc *wireConn) Close() {
	_, _ = wc.w.Write([]byte{packets.Disconnect << 4, 0})
	_ = wc.w.Flush()
	_ = wc.conn.Close()
	<-wc.closed
}
