package sim

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"go.uber.org/goleak"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	once    sync.Once
	theCity *demo.City
	cityErr error
)

func city(t testing.TB) *demo.City {
	t.Helper()
	once.Do(func() { theCity, cityErr = demo.Generate(demo.Options{}) })
	if cityErr != nil {
		t.Fatal(cityErr)
	}
	return theCity
}

var shanghai = time.FixedZone("CST", 8*3600)

// morning is inside the bridges' forbidden muck-truck window 07:00-09:00.
var morning = time.Date(2026, 3, 2, 7, 30, 0, 0, shanghai)

// run steps s from start every step for n steps and returns all messages
// with the time of the step that produced them.
func run(s *Sim, start time.Time, step time.Duration, n int) ([]Message, []time.Time) {
	var msgs []Message
	var at []time.Time
	s.Step(start)
	for i := 1; i <= n; i++ {
		now := start.Add(time.Duration(i) * step)
		for _, m := range s.Step(now) {
			msgs = append(msgs, m)
			at = append(at, now)
		}
	}
	return msgs, at
}

func TestStepRateAndPayloads(t *testing.T) {
	c := city(t)
	s := New(c, Options{})
	msgs, at := run(s, morning, 100*time.Millisecond, 100) // 10 s at 500/s
	if n := len(msgs); n < 4999 || n > 5001 {
		t.Fatalf("%d messages in 10 s at 500/s", n)
	}
	kinds := map[string]string{}
	for _, f := range c.All() {
		if f.ID.Layer == twin.Vehicles || f.ID.Layer == twin.Workers || f.ID.Layer == twin.Devices {
			kinds[f.ID.Name] = string(f.ID.Layer) + "/" + f.Prop("kind")
		}
	}
	seen := map[string]int{}
	for i, m := range msgs {
		name, ok := strings.CutPrefix(m.Topic, "twin/telemetry/")
		if !ok || kinds[name] == "" {
			t.Fatalf("topic %q", m.Topic)
		}
		dm, err := telemetry.Decode(m.Payload, at[i], telemetry.Limits{})
		if err != nil {
			t.Fatalf("%s: %s: %v", m.Topic, m.Payload, err)
		}
		if !dm.TS.Equal(at[i]) {
			t.Fatalf("%s: ts %v, want %v", m.Topic, dm.TS, at[i])
		}
		k := kinds[name]
		seen[strings.SplitN(k, "/", 2)[0]]++
		switch {
		case strings.HasPrefix(k, "devices/"):
			if dm.HasPos || dm.Values.IsZero() {
				t.Fatalf("%s: sensor payload %s", name, m.Payload)
			}
		default:
			if !dm.HasPos || !dm.HasSpeed || !dm.HasHeading || !demo.Box().Contains(orb.Point{dm.Lon, dm.Lat}) {
				t.Fatalf("%s: tracker payload %s", name, m.Payload)
			}
		}
	}
	if seen["vehicles"] == 0 || seen["workers"] == 0 || seen["devices"] < 2000 {
		t.Fatalf("mix of objects: %v", seen)
	}
}

func TestDeterministic(t *testing.T) {
	c := city(t)
	a, _ := run(New(c, Options{}), morning, time.Second, 5)
	b, _ := run(New(c, Options{}), morning, time.Second, 5)
	if len(a) != len(b) {
		t.Fatalf("%d vs %d messages", len(a), len(b))
	}
	for i := range a {
		if a[i].Topic != b[i].Topic || !bytes.Equal(a[i].Payload, b[i].Payload) {
			t.Fatalf("message %d differs: %s %s vs %s %s", i, a[i].Topic, a[i].Payload, b[i].Topic, b[i].Payload)
		}
	}
}

