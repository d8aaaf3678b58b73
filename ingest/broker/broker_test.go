package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// TestBackPressureInsteadOfDrops: a telemetry subscriber that stops
// acknowledging holds publishers back at BackPressureInflight messages in
// flight (mochi would drop them at 65,535), and once it acknowledges
// again every message arrives: nothing dropped.
func TestBackPressureInsteadOfDrops(t *testing.T) {
	const holdAt = 500 // BackPressureInflight in production
	b, err := StartWith(context.Background(), "127.0.0.1:0", Options{Logger: quiet(), holdAt: holdAt})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	var held []paho.Message
	acking := false
	received := 0
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("slow-sub").SetAutoAckDisabled(true).SetOrderMatters(true))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("twin/telemetry/+", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		received++
		if acking {
			m.Ack()
		} else {
			held = append(held, m)
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	const n = 3 * holdAt
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("fast-pub").SetWriteTimeout(time.Minute).
		SetKeepAlive(5 * time.Minute)) // held back, its pings wait behind its publishes
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	done := make(chan error, 1)
	go func() {
		toks := make([]paho.Token, 0, n)
		for k := range n {
			toks = append(toks, pub.Publish(fmt.Sprintf("twin/telemetry/v%d", k%50), 1, false, []byte("{}")))
		}
		for _, tok := range toks {
			if !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
				done <- fmt.Errorf("publish: %w", tok.Error())
				return
			}
		}
		done <- nil
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return received
	}
	deadline := time.Now().Add(time.Minute)
	for b.HeldBack() == 0 || count() < holdAt {
		if time.Now().After(deadline) {
			t.Fatalf("publishers never held back (received %d)", count())
		}
		time.Sleep(10 * time.Millisecond) // polling the broker's counters
	}
	time.Sleep(200 * time.Millisecond) // held back: no more should arrive
	if got := count(); got >= n || b.Dropped() != 0 {
		t.Fatalf("received %d of %d while not acking, dropped %d", got, n, b.Dropped())
	}
	mu.Lock()
	acking = true
	for _, m := range held {
		m.Ack()
	}
	held = nil
	mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); count() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d after acking", count(), n)
		}
	}
	if d := b.Dropped(); d != 0 {
		t.Fatalf("dropped %d", d)
	}
}

// TestInlinePublish: a message the server publishes in process reaches a
// client's subscription with the QoS it asked for, a retained one reaches a
// later subscriber, and Publish after Close fails instead of hanging.
func TestInlinePublish(t *testing.T) {
	b, err := Start(context.Background(), "127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan paho.Message, 4)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("inline-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := c.Subscribe("twin/alerts/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	ctx := context.Background()
	if err := b.Publish(ctx, "twin/alerts/red/fence", 1, false, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic() != "twin/alerts/red/fence" || string(m.Payload()) != `{"a":1}` || m.Qos() != 1 {
			t.Fatalf("got %s %q qos %d", m.Topic(), m.Payload(), m.Qos())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("inline publish not delivered")
	}
	if err := b.Publish(ctx, "twin/alerts/state", 1, true, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	late := make(chan string, 1)
	c2 := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("inline-late"))
	if tok := c2.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	c2.Subscribe("twin/alerts/state", 1, func(_ paho.Client, m paho.Message) { late <- string(m.Payload()) })
	select {
	case s := <-late:
		if s != "kept" {
			t.Fatalf("retained %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retained message not delivered")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Publish(cctx, "twin/alerts/x", 1, false, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	c.Disconnect(100)
	c2.Disconnect(100)
	b.Close()
	if err := b.Publish(ctx, "twin/alerts/x", 1, false, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session for id.
func connectPacket(id string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestCloseWhileClientsConnect closes the broker while clients keep dialling
// it, some completing the CONNECT handshake and some sending nothing. Under
// -race this caught mochi's clients WaitGroup being added to (a connection's
// establish) while Server.Close waited on it; Close must also not hang on a
// connection that never sends its CONNECT.
func TestCloseWhileClientsConnect(t *testing.T) {
	for round := 0; round < 20; round++ {
		b, err := Start(context.Background(), "127.0.0.1:0", quiet())
		if err != nil {
			t.Fatal(err)
		}
		addr := b.Addr()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", addr)
					if err != nil {
						continue // closed, or closing: keep trying until stop
					}
					if g%2 == 0 {
						_, _ = c.Write(connectPacket(fmt.Sprintf("c%d-%d-%d", round, g, i)))
					}
					defer c.Close()
				}
			}(g)
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		b.Close()
		close(stop)
		wg.Wait()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: port not free after Close: %v", round, err)
		}
		ln.Close()
	}
}
