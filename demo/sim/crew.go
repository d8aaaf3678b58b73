package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/twin"
)

// Desk is how the simulated people act: through the same services the HTTP
// API uses, as principals of their own, so every step is checked and
// recorded as a real person's would be. cmd/twin adapts the incident
// service and the rules engine to it; tests do the same with their own.
type Desk interface {
	// Incident performs an incident action: as the grid worker `worker`
	// (field role; accept, arrive with its position at, resolve with a
	// note) or, when worker is "", as the simulated operator (dispatch,
	// close).
	Incident(ctx context.Context, worker, name, action, note string, at *orb.Point) error
	// Alert acknowledges ("ack") or closes ("close") an alert as the
	// simulated operator.
	Alert(ctx context.Context, name, action string) error
}

// HandsOff is how long the sim leaves a worker alone after someone else
// (a real phone on the field page) reported its position: no simulated
// walk, no simulated actions on its incidents.
const HandsOff = 10 * time.Minute

// Delays of the simulated people. Most steps meet the 1-5-10 SLA; a few are
// late on purpose, so escalation is there to follow on the wall screen.
var (
	acceptOnTime = span{8 * time.Second, 50 * time.Second}
	acceptLate   = span{65 * time.Second, 150 * time.Second}
	travelOnTime = span{90 * time.Second, 270 * time.Second}
	travelLate   = span{5*time.Minute + 20*time.Second, 8 * time.Minute}
	workOnTime   = span{2 * time.Minute, 8 * time.Minute}
	workLate     = span{10*time.Minute + 30*time.Second, 15 * time.Minute}
	ackOnTime    = span{15 * time.Second, 3 * time.Minute}
	ackLate      = span{10*time.Minute + 30*time.Second, 14 * time.Minute} // past the alerts' street SLA
	closeAfter   = span{2 * time.Minute, 8 * time.Minute}
	dispatchWait = span{20 * time.Second, 60 * time.Second}
	lateShare    = 0.05
)

// Speeds (m/s) a worker travels at: on foot at least, an e-scooter on the roads at most.
const (
	minTravelSpeed = 1.2
	maxTravelSpeed = 12.5
)

// selfClearing are the demo rules whose alerts close themselves when the
// condition clears (a reading back to normal, a device reporting again, a
// building's risk back to its base): operators acknowledge them and leave
// closing to the rule. Every other alert (a bridge crossing, a missed
// incident SLA) an operator closes once it is dealt with.
var selfClearing = map[string]bool{"septic-gas": true, "hydrant-zero": true, "device-offline": true, "building-risk": true}

type span struct{ lo, hi time.Duration }

func (s span) draw(r *rand.Rand) time.Duration {
	return s.lo + time.Duration(r.Int64N(int64(s.hi-s.lo)+1))
}

// pick draws from late with chance lateShare, else from onTime.
func pick(r *rand.Rand, onTime, late span) time.Duration {
	if r.Float64() < lateShare {
		return late.draw(r)
	}
	return onTime.draw(r)
}

// job is a simulated worker's handling of one incident.
type job struct {
	w         *worker
	acceptAt  time.Time
	travel    time.Duration
	work      time.Duration
	resolveAt time.Time
	retryAt   time.Time
}

// alertPlan is when the simulated operator acts on one alert.
type alertPlan struct {
	ackAt, closeAt time.Time
}

// crew runs the human side: grid workers accept, travel along the roads,
// arrive and resolve; operators dispatch what waits for a worker, close
// resolved incidents, acknowledge alerts and close those no rule clears.
type crew struct {
	desk    Desk
	tw      *twin.Twin
	seed    uint64
	workers map[string]*worker
	lanes   []lane
	jobs    map[string]*job       // by incident name
	ops     map[string]time.Time  // incident name -> when the operator acts on it
	alerts  map[string]*alertPlan // by alert name
	every   time.Duration
	last    time.Time
}

// lane is a residential road of a street: from the street's centre out.
type lane struct {
	center, end orb.Point
}

func newCrew(city *demo.City, desk Desk, tw *twin.Twin, seed int64, every time.Duration, workers []*worker) *crew {
	c := &crew{desk: desk, tw: tw, seed: uint64(seed), workers: map[string]*worker{},
		jobs: map[string]*job{}, ops: map[string]time.Time{}, alerts: map[string]*alertPlan{}, every: every}
	for _, w := range workers {
		c.workers[w.id] = w
	}
	for _, f := range city.Features[twin.Roads] {
		if ls, ok := f.Geometry.(orb.LineString); ok && len(ls) >= 2 && f.Prop("class") == "residential" {
			c.lanes = append(c.lanes, lane{center: ls[0], end: ls[len(ls)-1]})
		}
	}
	return c
}

