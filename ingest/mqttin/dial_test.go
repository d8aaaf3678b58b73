package mqttin

import (
	"io"
	"net"
	"net/url"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citytwin/citytwin/internal/clock"
)

// TestDialBufferedReadsThrough checks the buffered connection delivers the
// peer's bytes in order, writes straight through, and reads several small
// packets from one buffered read.
func TestDialBufferedReadsThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("\x30\x02ab\x30\x02cd"))
		b := make([]byte, 4)
		_, _ = io.ReadFull(c, b)
		got <- b
	}()
	u, _ := url.Parse("tcp://" + ln.Addr().String())
	c, err := dialBuffered(u, *paho.NewClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bc, ok := c.(*bufConn)
	if !ok {
		t.Fatalf("dialBuffered returned %T, want *bufConn", c)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil || one[0] != 0x30 {
		t.Fatalf("first byte %x, %v", one, err)
	}
	rest := make([]byte, 7)
	if _, err := io.ReadFull(c, rest); err != nil || string(rest) != "\x02ab\x30\x02cd" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if bc.r.Buffered() != 0 {
		t.Fatalf("%d bytes left buffered", bc.r.Buffered())
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "ping" {
		t.Fatalf("peer read %q", b)
	}
}

// TestBufferedOnlyForTCP keeps paho's dialer for TLS and websocket URLs.
func TestBufferedOnlyForTCP(t *testing.T) {
	for url, want := range map[string]bool{
		"tcp://127.0.0.1:1883": true, "mqtt://127.0.0.1:1883": true,
		"ssl://127.0.0.1:8883": false, "ws://127.0.0.1:9001/mqtt": false, "wss://h:443/mqtt": false,
	} {
		i := New(nil, Options{BrokerURL: url, Clock: clock.Real{}})
		if got := i.buffered; got != want {
			t.Errorf("%s: buffered dialer %v, want %v", url, got, want)
		}
	}
}
