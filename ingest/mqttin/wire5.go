package mqttin

// The MQTT 5 packets a telemetry subscriber needs (OASIS MQTT 5.0, §2-3):
// CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in, PUBACK out, PINGREQ/
// PINGRESP and DISCONNECT. Why our own and not a client library: a v5
// client is what lifts the broker's in-flight cap (Receive Maximum; a v3.1.1
// subscriber gets Mosquitto's max_inflight_messages, 20), and the one v5 Go
// client on the module proxy tracks manual acks in a list scanned per
// message and sends them on a timer, which does not keep up with tens of
// thousands of acks a second. This subset decodes one packet from a
// buffered reader and writes PUBACKs in batches.
//
// The same packets in MQTT 3.1.1 (OASIS MQTT 3.1.1, §3) differ only in
// having no properties and CONNACK's two bytes, so v311 selects them: a
// broker that speaks only 3.1.1 (nats-server's MQTT listener) gets the same
// pipeline. paho's v3.1.1 client, which it replaces over TCP, cost a router
// match, three goroutine hand-offs and a message object per PUBLISH: 5-10 %
// of the server's CPU at 110k msgs/s through nats-server.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Control packet types (MQTT 5 §2.1.2).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// Properties this client sends or reads (MQTT 5 §2.2.2.2).
const (
	propSessionExpiry   = 0x11
	propServerKeepAlive = 0x13
	propReasonString    = 0x1F
	propReceiveMaximum  = 0x21
	propTopicAlias      = 0x23
	propMaxPacketSize   = 0x27
)

// maxPacket bounds a packet this client accepts (and tells the broker in
// CONNECT, so it never sends a larger one: the broker discards it instead).
const maxPacket = 16 << 20

var errMalformed = errors.New("mqtt5: malformed packet")

// packet is one decoded control packet: its type, the fixed header's flags
// and its body (variable header and payload).
type packet struct {
	typ   byte
	flags byte
	body  []byte
}

// readPacket reads one control packet. The body is freshly allocated, so
// slices of it (a PUBLISH payload) may be kept.
func readPacket(r *bufio.Reader) (packet, error) {
	h, err := r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	n, err := readVarint(r)
	if err != nil {
		return packet{}, err
	}
	if n > maxPacket {
		return packet{}, fmt.Errorf("mqtt5: packet of %d bytes over the %d limit", n, maxPacket)
	}
	p := packet{typ: h >> 4, flags: h & 0x0F, body: make([]byte, n)}
	if _, err := io.ReadFull(r, p.body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return packet{}, err
	}
	return p, nil
}

// readVarint reads a Variable Byte Integer (§1.5.5): at most 4 bytes.
func readVarint(r io.ByteReader) (int, error) {
	v, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && i > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		v += int(b&0x7F) * mul
		if b&0x80 == 0 {
			return v, nil
		}
		mul <<= 7
	}
	return 0, errMalformed
}

func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder walks a packet body; any read past its end sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16() uint16 {
	if len(d.b) < 2 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) uint32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) binary() []byte { return d.bytes(int(d.uint16())) }

func (d *decoder) varint() int {
	v, mul := 0, 1
	for i := 0; i < 4; i++ {
		c := d.byte1()
		if d.bad {
			return 0
		}
		v += int(c&0x7F) * mul
		if c&0x80 == 0 {
			return v
		}
		mul <<= 7
	}
	d.bad = true
	return 0
}

// props are the properties this client reads; the rest are skipped.
type props struct {
	serverKeepAlive int // -1: absent
	topicAlias      int // 0: absent
	reason          string
}

// properties reads a property block (§2.2.2), skipping what it does not
// use but checking that every property is well formed.
func (d *decoder) properties() props {
	p := props{serverKeepAlive: -1}
	block := d.bytes(d.varint())
	if d.bad {
		return p
	}
	pd := decoder{b: block}
	for len(pd.b) > 0 && !pd.bad {
		id := pd.varint()
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			pd.byte1()
		case propServerKeepAlive:
			p.serverKeepAlive = int(pd.uint16())
		case propTopicAlias:
			p.topicAlias = int(pd.uint16())
		case propReceiveMaximum, 0x22: // two-byte integer
			pd.uint16()
		case 0x02, propSessionExpiry, 0x18, propMaxPacketSize: // four-byte integer
			pd.uint32()
		case 0x0B: // subscription identifier
			pd.varint()
		case propReasonString:
			p.reason = string(pd.binary())
		case 0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x09, 0x16: // string or binary
			pd.binary()
		case 0x26: // user property: a string pair
			pd.binary()
			pd.binary()
		default:
			pd.bad = true
		}
	}
	d.bad = d.bad || pd.bad
	return p
}

// inPublish is a PUBLISH received from the broker.
type inPublish struct {
	topic   string
	payload []byte
	qos     byte
	dup     bool
	id      uint16 // packet identifier, QoS 1 only
}