// rng is the random stream for one incident's or alert's delays, keyed by
// what it is (never by a name with random parts), so a run with the same
// seed and clock draws the same delays whatever order things are seen in.
func (c *crew) rng(f *twin.Feature, extra string) *rand.Rand {
	key := fmt.Sprint(f.ID.Layer, f.Prop("type"), f.Prop("rule"), f.Prop("reported_at"), f.Prop("first"), extra)
	if p, ok := incidentPoint(f); ok {
		key += fmt.Sprintf("%.6f,%.6f", p[0], p[1])
	}
	if f.ID.Layer == twin.Alerts && f.Prop("rule") != "incident-sla" {
		key += f.ID.Name // rule alerts are named by rule and subject
	}
	return rand.New(rand.NewPCG(c.seed, nameHash(key)))
}

// step acts for everyone whose time has come. It reads the twin for what
// changed (incidents dispatched to a simulated worker, new alerts) and acts
// through the Desk; a refused action is retried or dropped, never fatal.
func (c *crew) step(ctx context.Context, now time.Time) {
	if !c.last.IsZero() && now.Sub(c.last) < c.every {
		return
	}
	c.last = now
	c.incidents(ctx, now)
	c.alertsStep(ctx, now)
}

// seen returns the incidents by name in a stable order.
func (c *crew) rangeSorted(layer twin.Layer) []*twin.Feature {
	var out []*twin.Feature
	c.tw.Range(layer, func(f *twin.Feature) bool {
		out = append(out, f)
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID.Name < out[j].ID.Name })
	return out
}

func (c *crew) incidents(ctx context.Context, now time.Time) {
	live := map[string]bool{}
	for _, f := range c.rangeSorted(twin.Incidents) {
		name, st := f.ID.Name, f.Prop("state")
		switch st {
		case "reported":
			// No worker was free at report time: the operator dispatches.
			live[name] = true
			c.operatorLater(ctx, f, "dispatch", now, dispatchWait)
		case "resolved":
			live[name] = true
			c.operatorLater(ctx, f, "close", now, closeAfter)
		case "dispatched", "accepted", "arrived":
			live[name] = true
			c.work(ctx, f, now)
		}
	}
	for name, j := range c.jobs {
		if !live[name] {
			if j.w.trip != nil && j.w.trip.incident == name {
				j.w.goBack(now)
			}
			delete(c.jobs, name)
		}
	}
	for key := range c.ops {
		if name, _, _ := strings.Cut(key, "/"); !live[name] {
			delete(c.ops, key)
		}
	}
}

// operatorLater performs an operator action on an incident once its drawn
// delay has passed; a refused dispatch (no worker free) is retried later.
func (c *crew) operatorLater(ctx context.Context, f *twin.Feature, action string, now time.Time, delay span) {
	name := f.ID.Name
	at, ok := c.ops[name+"/"+action]
	if !ok {
		c.ops[name+"/"+action] = now.Add(delay.draw(c.rng(f, action)))
		return
	}
	if now.Before(at) {
		return
	}
	if err := c.desk.Incident(ctx, "", name, action, "", nil); err != nil {
		c.ops[name+"/"+action] = now.Add(time.Minute)
		return
	}
	delete(c.ops, name+"/"+action)
}

// work moves one simulated worker's incident along: accept after its
// delay, travel, arrive on reaching it, resolve after the work.
func (c *crew) work(ctx context.Context, f *twin.Feature, now time.Time) {
	name, st := f.ID.Name, f.Prop("state")
	j := c.jobs[name]
	if j == nil {
		wid, err := twin.ParseID(f.Prop("assignee"))
		w := c.workers[wid.Name]
		if err != nil || wid.Layer != twin.Workers || w == nil {
			return // someone the sim does not play
		}
		r := c.rng(f, "job")
		j = &job{w: w, acceptAt: now.Add(pick(r, acceptOnTime, acceptLate)),
			travel: pick(r, travelOnTime, travelLate), work: pick(r, workOnTime, workLate)}
		c.jobs[name] = j
	}
	if f.Prop("assignee") != "workers/"+j.w.id {
		// re-dispatched to someone else: this worker heads back
		if j.w.trip != nil && j.w.trip.incident == name {
			j.w.goBack(now)
		}
		delete(c.jobs, name)
		return
	}
	if j.w.human(now) || now.Before(j.retryAt) {
		return // a real phone has this worker, or a refusal waits out
	}
	at, ok := incidentPoint(f)
	if !ok {
		return
	}
	switch st {
	case "dispatched":
		if now.Before(j.acceptAt) {
			return
		}
		if c.act(ctx, j, name, "accept", "", nil, now) {
			j.w.travelTo(now, c.route(j.w.position(now), at), j.travel, name)
		}
	case "accepted":
		if j.w.trip == nil || j.w.trip.incident != name {
			// accepted before the sim saw it (a restart): set off now
			j.w.travelTo(now, c.route(j.w.position(now), at), j.travel, name)
			return
		}
		if !j.w.trip.arrived(now) {
			return
		}
		p := j.w.position(now)
		if c.act(ctx, j, name, "arrive", "", &p, now) {
			j.resolveAt = now.Add(j.work)
		}
	case "arrived":
		if j.resolveAt.IsZero() {
			j.resolveAt = now.Add(j.work)
		}
		if now.Before(j.resolveAt) {
			return
		}
		if c.act(ctx, j, name, "resolve", resolutionNote(f.Prop("type")), nil, now) {
			j.w.goBack(now)
		}
	}
}

