// Package sim drives a generated demo city live: it publishes CONTRACT §3
// telemetry for the city's vehicles, workers and sensors at a fixed total
// rate. Muck trucks drive their routes across the bridges (so some cross
// during the forbidden hours of sim time), patrol cars tour their district,
// grid workers walk within their street, septic gas sensors report with
// occasional CH4 alarms and hydrant gauges with occasional drops to 0 MPa.
//
// Every position and reading is a function of the seed and the times Step
// is called with, never of the wall clock, so tests drive a Sim with a fake
// clock and no sleeps.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// Publisher sends one telemetry message. An MQTT client adapter or a test
// fake implements it.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// TopicPrefix is prepended to an object's name to make its telemetry topic.
const TopicPrefix = "twin/telemetry/"

// Readings thresholds the demo rules are expected to use.
const (
	// GasAlarmCH4 is the CH4 concentration (% vol) above which a septic
	// tank reading is an alarm; normal readings stay below 1.
	GasAlarmCH4 = 1.0
	// HydrantLowMPa is the hydrant pressure (MPa) under which a gauge
	// reading means no water; the sim's drops report exactly 0.
	HydrantLowMPa = 0.05
)

// Options configure a Sim. Zero values take defaults.
type Options struct {
	// Rate is the total messages per second over all objects; default 500.
	Rate float64
	// Clock gives the sim time used for timestamps; default the wall clock.
	Clock clock.Clock
	// Seed seeds readings and walks; default the city's seed.
	Seed int64
	// Tick is how often Run calls Step; default 100 ms.
	Tick time.Duration
	// GasAlarmChance is the chance that a gas reading starts an alarm
	// lasting 2..10 minutes; default from GasAlarmsPerHour.
	GasAlarmChance float64
	// HydrantDropChance is the chance that a pressure reading starts a
	// drop to 0 lasting 5..30 minutes (until the repair crew restores
	// it); default from HydrantDropsPerHour.
	HydrantDropChance float64
	Logger            *slog.Logger
	// BanCompliance is the share of muck trucks that park through the
	// bridges' forbidden hours (demo.ForbiddenMuckHours, Asia/Shanghai);
	// default 0.85, negative: none do.
	BanCompliance float64
	// GasAlarmsPerHour and HydrantDropsPerHour set how often, city-wide,
	// an alarm or a drop starts when GasAlarmChance or HydrantDropChance
	// is not given (the chance per reading then follows from Rate and the
	// number of sensors); defaults 12 and 3: a few live problems.
	GasAlarmsPerHour, HydrantDropsPerHour float64
	// Desk lets the simulated people act (grid workers on their incidents,
	// operators on incidents and alerts); nil: telemetry only.
	Desk Desk
	// Twin is read (never written) to see what the people act on and
	// which workers a real phone has taken over; required with Desk.
	Twin *twin.Twin
	// CrewEvery is how often the people look at the twin; default 1 s.
	CrewEvery time.Duration
}

func (o Options) withDefaults(city *demo.City) Options {
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Seed == 0 {
		o.Seed = city.Options.Seed
	}
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.BanCompliance == 0 {
		o.BanCompliance = 0.85
	}
	if o.GasAlarmsPerHour <= 0 {
		o.GasAlarmsPerHour = 12
	}
	if o.HydrantDropsPerHour <= 0 {
		o.HydrantDropsPerHour = 3
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CrewEvery <= 0 {
		o.CrewEvery = time.Second
	}
	return o
}

// Message is one telemetry message ready to publish.
type Message struct {
	Topic   string
	Payload []byte
}

// maxCatchUp bounds how much sim time one Step makes up for, so a stalled
// caller gets a short burst rather than a flood.
const maxCatchUp = 2 * time.Second

// Sim is the simulation state. Step and Run must not be called
// concurrently: a Sim belongs to one goroutine.
type Sim struct {
	opts    Options
	movers  []object
	sensors []object
	nextM   int
	nextS   int
	turn    int
	budget  float64
	last    time.Time
	started bool
	rng     *rand.Rand
	crew    *crew // nil without Options.Desk
}

// object is one simulated telemetry source.
type object interface {
	name() string
	// payload returns the message body for time now.
	payload(now time.Time, rng *rand.Rand) any
}

// New prepares a Sim for the city's vehicles, workers, septic gas sensors
// and hydrant gauges (cameras send no telemetry).
func New(city *demo.City, opts Options) *Sim {
	opts = opts.withDefaults(city)
	s := &Sim{opts: opts, rng: rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed))}
	for _, f := range city.Features[twin.Vehicles] {
		if route := city.Routes[f.ID.Name]; len(route) >= 2 {
			s.movers = append(s.movers, newVehicle(f, route, s.rng, opts.BanCompliance))
		}
	}
	var workers []*worker
	for i, f := range city.Features[twin.Workers] {
		if st := city.WorkerStreet[f.ID.Name]; st != nil {
			w := newWorker(f.ID.Name, st, city, opts.Seed, i)
			workers = append(workers, w)
			s.movers = append(s.movers, w)
		}
	}
	if opts.Desk != nil && opts.Twin != nil {
		s.crew = newCrew(city, opts.Desk, opts.Twin, opts.Seed, opts.CrewEvery, workers)
	}
	for _, f := range city.Features[twin.Devices] {
		switch f.Prop("kind") {
		case "septic_gas":
			s.sensors = append(s.sensors, newGas(f, opts))
		case "hydrant_pressure":
			s.sensors = append(s.sensors, newHydrant(f, opts))
		}
	}
	s.setChances()
	return s
}

