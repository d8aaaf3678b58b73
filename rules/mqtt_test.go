package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/mqtttest"
	"github.com/citytwin/citytwin/rules/notify"
	"github.com/citytwin/citytwin/twin"
)

// pahoPub is a Publisher over a real paho client.
type pahoPub struct{ c mqtt.Client }

func (p pahoPub) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := p.c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("publish %s: timeout", topic)
	}
	return tok.Error()
}

// TestAlertsReachMQTT publishes through a Mosquitto of its own (skipped
// when mosquitto is not installed, failed in CI) and reads the alert back.
func TestAlertsReachMQTT(t *testing.T) {
	mb, err := mqtttest.Start()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(mb.Stop)
	connect := func(id string) mqtt.Client {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mb.URL).SetClientID(id))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	id := fmt.Sprintf("rules-test-%d", time.Now().UnixNano())
	sub := connect(id + "-sub")
	got := make(chan mqtt.Message, 8)
	if tok := sub.Subscribe("twin/alerts/+/"+id, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	f := newFixture(t, "")
	n := notify.New(f.tw, notify.Options{Publisher: pahoPub{connect(id + "-pub")}, Logger: f.e.log})
	e := New(f.tw, Options{Clock: f.clk, Logger: f.e.log})
	rs, err := Parse("t.yaml", []byte(fmt.Sprintf("rules:\n  - name: %s\n    kind: threshold\n    subjects: {layer: devices}\n    tiers: [{when: 'values.ch4 >= 10.0', severity: red}]\n", id)))
	if err != nil {
		t.Fatal(err)
	}
	e.Load(rs)
	f.put(twin.Devices, "m1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	if _, _, err := f.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Devices, "m1"), Time: f.clk.Now(), Values: twin.ReadingsOf(map[string]float64{"ch4": 60})}); err != nil {
		t.Fatal(err)
	}
	e.Drain()
	n.Drain(context.Background())
	select {
	case m := <-got:
		if m.Topic() != "twin/alerts/red/"+id {
			t.Fatalf("topic %s", m.Topic())
		}
		var feat twin.Feature
		if err := json.Unmarshal(m.Payload(), &feat); err != nil {
			t.Fatal(err)
		}
		if feat.ID.Layer != twin.Alerts || feat.Prop("subject") != "devices/m1" || feat.Prop("state") != "open" {
			t.Fatalf("payload %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no alert on MQTT")
	}
}

func TestAreaCrossingSparseHasBearing(t *testing.T) {
	f := newFixture(t, `
rules:
  - name: zone
    kind: geofence
    subjects: {layer: vehicles}
    target: {layer: grids}
    detect: cross
    buffer_m: 15
`)
	c := orb.Point{106.55, 29.55}
	ring := orb.Ring{offset(c, -100, -100), offset(c, 100, -100), offset(c, 100, 100), offset(c, -100, 100), offset(c, -100, -100)}
	f.put(twin.Grids, "z", orb.Polygon{ring}, map[string]any{"code": "z"})
	f.e.Drain() // the new grid reaches the fence index through the feed
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, shanghai)
	f.put(twin.Vehicles, "V1", offset(c, 0, -300), map[string]any{"kind": "muck_truck"})
	f.fix(t, "V1", at, offset(c, 0, -300))
	f.fix(t, "V1", at.Add(time.Minute), offset(c, 0, 300)) // no fix inside
	as := f.alerts("zone")
	if len(as) != 1 {
		t.Fatalf("alerts = %d, want 1", len(as))
	}
	if b, _ := as[0].Number("bearing"); b != 0 && b != 360 {
		t.Errorf("bearing = %v, want north", b)
	}
	// Passing beside it (150 m east) does not count.
	f.put(twin.Vehicles, "V2", offset(c, 150, -300), map[string]any{"kind": "muck_truck"})
	f.fix(t, "V2", at, offset(c, 150, -300))
	f.fix(t, "V2", at.Add(time.Minute), offset(c, 150, 300))
	if as := f.alerts("zone"); len(as) != 1 {
		t.Fatalf("alerts = %d after passing beside", len(as))
	}
}

func TestOutsideNamedFenceAndDwell(t *testing.T) {
	f := newFixture(t, "")
	c := orb.Point{106.56, 29.56}
	ring := orb.Ring{offset(c, -100, -100), offset(c, 100, -100), offset(c, 100, 100), offset(c, -100, 100), offset(c, -100, -100)}
	f.put(twin.Grids, "depot", orb.Polygon{ring}, map[string]any{"code": "depot"})
	rs, err := Parse("t.yaml", []byte(`
rules:
  - name: left-depot
    kind: geofence
    subjects: {layer: vehicles}
    target: {id: grids/depot}
    detect: outside
    buffer_m: 10
    dwell_s: 60
`))
	if err != nil {
		t.Fatal(err)
	}
	f.e.Load(rs)
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, shanghai)
	f.put(twin.Vehicles, "W1", c, nil)
	f.fix(t, "W1", at, c)
	f.fix(t, "W1", at.Add(time.Minute), c) // inside for a minute: in
	f.fix(t, "W1", at.Add(2*time.Minute), offset(c, 0, 5000))
	if n := len(f.alerts("left-depot")); n != 0 {
		t.Fatalf("fired before dwell: %d", n)
	}
	f.fix(t, "W1", at.Add(3*time.Minute), offset(c, 0, 6000)) // 60 s outside, 5 km away
	as := f.alerts("left-depot")
	if len(as) != 1 || as[0].Prop("detect") != "outside" {
		t.Fatalf("alerts = %d", len(as))
	}
	for i := 4; i < 10; i++ {
		f.fix(t, "W1", at.Add(time.Duration(i)*time.Minute), offset(c, 0, 6000+float64(i)*100))
	}
	if n, _ := f.alerts("left-depot")[0].Number("count"); n != 1 {
		t.Fatalf("outside refired: count %v", n)
	}
}