// TestTrucksCrossBridgesInForbiddenHours checks that within a minute of
// the morning ban some muck trucks report positions over the water on a
// bridge, and that workers stay in their streets.
func TestTrucksCrossBridgesInForbiddenHours(t *testing.T) {
	c := city(t)
	s := New(c, Options{BanCompliance: -1}) // every truck ignores the ban
	msgs, at := run(s, morning, time.Second, 60)
	workers := map[string]bool{}
	for _, f := range c.Features[twin.Workers] {
		workers[f.ID.Name] = true
	}
	onBridge := map[string]bool{}
	for i, m := range msgs {
		name := strings.TrimPrefix(m.Topic, TopicPrefix)
		if !strings.HasPrefix(name, "MT") && !workers[name] {
			continue
		}
		dm, err := telemetry.Decode(m.Payload, at[i], telemetry.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		p := orb.Point{dm.Lon, dm.Lat}
		if workers[name] {
			if st := c.WorkerStreet[name]; !planar.PointInPolygon(p, st.Polygon) {
				t.Fatalf("worker %s at %v left street %s", name, p, st.Code)
			}
			continue
		}
		for _, rv := range c.Rivers {
			if planar.PointInPolygon(p, rv.Polygon) {
				if !nearBridge(c, p) {
					t.Fatalf("truck %s in the %s away from any bridge at %v", name, rv.Name, p)
				}
				onBridge[name] = true
			}
		}
	}
	if len(onBridge) < 3 {
		t.Fatalf("only %d muck trucks crossed a bridge in a minute of the forbidden window", len(onBridge))
	}
}

func nearBridge(c *demo.City, p orb.Point) bool {
	for _, b := range c.Bridges {
		if d := metres(p, closest(p, b.Line[0], b.Line[1])); d < 5 {
			return true
		}
	}
	return false
}

func closest(p, a, b orb.Point) orb.Point {
	dx, dy := b[0]-a[0], b[1]-a[1]
	t := ((p[0]-a[0])*dx + (p[1]-a[1])*dy) / (dx*dx + dy*dy)
	t = max(0, min(1, t))
	return orb.Point{a[0] + t*dx, a[1] + t*dy}
}

func TestWorkersStayInStreetOverHours(t *testing.T) {
	c := city(t)
	s := New(c, Options{Rate: 2000})
	start := morning
	for h := 0; h < 6; h++ {
		msgs, at := run(s, start.Add(time.Duration(h)*time.Hour), time.Second, 2)
		for i, m := range msgs {
			name := strings.TrimPrefix(m.Topic, TopicPrefix)
			st := c.WorkerStreet[name]
			if st == nil {
				continue
			}
			dm, err := telemetry.Decode(m.Payload, at[i], telemetry.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !planar.PointInPolygon(orb.Point{dm.Lon, dm.Lat}, st.Polygon) {
				t.Fatalf("worker %s left street %s after %d h", name, st.Code, h)
			}
		}
	}
}

func TestAlarms(t *testing.T) {
	c := city(t)
	check := func(s *Sim, steps int) (gasAlarm, gasMax, lowPressure, pressureOK int) {
		msgs, at := run(s, morning, time.Second, steps)
		for i, m := range msgs {
			dm, err := telemetry.Decode(m.Payload, at[i], telemetry.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if ch4, ok := dm.Values.Get("ch4"); ok {
				if ch4 > GasAlarmCH4 {
					gasAlarm++
				} else {
					gasMax++
				}
			}
			if p, ok := dm.Values.Get("pressure_mpa"); ok {
				if p < HydrantLowMPa {
					lowPressure++
				} else if p > 0.2 && p < 0.4 {
					pressureOK++
				}
			}
		}
		return
	}
	a, n, l, ok := check(New(c, Options{GasAlarmChance: 1, HydrantDropChance: 1}), 12)
	if a == 0 || n != 0 || l == 0 || ok != 0 {
		t.Fatalf("always-alarm sim: %d gas alarms, %d normal, %d low pressure, %d normal", a, n, l, ok)
	}
	// One gas alarm a second city-wide (the default is 12 an hour: none
	// to count in a minute); hydrant drops at their default rate.
	a, n, l, ok = check(New(c, Options{GasAlarmsPerHour: 3600}), 60)
	if a == 0 || n < 10*a || ok < 100*max(l, 1) {
		t.Fatalf("sim over 60 s: %d gas alarms, %d normal, %d low pressure, %d normal", a, n, l, ok)
	}
}

// fakePub records messages and cancels its context after limit of them.
type fakePub struct {
	mu     sync.Mutex
	n      int
	limit  int
	cancel context.CancelFunc
	err    error
}

func (p *fakePub) Publish(ctx context.Context, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.n++
	if p.n == p.limit {
		p.cancel()
	}
	return ctx.Err()
}

// stepClock advances by a fixed step on every reading, so Run sees sim
// time move without the test sleeping.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func TestRun(t *testing.T) {
	c := city(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := &fakePub{limit: 1000, cancel: cancel}
	s := New(c, Options{Tick: time.Millisecond, Clock: &stepClock{t: morning, step: time.Second}, Logger: slog.New(slog.DiscardHandler)})
	if err := s.Run(ctx, pub); err != nil {
		t.Fatal(err)
	}
	if pub.n < 1000 || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("published %d before stopping (%v)", pub.n, ctx.Err())
	}

	boom := errors.New("broker down")
	s = New(c, Options{Tick: time.Millisecond, Clock: &stepClock{t: morning, step: time.Second}, Logger: slog.New(slog.DiscardHandler)})
	err := s.Run(context.Background(), &fakePub{err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want the publish error", err)
	}
}