// setChances turns the city-wide episodes per hour into a chance per
// reading (unless a chance was given): readings reach the sensors at half
// the rate when there are moving objects too, shared by all sensors.
func (s *Sim) setChances() {
	if len(s.sensors) == 0 {
		return
	}
	perSensor := s.opts.Rate / float64(len(s.sensors)) // readings/s each
	if len(s.movers) > 0 {
		perSensor /= 2
	}
	var nGas, nHydrant float64
	for _, o := range s.sensors {
		switch o.(type) {
		case *gas:
			nGas++
		case *hydrant:
			nHydrant++
		}
	}
	for _, o := range s.sensors {
		switch o := o.(type) {
		case *gas:
			if s.opts.GasAlarmChance <= 0 {
				o.chance = s.opts.GasAlarmsPerHour / 3600 / (perSensor * nGas)
			}
		case *hydrant:
			if s.opts.HydrantDropChance <= 0 {
				o.chance = s.opts.HydrantDropsPerHour / 3600 / (perSensor * nHydrant)
			}
		}
	}
}

// banSeconds is how much of (from, to] falls in the forbidden hours.
func banSeconds(from, to time.Time) float64 {
	return banSince(to) - banSince(from)
}

// banDay is the forbidden hours of a day in Asia/Shanghai, as seconds of
// the day (from demo.ForbiddenMuckHours).
var banDay = func() [][2]float64 {
	var out [][2]float64
	for _, w := range demo.ForbiddenMuckHours() {
		var h1, m1, h2, m2 int
		if _, err := fmt.Sscanf(w, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); err == nil {
			out = append(out, [2]float64{float64(h1*3600 + m1*60), float64(h2*3600 + m2*60)})
		}
	}
	return out
}()

// cst is the city's time (Asia/Shanghai has no daylight saving).
var cst = time.FixedZone("CST", 8*3600)

// banSince counts forbidden seconds from a fixed local midnight to t.
func banSince(t time.Time) float64 {
	local := t.In(cst)
	sec := float64(local.Hour()*3600+local.Minute()*60+local.Second()) + float64(local.Nanosecond())/1e9
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, cst)
	days := math.Floor(midnight.Sub(epoch).Hours() / 24)
	perDay, part := 0.0, 0.0
	for _, w := range banDay {
		perDay += w[1] - w[0]
		part += math.Max(0, math.Min(sec, w[1])-w[0])
	}
	return days*perDay + part
}

