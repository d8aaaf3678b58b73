package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fakeSink records what it is handed; with hold it keeps the done
// functions (the broker's PUBACKs) until release.
type fakeSink struct {
	mu    sync.Mutex
	got   []string // topic + " " + payload
	dones []func()
	hold  bool
}

func (s *fakeSink) Telemetry(topic string, payload []byte, done func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, topic+" "+string(payload))
	if done != nil {
		if s.hold {
			s.dones = append(s.dones, done)
		} else {
			done()
		}
	}
	return true
}

func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *fakeSink) release() {
	s.mu.Lock()
	dones := s.dones
	s.dones = nil
	s.mu.Unlock()
	for _, d := range dones {
		d()
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) { // polling across goroutines
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func connect(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// notDone reports that tok is still open after a short look: a PUBACK
// the broker must not have sent yet (a slow machine only makes it truer).
func notDone(tok paho.Token) bool { return !tok.WaitTimeout(200 * time.Millisecond) }

// TestHandoffAcksWhenSinkIsDone: a telemetry publish waits for a sink
// (startup), is handed over in process, and is PUBACKed only once the
// sink says it is durable; other topics are routed as before; once the
// sink is detached publishes are left unacknowledged.
func TestHandoffAcksWhenSinkIsDone(t *testing.T) {
	b, err := StartWith(context.Background(), "127.0.0.1:0", Options{Logger: quiet(), Handoff: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub := connect(t, b.URL(), "pub")

	early := pub.Publish("twin/telemetry/v1", 1, false, "early")
	if !notDone(early) {
		t.Fatalf("PUBACKed with no sink: %v", early.Error())
	}
	sink := &fakeSink{hold: true}
	b.SetSink(sink)
	waitUntil(t, "the early publish handed over", func() bool { return sink.count() == 1 })
	if !notDone(early) {
		t.Fatal("PUBACKed before the sink was done")
	}
	later := pub.Publish("twin/telemetry/v2", 1, false, "later")
	q0 := pub.Publish("twin/telemetry/v3", 0, false, "qos0")
	waitUntil(t, "three handed over", func() bool { return sink.count() == 3 })
	if !q0.WaitTimeout(5 * time.Second) {
		t.Fatal("QoS 0 publish not sent")
	}
	sink.release()
	for _, tok := range []paho.Token{early, later} {
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("no PUBACK after done: %v", tok.Error())
		}
	}
	sink.mu.Lock()
	if got := strings.Join(sink.got, ","); got != "twin/telemetry/v1 early,twin/telemetry/v2 later,twin/telemetry/v3 qos0" {
		t.Fatalf("handed over %s", got)
	}
	sink.mu.Unlock()

	// QoS 2: mochi's exchange runs once the sink is done.
	q2 := pub.Publish("twin/telemetry/v4", 2, false, "qos2")
	waitUntil(t, "the QoS 2 publish handed over", func() bool { return sink.count() == 4 })
	if !notDone(q2) {
		t.Fatal("QoS 2 completed before the sink was done")
	}
	sink.release()
	if !q2.WaitTimeout(5*time.Second) || q2.Error() != nil {
		t.Fatalf("QoS 2 not completed: %v", q2.Error())
	}

	// Other topics are routed as usual.
	got := make(chan string, 1)
	if tok := pub.Subscribe("twin/alerts/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := pub.Publish("twin/alerts/x", 1, false, "alert"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if s := <-got; s != "alert" {
		t.Fatalf("got %q", s)
	}

	b.SetSink(nil)
	gone := pub.Publish("twin/telemetry/v1", 1, false, "after")
	if !notDone(gone) || sink.count() != 4 {
		t.Fatalf("a publish after the sink left was acknowledged (%v) or handed over (%d)", gone.Error(), sink.count())
	}
}

// TestHandoffOtherSubscribers: a client subscribed to telemetry still gets
// every message (routed for it through the inline client) while the sink
// gets it too; when it unsubscribes, or its clean session ends, routing
// stops.
func TestHandoffOtherSubscribers(t *testing.T) {
	b, err := StartWith(context.Background(), "127.0.0.1:0", Options{Logger: quiet(), Handoff: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sink := &fakeSink{}
	b.SetSink(sink)
	pub := connect(t, b.URL(), "pub")
	for k, filter := range []string{"twin/telemetry/+", "#", "$share/ops/twin/+/v1", "twin/telemetry/v1"} {
		sub := connect(t, b.URL(), fmt.Sprintf("watcher-%d", k))
		got := make(chan string, 10)
		if tok := sub.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if !b.ho.others.Load() {
			t.Fatalf("%s: not seen as a telemetry subscriber", filter)
		}
		if tok := pub.Publish("twin/telemetry/v1", 1, false, "fix"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		select {
		case s := <-got:
			if s != "twin/telemetry/v1 fix" {
				t.Fatalf("%s: got %q", filter, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the other subscriber got nothing", filter)
		}
		if n := sink.count(); n != k+1 {
			t.Fatalf("%s: sink has %d, want %d", filter, n, k+1)
		}
		if k%2 == 0 {
			if tok := sub.Unsubscribe(filter); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
		} else {
			sub.Disconnect(0) // a clean session: its subscriptions go with it
		}
		waitUntil(t, filter+" forgotten", func() bool { return !b.ho.others.Load() })
	}
	// A subscription that cannot match telemetry does not count.
	sub := connect(t, b.URL(), "alerts")
	if tok := sub.Subscribe("twin/alerts/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if b.ho.others.Load() {
		t.Fatal("twin/alerts/# taken for a telemetry subscriber")
	}
}

func TestMayMatchTelemetry(t *testing.T) {
	for filter, want := range map[string]bool{
		"twin/telemetry/+": true, "twin/telemetry/bus-1": true, "#": true, "twin/#": true, "+/telemetry/+": true,
		"+/+/+": true, "twin/+/x": true, "twin/telemetry/#": true, "twin/telemetry/x/#": true, "$share/g/twin/telemetry/+": true,
		"$SHARE/g/#": true, "twin/telemetry": false, "twin/telemetry/x/y": false, "twin/alerts/+": false, "$SYS/#": false,
		"+/+": false, "twin/telemetry/+/+": false, "$share/g": false, "tw/telemetry/+": false,
	} {
		if got := MayMatchTelemetry(filter); got != want {
			t.Errorf("MayMatchTelemetry(%q) = %v, want %v", filter, got, want)
		}
	}
}

// FuzzMayMatchTelemetry checks MayMatchTelemetry against mochi's own
// matching: a filter mochi matches to a telemetry topic built from it
// must be seen; one seen must match such a topic.
func FuzzMayMatchTelemetry(f *testing.F) {
	for _, s := range []string{"twin/telemetry/+", "#", "twin/#", "+/telemetry/x", "$share/g/twin/telemetry/a", "twin/telemetry/a/#", "a/b/c", "twin/telemetry/a/b", "$SYS/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		got := MayMatchTelemetry(filter)
		if !mqtt.IsValidFilter(filter, false) {
			return
		}
		// The names a filter could match: its third level when literal,
		// else any ("x").
		names := []string{"x"}
		inner := filter
		if len(filter) >= 7 && strings.EqualFold(filter[:7], "$share/") {
			rest := filter[7:]
			if _, after, found := strings.Cut(rest, "/"); found {
				inner = after
			}
		}
		if levels := strings.Split(inner, "/"); len(levels) > 2 && levels[2] != "+" && levels[2] != "#" {
			names = append(names, levels[2])
		}
		idx := mqtt.NewTopicsIndex()
		idx.Subscribe("c", packets.Subscription{Filter: filter})
		matched := false
		for _, n := range names {
			if strings.ContainsAny(n, "+#") {
				continue
			}
			subs := idx.Subscribers(TelemetryPrefix + n)
			if len(subs.Subscriptions) > 0 || len(subs.Shared) > 0 {
				matched = true
			}
		}
		if matched && !got {
			t.Fatalf("mochi matches %q to a telemetry topic; MayMatchTelemetry says no", filter)
		}
		oddWildcard := false // "a#" or "+b": mochi takes them, no topic can match them
		for _, l := range strings.Split(filter, "/") {
			oddWildcard = oddWildcard || l != "+" && l != "#" && strings.ContainsAny(l, "+#")
		}
		if got && !matched && !oddWildcard && !strings.HasPrefix(strings.ToLower(filter), "$share/") {
			t.Fatalf("MayMatchTelemetry(%q) but mochi matches no telemetry topic %v", filter, names)
		}
	})
}
