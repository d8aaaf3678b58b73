package mqttin

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// publishBytes encodes a PUBLISH as a broker would send it.
func publishBytes(topic string, id uint16, qos byte, props []byte, payload string) []byte {
	var b []byte
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	b = appendVarint(b, len(props))
	b = append(b, props...)
	b = append(b, payload...)
	return frame(pktPublish<<4|qos<<1, b)
}

func read1(t *testing.T, b []byte) packet {
	t.Helper()
	p, err := readPacket(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecodePublish(t *testing.T) {
	// A user property and a message expiry, as brokers forward them.
	props := []byte{0x26, 0, 1, 'k', 0, 1, 'v', 0x02, 0, 0, 0, 60}
	p := read1(t, publishBytes("twin/telemetry/v1", 7, 1, props, `{"ts":1}`))
	m, err := decodePublish(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.topic != "twin/telemetry/v1" || m.id != 7 || m.qos != 1 || string(m.payload) != `{"ts":1}` {
		t.Fatalf("%+v", m)
	}
	m, err = decodePublish(read1(t, publishBytes("$SYS/broker/publish/messages/dropped", 0, 0, nil, "12")), false)
	if err != nil || m.qos != 0 || string(m.payload) != "12" {
		t.Fatalf("%+v %v", m, err)
	}
	for name, b := range map[string][]byte{
		"qos2":        publishBytes("a", 1, 2, nil, "x"),
		"id0":         publishBytes("a", 0, 1, nil, "x"),
		"topic alias": publishBytes("a", 1, 1, []byte{propTopicAlias, 0, 1}, "x"),
		"bad prop":    publishBytes("a", 1, 1, []byte{0x7F}, "x"),
		"empty topic": publishBytes("", 1, 1, nil, "x"),
	} {
		if _, err := decodePublish(read1(t, b), false); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// publishBytes311 encodes a v3.1.1 PUBLISH: no properties.
func publishBytes311(topic string, id uint16, qos byte, payload string) []byte {
	var b []byte
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	b = append(b, payload...)
	return frame(pktPublish<<4|qos<<1, b)
}

// TestDecode311: the v3.1.1 packets (no properties; CONNACK's two bytes).
// A payload starting with what would be a v5 property length is payload.
func TestDecode311(t *testing.T) {
	m, err := decodePublish(read1(t, publishBytes311("twin/telemetry/v1", 7, 1, `{"ts":1}`)), true)
	if err != nil || m.topic != "twin/telemetry/v1" || m.id != 7 || m.qos != 1 || string(m.payload) != `{"ts":1}` {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = decodePublish(read1(t, publishBytes311("a/b", 0, 0, "\x05xyz")), true)
	if err != nil || m.qos != 0 || string(m.payload) != "\x05xyz" {
		t.Fatalf("QoS 0: %+v %v", m, err)
	}
	for name, b := range map[string][]byte{
		"qos2":        publishBytes311("a", 1, 2, "x"),
		"id0":         publishBytes311("a", 0, 1, "x"),
		"empty topic": publishBytes311("", 1, 1, "x"),
		"short":       frame(pktPublish<<4|2, []byte{0, 5, 'a'}),
	} {
		if _, err := decodePublish(read1(t, b), true); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c, err := decodeConnack(read1(t, frame(pktConnack<<4, []byte{1, 0})), true)
	if err != nil || !c.sessionPresent || c.reason != 0 || c.serverKeepAlive != -1 {
		t.Fatalf("CONNACK %+v %v", c, err)
	}
	if c, err = decodeConnack(read1(t, frame(pktConnack<<4, []byte{0, 5})), true); err != nil || c.reason != 5 {
		t.Fatalf("refused CONNACK %+v %v", c, err)
	}
	sa, err := decodeSuback(read1(t, frame(pktSuback<<4, []byte{0, 1, 1, 0x80})), true)
	if err != nil || sa.id != 1 || !bytes.Equal(sa.reasons, []byte{1, 0x80}) {
		t.Fatalf("SUBACK %+v %v", sa, err)
	}
	cp := read1(t, connectPacket("id", "u", "p", true, 30, 3600, 65535, true))
	want := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC0, 0, 30, 0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}
	if cp.typ != pktConnect || !bytes.Equal(cp.body, want) {
		t.Fatalf("CONNECT %x, want %x", cp.body, want)
	}
	sp := read1(t, subscribePacket(1, []subscription{{"twin/telemetry/+", 1}}, true))
	if want := append([]byte{0, 1}, append(appendString(nil, "twin/telemetry/+"), 1)...); sp.typ != pktSubscribe || sp.flags != 2 || !bytes.Equal(sp.body, want) {
		t.Fatalf("SUBSCRIBE %x, want %x", sp.body, want)
	}
}

func TestConnackAndSuback(t *testing.T) {
	// Session present, success, Server Keep Alive 20, a reason string.
	body := []byte{1, 0}
	pr := []byte{propServerKeepAlive, 0, 20, propReasonString, 0, 2, 'o', 'k'}
	body = append(appendVarint(body, len(pr)), pr...)
	c, err := decodeConnack(read1(t, frame(pktConnack<<4, body)), false)
	if err != nil || !c.sessionPresent || c.reason != 0 || c.serverKeepAlive != 20 || c.reasonString != "ok" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = decodeConnack(read1(t, frame(pktConnack<<4, []byte{0, 0x84})), false)
	if err != nil || c.reason != 0x84 || c.serverKeepAlive != -1 {
		t.Fatalf("refusal without properties: %+v %v", c, err)
	}
	s, err := decodeSuback(read1(t, frame(pktSuback<<4, []byte{0, 1, 0, 1, 0x87})), false)
	if err != nil || s.id != 1 || !bytes.Equal(s.reasons, []byte{1, 0x87}) {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestEncodings(t *testing.T) {
	for _, v := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455} {
		got, err := readVarint(bytes.NewReader(appendVarint(nil, v)))
		if err != nil || got != v {
			t.Fatalf("varint %d: %d %v", v, got, err)
		}
	}
	if _, err := readVarint(bytes.NewReader([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x01})); !errors.Is(err, errMalformed) {
		t.Fatalf("5-byte varint: %v", err)
	}
	c := read1(t, connectPacket("id", "u", "p", true, 30, 3600, 65535, false))
	want := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xC0, 0, 30, 13,
		propSessionExpiry, 0, 0, 0x0E, 0x10, propReceiveMaximum, 0xFF, 0xFF, propMaxPacketSize, 0x01, 0, 0, 0,
		0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}
	if c.typ != pktConnect || !bytes.Equal(c.body, want) {
		t.Fatalf("CONNECT %x, want %x", c.body, want)
	}
	s := read1(t, subscribePacket(1, []subscription{{"$share/g/twin/telemetry/+", 1}}, false))
	if s.typ != pktSubscribe || s.flags != 2 || !bytes.Equal(s.body[len(s.body)-1:], []byte{1}) {
		t.Fatalf("SUBSCRIBE %+v", s)
	}
	if b := appendPuback(nil, 0x0102); !bytes.Equal(b, []byte{0x40, 2, 1, 2}) {
		t.Fatalf("PUBACK %x", b)
	}
}

func TestReadPacketLimits(t *testing.T) {
	big := append([]byte{pktPublish << 4}, appendVarint(nil, maxPacket+1)...)
	if _, err := readPacket(bufio.NewReader(bytes.NewReader(big))); err == nil {
		t.Fatal("a packet over the limit was read")
	}
	if _, err := readPacket(bufio.NewReader(bytes.NewReader([]byte{pktPublish << 4, 5, 0}))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

// FuzzReadPacket: whatever a broker (or something posing as one) sends,
// the reader and the decoders (MQTT 5 and 3.1.1) return an error or a
// packet, never panic, and a decoded PUBLISH's topic and payload lie
// within the packet.
func FuzzReadPacket(f *testing.F) {
	f.Add(publishBytes("twin/telemetry/v1", 7, 1, []byte{0x26, 0, 1, 'k', 0, 1, 'v'}, `{"ts":1}`))
	f.Add(frame(pktConnack<<4, []byte{1, 0, 3, propServerKeepAlive, 0, 20}))
	f.Add(frame(pktSuback<<4, []byte{0, 1, 0, 1, 0x87}))
	f.Add(frame(pktDisconnect<<4, []byte{0x8B, 3, propReasonString, 0, 0}))
	f.Add(publishBytes311("twin/telemetry/v1", 7, 1, `{"ts":1}`))
	f.Add(frame(pktConnack<<4, []byte{1, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for {
			p, err := readPacket(r)
			if err != nil {
				return
			}
			switch p.typ {
			case pktPublish:
				for _, v311 := range []bool{false, true} {
					if m, err := decodePublish(p, v311); err == nil && len(m.topic)+len(m.payload) > len(p.body) {
						t.Fatalf("v311 %v: topic and payload %d bytes from a %d-byte body", v311, len(m.topic)+len(m.payload), len(p.body))
					}
				}
			case pktConnack:
				_, _ = decodeConnack(p, false)
				_, _ = decodeConnack(p, true)
			case pktSuback:
				_, _ = decodeSuback(p, false)
				_, _ = decodeSuback(p, true)
			case pktDisconnect:
				_, _ = decodeDisconnect(p)
			}
		}
	})
}