// decodePublish decodes a PUBLISH body (§3.3). Only QoS 0 and 1 are
// accepted: the subscription asks for at most 1, so the broker never
// sends 2. A topic alias is refused too: CONNECT allows none.
func decodePublish(p packet, v311 bool) (inPublish, error) {
	m := inPublish{qos: (p.flags >> 1) & 3, dup: p.flags&8 != 0}
	if m.qos > 1 {
		return m, fmt.Errorf("mqtt5: PUBLISH with QoS %d on a QoS 1 subscription", m.qos)
	}
	d := decoder{b: p.body}
	topic := d.binary()
	if m.qos == 1 {
		m.id = d.uint16()
	}
	var pr props
	if !v311 {
		pr = d.properties()
	}
	if d.bad {
		return m, errMalformed
	}
	if m.qos == 1 && m.id == 0 {
		return m, fmt.Errorf("mqtt5: PUBLISH QoS 1 with packet id 0: %w", errMalformed)
	}
	if pr.topicAlias != 0 {
		return m, errors.New("mqtt5: PUBLISH with a topic alias, which CONNECT did not allow")
	}
	if len(topic) == 0 || !utf8.Valid(topic) {
		return m, fmt.Errorf("mqtt5: PUBLISH topic empty or not UTF-8: %w", errMalformed)
	}
	m.topic = string(topic)
	m.payload = d.b
	return m, nil
}

// connack is the broker's CONNACK (§3.2).
type connack struct {
	sessionPresent  bool
	reason          byte
	serverKeepAlive int // -1: use ours
	reasonString    string
}

// A v3.1.1 CONNACK is the two bytes alone, its return code (§3.2.2.3) in
// place of the reason.
func decodeConnack(p packet, v311 bool) (connack, error) {
	d := decoder{b: p.body}
	c := connack{sessionPresent: d.byte1()&1 != 0, reason: d.byte1(), serverKeepAlive: -1}
	if d.bad {
		return c, errMalformed
	}
	if !v311 && len(d.b) > 0 { // a refusal may come without properties
		pr := d.properties()
		if d.bad {
			return c, errMalformed
		}
		c.serverKeepAlive, c.reasonString = pr.serverKeepAlive, pr.reason
	}
	return c, nil
}

// suback is the broker's SUBACK (§3.9): one reason code per filter.
type suback struct {
	id      uint16
	reasons []byte
}

// A v3.1.1 SUBACK has no properties; its failure code is 0x80 (§3.9.3).
func decodeSuback(p packet, v311 bool) (suback, error) {
	d := decoder{b: p.body}
	s := suback{id: d.uint16()}
	if !v311 {
		d.properties()
	}
	if d.bad {
		return s, errMalformed
	}
	s.reasons = d.b
	return s, nil
}

// decodeDisconnect reads a DISCONNECT from the broker (§3.14): its reason
// code (0 when the body is empty) and reason string.
func decodeDisconnect(p packet) (byte, string) {
	if len(p.body) == 0 {
		return 0, ""
	}
	d := decoder{b: p.body}
	code := d.byte1()
	var pr props
	if len(d.b) > 0 {
		pr = d.properties()
	}
	return code, pr.reason
}

// connectPacket builds a CONNECT (§3.1): MQTT 5, Clean Start false (the
// broker keeps the session, so QoS 1 telemetry waits for us while we are
// away), a Session Expiry Interval, our Receive Maximum and Maximum Packet
// Size, and no topic aliases. With v311, a v3.1.1 CONNECT (protocol level
// 4, Clean Session false, no properties: the broker keeps the session
// until we come back, and decides the in-flight window alone).
func connectPacket(clientID, user, pass string, hasPass bool, keepAlive uint16, sessionExpiry uint32, receiveMax uint16, v311 bool) []byte {
	var vh []byte
	vh = appendString(vh, "MQTT")
	if v311 {
		vh = append(vh, 4)
	} else {
		vh = append(vh, 5)
	}
	var flags byte
	if user != "" {
		flags |= 0x80
	}
	if hasPass {
		flags |= 0x40
	}
	vh = append(vh, flags)
	vh = binary.BigEndian.AppendUint16(vh, keepAlive)
	if !v311 {
		var pr []byte
		pr = append(pr, propSessionExpiry)
		pr = binary.BigEndian.AppendUint32(pr, sessionExpiry)
		pr = append(pr, propReceiveMaximum)
		pr = binary.BigEndian.AppendUint16(pr, receiveMax)
		pr = append(pr, propMaxPacketSize)
		pr = binary.BigEndian.AppendUint32(pr, maxPacket)
		vh = appendVarint(vh, len(pr))
		vh = append(vh, pr...)
	}
	vh = appendString(vh, clientID)
	if user != "" {
		vh = appendString(vh, user)
	}
	if hasPass {
		vh = appendString(vh, pass)
	}
	return frame(pktConnect<<4, vh)
}

// subscription is one topic filter of a SUBSCRIBE.
type subscription struct {
	filter string
	qos    byte
}

// subscribePacket builds a SUBSCRIBE (§3.8) with the given packet id; v311
// leaves out the (empty) properties.
func subscribePacket(id uint16, subs []subscription, v311 bool) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, id)
	if !v311 {
		b = append(b, 0) // no properties
	}
	for _, s := range subs {
		b = appendString(b, s.filter)
		b = append(b, s.qos&3) // No Local off (required for $share), retained as usual
	}
	return frame(pktSubscribe<<4|2, b)
}

// appendPuback appends a PUBACK with reason Success (§3.4: the short form,
// reason code and properties omitted).
func appendPuback(b []byte, id uint16) []byte {
	b = append(b, pktPuback<<4, 2)
	return binary.BigEndian.AppendUint16(b, id)
}

var (
	pingreqPacket    = []byte{pktPingreq << 4, 0}
	disconnectPacket = []byte{pktDisconnect << 4, 0} // normal disconnection, session kept
)

func frame(header byte, body []byte) []byte {
	b := append([]byte{header}, appendVarint(nil, len(body))...)
	return append(b, body...)
}