func (c *crew) act(ctx context.Context, j *job, name, action, note string, at *orb.Point, now time.Time) bool {
	if err := c.desk.Incident(ctx, j.w.id, name, action, note, at); err != nil {
		j.retryAt = now.Add(30 * time.Second)
		return false
	}
	return true
}

// resolutionNote is what a simulated worker writes when resolving.
func resolutionNote(typ string) string {
	switch typ {
	case "gas_leak":
		return "化粪池已通风，气体浓度恢复正常 (tank vented; gas back to normal)"
	}
	return "现场已处置完毕 (dealt with on site)"
}

// alertsStep acknowledges open alerts after a delay and closes, some
// minutes after the ack, those no rule clears by itself.
func (c *crew) alertsStep(ctx context.Context, now time.Time) {
	live := map[string]bool{}
	for _, f := range c.rangeSorted(twin.Alerts) {
		st := f.Prop("state")
		if st != "open" && st != "acked" {
			continue
		}
		name := f.ID.Name
		live[name] = true
		p := c.alerts[name]
		if p == nil {
			r := c.rng(f, "alert")
			p = &alertPlan{ackAt: now.Add(pick(r, ackOnTime, ackLate))}
			p.closeAt = p.ackAt.Add(closeAfter.draw(r))
			c.alerts[name] = p
		}
		switch {
		case st == "open" && !now.Before(p.ackAt):
			if err := c.desk.Alert(ctx, name, "ack"); err != nil {
				p.ackAt = now.Add(time.Minute)
			}
		case st == "acked" && !selfClearing[f.Prop("rule")] && !now.Before(p.closeAt):
			if err := c.desk.Alert(ctx, name, "close"); err != nil {
				p.closeAt = now.Add(time.Minute)
			}
		}
	}
	for name := range c.alerts {
		if !live[name] {
			delete(c.alerts, name)
		}
	}
}

// route is the way from p to q along the demo's roads: to the nearest
// point of the nearest residential lane, along it to its street's centre,
// across to the centre of the lane nearest q (a straight line between
// centres), out along that lane, and off it to q.
func (c *crew) route(p, q orb.Point) []orb.Point {
	la, a, okA := c.nearestLane(p)
	lb, b, okB := c.nearestLane(q)
	if !okA || !okB {
		return []orb.Point{p, q}
	}
	path := []orb.Point{p, a}
	if la != lb {
		path = append(path, c.lanes[la].center)
		if c.lanes[lb].center != c.lanes[la].center {
			path = append(path, c.lanes[lb].center)
		}
	}
	return dedupePoints(append(path, b, q))
}

func (c *crew) nearestLane(p orb.Point) (int, orb.Point, bool) {
	best, bestD := -1, math.Inf(1)
	var foot orb.Point
	for i, l := range c.lanes {
		f := footOn(l.center, l.end, p)
		if d := metres(p, f); d < bestD {
			best, bestD, foot = i, d, f
		}
	}
	// A lane farther than 1.5 km is not this place's road: go straight.
	return best, foot, best >= 0 && bestD < 1500
}

// footOn is the point of segment a-b nearest p (planar in lon/lat, scaled
// for latitude: fine over a few km).
func footOn(a, b, p orb.Point) orb.Point {
	mx := math.Cos(p[1] * math.Pi / 180)
	dx, dy := (b[0]-a[0])*mx, b[1]-a[1]
	l2 := dx*dx + dy*dy
	if l2 == 0 {
		return a
	}
	t := ((p[0]-a[0])*mx*dx + (p[1]-a[1])*dy) / l2
	t = math.Max(0, math.Min(1, t))
	return orb.Point{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])}
}