func inBan(t time.Time) bool {
	local := t.In(cst)
	sec := float64(local.Hour()*3600 + local.Minute()*60 + local.Second())
	for _, w := range banDay {
		if sec >= w[0] && sec < w[1] {
			return true
		}
	}
	return false
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// Objects returns how many objects the sim reports on.
func (s *Sim) Objects() int { return len(s.movers) + len(s.sensors) }

// Step advances the sim to now and returns the messages due since the
// previous Step (Rate per second of elapsed time, at most maxCatchUp's
// worth), alternating between moving objects and sensors, each list
// round-robin. The first call only starts the clock. A now before the
// previous one yields nothing.
func (s *Sim) Step(now time.Time) []Message {
	if !s.started {
		s.started, s.last = true, now
		return nil
	}
	dt := now.Sub(s.last)
	if dt <= 0 {
		return nil
	}
	s.last = now
	if dt > maxCatchUp {
		dt = maxCatchUp
	}
	s.budget += s.opts.Rate * dt.Seconds()
	n := int(s.budget)
	s.budget -= float64(n)
	out := make([]Message, 0, n)
	for i := 0; i < n; i++ {
		o := s.pick()
		if o == nil {
			break
		}
		if w, ok := o.(*worker); ok && s.opts.Twin != nil {
			if w.observe(s.opts.Twin, now); w.human(now) {
				continue // a real phone reports this worker
			}
		}
		b, err := json.Marshal(o.payload(now, s.rng))
		if err != nil { // unreachable: payloads are plain structs of finite numbers
			s.opts.Logger.Error("sim: encode payload", "object", o.name(), "err", err)
			continue
		}
		out = append(out, Message{Topic: TopicPrefix + o.name(), Payload: b})
	}
	return out
}

func (s *Sim) pick() object {
	s.turn++
	useMovers := s.turn%2 == 0
	if len(s.sensors) == 0 {
		useMovers = true
	}
	if len(s.movers) == 0 {
		useMovers = false
	}
	if useMovers {
		o := s.movers[s.nextM%len(s.movers)]
		s.nextM++
		return o
	}
	if len(s.sensors) == 0 {
		return nil
	}
	o := s.sensors[s.nextS%len(s.sensors)]
	s.nextS++
	return o
}

// Act runs the simulated people at now (at most every CrewEvery): what
// they do goes through the Desk. Without a Desk it does nothing. Run calls
// it after every Step; tests call it with a fake clock's time.
func (s *Sim) Act(ctx context.Context, now time.Time) {
	if s.crew != nil {
		s.crew.step(ctx, now)
	}
}

// Run calls Step every Tick with the clock's time and publishes the
// messages until ctx ends (returning nil) or a publish fails for a reason
// other than ctx ending (returning that error).
func (s *Sim) Run(ctx context.Context, pub Publisher) error {
	s.opts.Logger.Info("demo sim running", "objects", s.Objects(), "rate", s.opts.Rate)
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	s.Step(s.opts.Clock.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := s.opts.Clock.Now()
		for _, m := range s.Step(now) {
			if err := pub.Publish(ctx, m.Topic, m.Payload); err != nil {
				if ctx.Err() != nil || errors.Is(err, context.Canceled) {
					return nil
				}
				return fmt.Errorf("sim: publish %s: %w", m.Topic, err)
			}
		}
		s.Act(ctx, now)
	}
}

// track is the payload of a moving object.
type track struct {
	TS       string  `json:"ts"`
	Lon      float64 `json:"lon"`
	Lat      float64 `json:"lat"`
	SpeedKmh float64 `json:"speed_kmh"`
	Heading  float64 `json:"heading"`
}

// reading is the payload of a fixed sensor.
type reading struct {
	TS     string             `json:"ts"`
	Values map[string]float64 `json:"values"`
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// vehicle drives its closed route at a constant speed; its position is a
// pure function of time, starting at a random point of the route.
type vehicle struct {
	id     string
	route  orb.LineString
	cum    []float64 // metres from route[0] to route[i]
	speed  float64   // m/s
	offset float64   // metres along the route at the epoch
	epoch  time.Time
	// obeys: a muck truck that parks through the bridges' forbidden hours
	// (most do; the rest are what the bridge-muck rule is for).
	obeys bool
}

// epoch anchors every vehicle's motion, so positions do not depend on
// when the sim started.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newVehicle(f *twin.Feature, route orb.LineString, r *rand.Rand, compliance float64) *vehicle {
	v := &vehicle{id: f.ID.Name, route: route, cum: make([]float64, len(route)), epoch: epoch}
	// Drawn from the name, not r, so the other vehicles' draws stay put.
	v.obeys = f.Prop("kind") == "muck_truck" && float64(nameHash(f.ID.Name)%1000) < compliance*1000
	for i := 1; i < len(route); i++ {
		v.cum[i] = v.cum[i-1] + metres(route[i-1], route[i])
	}
	kmh := 30 + r.Float64()*15
	if f.Prop("kind") == "patrol" {
		kmh = 25 + r.Float64()*15
	}
	v.speed = kmh / 3.6
	v.offset = r.Float64() * v.cum[len(v.cum)-1]
	return v
}

func (v *vehicle) name() string { return v.id }

// at returns the position, speed (km/h) and heading (degrees) at t.
func (v *vehicle) at(t time.Time) (orb.Point, float64, float64) {
	total := v.cum[len(v.cum)-1]
	moving := t.Sub(v.epoch).Seconds()
	parked := false
	if v.obeys {
		moving -= banSeconds(v.epoch, t)
		parked = inBan(t)
	}
	d := math.Mod(v.offset+v.speed*moving, total)
	if d < 0 {
		d += total
	}
	i := 1
	for i < len(v.cum)-1 && v.cum[i] < d {
		i++
	}
	a, b := v.route[i-1], v.route[i]
	seg := v.cum[i] - v.cum[i-1]
	f := 0.0
	if seg > 0 {
		f = (d - v.cum[i-1]) / seg
	}
	p := orb.Point{a[0] + f*(b[0]-a[0]), a[1] + f*(b[1]-a[1])}
	if parked {
		return p, 0, bearing(a, b)
	}
	return p, v.speed * 3.6, bearing(a, b)
}

func (v *vehicle) payload(now time.Time, _ *rand.Rand) any {
	p, kmh, hd := v.at(now)
	return track{TS: stamp(now), Lon: round(p[0], 7), Lat: round(p[1], 7), SpeedKmh: round(kmh, 1), Heading: round(hd, 1)}
}

// worker walks at 1.2 m/s between random points of its street, moving in
// street coordinates so it never leaves the street. Its walk comes from its
// own random stream, so it depends only on the seed and the times asked.
type worker struct {
	id         string
	street     *demo.Street
	city       *demo.City
	r          *rand.Rand
	u0, v0     float64
	u1, v1     float64
	start, end time.Time
	// trip, when set, overrides the patrol walk: travelling to an
	// incident, standing at it, or walking back (crew.go).
	trip          *trip
	lastSent      time.Time // ts of the last fix the sim produced
	handsOffUntil time.Time // a real phone reports it until then
	humanSeen     time.Time // ts of the phone's newest fix seen
}

const walkSpeed = 1.2 // m/s

func newWorker(name string, st *demo.Street, city *demo.City, seed int64, i int) *worker {
	w := &worker{id: name, street: st, city: city, r: rand.New(rand.NewPCG(uint64(seed), uint64(i)+1<<32))}
	if u, v, ok := city.WorkerStart(name); ok {
		w.u1, w.v1 = u, v
	} else {
		w.u1, w.v1 = w.target()
	}
	return w
}

func (w *worker) name() string { return w.id }

// target draws a dry walking target.
func (w *worker) target() (float64, float64) {
	var u, v float64
	for try := 0; try < 10; try++ {
		u, v = w.street.RandomUV(w.r)
		if !w.city.InWater(w.street.PointAt(u, v), 10) {
			break
		}
	}
	return u, v
}

// advance starts new legs until now falls inside the current one.
func (w *worker) advance(now time.Time) {
	if w.start.IsZero() {
		w.u0, w.v0 = w.u1, w.v1
		w.start, w.end = now, now
	}
	for !now.Before(w.end) {
		w.u0, w.v0 = w.u1, w.v1
		w.u1, w.v1 = w.target()
		d := metres(w.street.PointAt(w.u0, w.v0), w.street.PointAt(w.u1, w.v1))
		w.start = w.end
		w.end = w.start.Add(time.Duration(d/walkSpeed*float64(time.Second)) + time.Second)
	}
}

// uvAt is the patrol walk's street coordinates at now (advance first).
func (w *worker) uvAt(now time.Time) (float64, float64) {
	f := 1.0
	if span := w.end.Sub(w.start); span > 0 && now.After(w.start) {
		f = float64(now.Sub(w.start)) / float64(span)
	}
	if now.Before(w.start) {
		f = 0
	}
	return w.u0 + f*(w.u1-w.u0), w.v0 + f*(w.v1-w.v0)
}

func (w *worker) payload(now time.Time, _ *rand.Rand) any {
	w.lastSent = now.Truncate(time.Millisecond) // as stamped
	if t := w.trip; t != nil {
		p, hd := t.at(now)
		kmh := t.speed * 3.6
		if t.arrived(now) {
			kmh = 0
			if t.back {
				w.trip = nil // back on patrol: the walk resumes where it was pinned
				w.start, w.end = now, now
			}
		}
		return track{TS: stamp(now), Lon: round(p[0], 7), Lat: round(p[1], 7), SpeedKmh: round(kmh, 1), Heading: round(hd, 1)}
	}
	w.advance(now)
	u, v := w.uvAt(now)
	p := w.street.PointAt(u, v)
	a, b := w.street.PointAt(w.u0, w.v0), w.street.PointAt(w.u1, w.v1)
	return track{TS: stamp(now), Lon: round(p[0], 7), Lat: round(p[1], 7), SpeedKmh: round(walkSpeed*3.6, 1), Heading: round(bearing(a, b), 1)}
}

// gas is a septic tank sensor: CH4 (% vol) and H2S (ppm) around its base
// values, with alarm episodes above GasAlarmCH4.
type gas struct {
	id         string
	ch4, h2s   float64
	chance     float64
	alarmUntil time.Time
	alarmCH4   float64
}

func newGas(f *twin.Feature, o Options) *gas {
	g := &gas{id: f.ID.Name, ch4: 0.3, h2s: 0.1, chance: o.GasAlarmChance}
	if v, ok := f.Props.Get("values").(map[string]any); ok {
		if x, ok := twin.ToFloat(v["ch4"]); ok {
			g.ch4 = x
		}
		if x, ok := twin.ToFloat(v["h2s"]); ok {
			g.h2s = x
		}
	}
	return g
}

func (g *gas) name() string { return g.id }

func (g *gas) payload(now time.Time, r *rand.Rand) any {
	if !now.Before(g.alarmUntil) && r.Float64() < g.chance {
		g.alarmUntil = now.Add(2*time.Minute + time.Duration(r.Int64N(int64(8*time.Minute))))
		g.alarmCH4 = GasAlarmCH4 + 0.5 + r.Float64()*3.5
	}
	// Base values are below 0.9, so normal readings stay under the alarm level.
	ch4 := g.ch4 * (0.9 + 0.2*r.Float64())
	h2s := g.h2s * (0.9 + 0.2*r.Float64())
	if now.Before(g.alarmUntil) {
		ch4 = g.alarmCH4 * (0.95 + 0.1*r.Float64())
		h2s *= 5
	}
	return reading{TS: stamp(now), Values: map[string]float64{"ch4": round(ch4, 3), "h2s": round(h2s, 3)}}
}

// hydrant is a fire hydrant pressure gauge (MPa) with occasional drops to 0.
type hydrant struct {
	id        string
	base      float64
	chance    float64
	dropUntil time.Time
}

func newHydrant(f *twin.Feature, o Options) *hydrant {
	h := &hydrant{id: f.ID.Name, base: 0.3, chance: o.HydrantDropChance}
	if v, ok := f.Props.Get("values").(map[string]any); ok {
		if x, ok := twin.ToFloat(v["pressure_mpa"]); ok {
			h.base = x
		}
	}
	return h
}

func (h *hydrant) name() string { return h.id }

func (h *hydrant) payload(now time.Time, r *rand.Rand) any {
	if !now.Before(h.dropUntil) && r.Float64() < h.chance {
		h.dropUntil = now.Add(5*time.Minute + time.Duration(r.Int64N(int64(25*time.Minute))))
	}
	p := h.base * (0.97 + 0.06*r.Float64())
	if now.Before(h.dropUntil) {
		p = 0
	}
	return reading{TS: stamp(now), Values: map[string]float64{"pressure_mpa": round(p, 3)}}
}

// metres is the local planar distance between two nearby lon/lat points.
func metres(a, b orb.Point) float64 {
	const m = 6371008.8 * math.Pi / 180
	mx := m * math.Cos((a[1]+b[1])/2*math.Pi/180)
	return math.Hypot((a[0]-b[0])*mx, (a[1]-b[1])*m)
}

// bearing is the heading from a to b in degrees clockwise from north.
func bearing(a, b orb.Point) float64 {
	mx := math.Cos((a[1] + b[1]) / 2 * math.Pi / 180)
	h := math.Atan2((b[0]-a[0])*mx, b[1]-a[1]) * 180 / math.Pi
	if h < 0 {
		h += 360
	}
	return h
}
