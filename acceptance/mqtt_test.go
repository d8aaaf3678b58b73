package acceptance

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// mqttMsg is one received MQTT message.
type mqttMsg struct {
	topic   string
	payload []byte
}

// mqttClient is a test's own paho connection (clean session, unique id).
type mqttClient struct {
	c    paho.Client
	msgs chan mqttMsg
}

// wipeSession removes a persistent session (CleanSession=false) of
// clientID from the broker, so that a stopped server does not leave the
// shared broker queueing telemetry for it.
func wipeSession(broker, clientID string) {
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Disconnect(100)
	}
}

// wipeSessions removes the persistent sessions of every subscriber
// connection `twin serve` opens with --mqtt-client-id id (id, id-1, ...).
func wipeSessions(broker, id string) {
	wipeSession(broker, id)
	for n := 1; n < 8; n++ {
		wipeSession(broker, fmt.Sprintf("%s-%d", id, n))
	}
}

// dialMQTT connects to broker (tcp://host:port); the link is closed at cleanup.
func dialMQTT(t testing.TB, broker string) *mqttClient {
	t.Helper()
	m := &mqttClient{msgs: make(chan mqttMsg, 1024)}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID("acceptance-" + suffix(t)).
		SetCleanSession(true).SetConnectTimeout(10 * time.Second).SetOrderMatters(true)
	m.c = paho.NewClient(o)
	if tok := m.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to MQTT broker %s: %v (is Mosquitto running?)", broker, tok.Error())
	}
	t.Cleanup(func() { m.c.Disconnect(100) })
	return m
}

// subscribe subscribes to filter with QoS 1; messages arrive on m.msgs.
// On the shared broker other tests' traffic arrives too: pass keep to
// queue only this test's messages, so a flood cannot crowd them out.
func (m *mqttClient) subscribe(t testing.TB, filter string, keep ...func(topic string, payload []byte) bool) {
	t.Helper()
	tok := m.c.Subscribe(filter, 1, func(_ paho.Client, msg paho.Message) {
		for _, k := range keep {
			if !k(msg.Topic(), msg.Payload()) {
				return
			}
		}
		select {
		case m.msgs <- mqttMsg{topic: msg.Topic(), payload: append([]byte(nil), msg.Payload()...)}:
		default: // a test that stopped reading; never block paho
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

// publish sends payload with QoS 1 and waits for the broker's ack.
func (m *mqttClient) publish(t testing.TB, topic string, payload []byte) {
	t.Helper()
	tok := m.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message for which keep is true, or fails after timeout.
func (m *mqttClient) next(t testing.TB, timeout time.Duration, what string, keep func(mqttMsg) bool) mqttMsg {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg := <-m.msgs:
			if keep(msg) {
				return msg
			}
		case <-deadline:
			t.Fatalf("timed out after %s waiting for MQTT %s", timeout, what)
		}
	}
}