func dedupePoints(ps []orb.Point) []orb.Point {
	out := ps[:1]
	for _, p := range ps[1:] {
		if metres(p, out[len(out)-1]) > 0.5 {
			out = append(out, p)
		}
	}
	if len(out) == 1 {
		out = append(out, out[0])
	}
	return out
}

// incidentPoint is where an incident is: its point, or its bound's centre.
func incidentPoint(f *twin.Feature) (orb.Point, bool) {
	switch g := f.Geometry.(type) {
	case nil:
		return orb.Point{}, false
	case orb.Point:
		return g, true
	default:
		return g.Bound().Center(), true
	}
}

// trip is a worker's way along a path at a constant speed from start; it
// holds at the end until cleared.
type trip struct {
	incident string
	path     []orb.Point
	cum      []float64
	speed    float64
	start    time.Time
	back     bool // returning to the patrol
}

func newTrip(incident string, path []orb.Point, start time.Time, speed float64) *trip {
	t := &trip{incident: incident, path: path, cum: make([]float64, len(path)), speed: speed, start: start}
	for i := 1; i < len(path); i++ {
		t.cum[i] = t.cum[i-1] + metres(path[i-1], path[i])
	}
	return t
}

func (t *trip) length() float64 { return t.cum[len(t.cum)-1] }

func (t *trip) arrived(now time.Time) bool {
	return now.Sub(t.start).Seconds()*t.speed >= t.length()
}

// at returns the position and heading at now.
func (t *trip) at(now time.Time) (orb.Point, float64) {
	d := math.Max(0, now.Sub(t.start).Seconds()*t.speed)
	if d >= t.length() {
		n := len(t.path)
		return t.path[n-1], bearing(t.path[n-2], t.path[n-1])
	}
	i := 1
	for i < len(t.cum)-1 && t.cum[i] < d {
		i++
	}
	a, b := t.path[i-1], t.path[i]
	f := 0.0
	if seg := t.cum[i] - t.cum[i-1]; seg > 0 {
		f = (d - t.cum[i-1]) / seg
	}
	return orb.Point{a[0] + f*(b[0]-a[0]), a[1] + f*(b[1]-a[1])}, bearing(a, b)
}

// travelTo sets the worker off along path, timed to take about d (within
// the speeds a worker can go), after pinning its patrol walk where it is so
// the walk resumes from there once it is back.
func (w *worker) travelTo(now time.Time, path []orb.Point, d time.Duration, incident string) {
	w.pin(now)
	t := newTrip(incident, path, now, minTravelSpeed)
	if d > 0 {
		t.speed = math.Max(minTravelSpeed, math.Min(maxTravelSpeed, t.length()/d.Seconds()))
	}
	w.trip = t
}

// goBack walks the worker back along its trip to where it left its patrol.
func (w *worker) goBack(now time.Time) {
	if w.trip == nil || w.trip.back {
		return
	}
	p, _ := w.trip.at(now)
	back := []orb.Point{p}
	for i := len(w.trip.path) - 1; i >= 0; i-- {
		back = append(back, w.trip.path[i])
	}
	t := newTrip(w.trip.incident, dedupePoints(back), now, walkSpeed)
	t.back = true
	w.trip = t
}

// pin stops the patrol walk at its current point (the next leg starts
// there).
func (w *worker) pin(now time.Time) {
	if w.trip != nil {
		return
	}
	w.advance(now)
	u, v := w.uvAt(now)
	w.u0, w.v0, w.u1, w.v1 = u, v, u, v
	w.start, w.end = now, now
}

// position is where the worker is at now (trip or patrol).
func (w *worker) position(now time.Time) orb.Point {
	if w.trip != nil {
		p, _ := w.trip.at(now)
		return p
	}
	w.advance(now)
	u, v := w.uvAt(now)
	return w.street.PointAt(u, v)
}

// human reports whether a real phone reported this worker lately.
func (w *worker) human(now time.Time) bool { return now.Before(w.handsOffUntil) }

// observe notes a fix someone else sent for this worker (its twin state is
// newer than the sim's last), which keeps the sim's hands off it.
func (w *worker) observe(tw *twin.Twin, now time.Time) {
	if tw == nil || w.lastSent.IsZero() {
		return
	}
	id, ok := tw.Resolve(w.id)
	if !ok {
		return
	}
	if f, ok := tw.Get(id); ok && f.Observed.Time().After(w.lastSent) && f.Observed.Time().After(w.humanSeen) {
		w.humanSeen = f.Observed.Time() // each new fix from the phone renews the hold, once
		w.handsOffUntil = now.Add(HandsOff)
	}
}
