package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPubSubRoundTrip(t *testing.T) {
	b, err := Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.HasPrefix(b.URL(), "tcp://127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("addr %q url %q", b.Addr(), b.URL())
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("broker-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	got := make(chan string, 1)
	if tok := c.Subscribe("twin/test/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := c.Publish("twin/test/x", 1, false, "hello"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered")
	}
	if n := b.Dropped(); n != 0 {
		t.Fatalf("dropped %d", n)
	}
}

func TestAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Start(context.Background(), addr, quiet())
	if !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("err %v, want ErrAddrInUse", err)
	}
	want := addr + " is already in use (another MQTT broker?); pass --mqtt tcp://" + addr + " to use it or --mqtt-listen to pick another port"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q lacks %q", err, want)
	}
}

func TestRestartSamePortAndContextStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b, err := Start(ctx, "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	b.Close()
	b.Close() // idempotent
	b2, err := Start(ctx, addr, quiet())
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	cancel()
	// Cancelling the context closes the broker: the port becomes free.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s still taken after cancel", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b2.Close()
}
