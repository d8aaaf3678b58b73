package tasks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/spatial/sphere"
	"github.com/citytwin/citytwin/twin"
)

// Evidence tuning.
const (
	// fixesKept bounds the recent fixes kept per muck truck; fixesAge drops
	// older ones. A crossing of the longest bridge at walking pace fits.
	fixesKept = 256
	fixesAge  = 15 * time.Minute
	// deckM: a fix this close to the bridge's geometry is on the deck
	// (GPS jitter and a line drawn down the middle of a wide deck).
	deckM = 30
	// collectFor bounds how long a case waits for the truck to leave the
	// deck before its evidence is fixed with what was seen.
	collectFor = 10 * time.Minute
)

// fix is one position of a tracked truck, from the feed.
type fix struct {
	at       time.Time
	p        orb.Point
	speed    float64
	hasSpeed bool
}

// collecting is an open case whose truck is still on the deck.
type collecting struct {
	task   twin.ID
	bridge twin.ID
	since  time.Time
}

// enforcer follows the feed: it keeps the muck trucks' recent fixes (the
// track a case's evidence is cut from, without waiting for the store
// writer) and opens one enforcement case per bridge-crossing alert,
// completing its evidence when the truck leaves the deck.
type enforcer struct {
	s     *Service
	mu    sync.Mutex
	fixes map[twin.ID][]fix
	open  map[twin.ID]collecting // by vehicle
}

func newEnforcer(s *Service) *enforcer {
	return &enforcer{s: s, fixes: map[twin.ID][]fix{}, open: map[twin.ID]collecting{}}
}

// run consumes the feed until ctx ends. It is a required consumer: a case
// must never miss its alert or its track.
func (e *enforcer) run(ctx context.Context) {
	feed := e.s.tw.Feed()
	after := feed.Last()
	cur := feed.Follow("tasks", twin.Required, after)
	defer cur.Close()
	e.resume()
	// One scan buffer for the consumer's life: a new one per read was
	// ~80 B of garbage per telemetry change (issue 16 goal 6).
	var cs []twin.Change
	for {
		for {
			var err error
			cs, err = feed.SinceAppend(cs[:0], after, 1024)
			if errors.Is(err, twin.ErrTooOld) {
				e.s.log.Warn("tasks: fell behind the feed; recent truck fixes lost")
				after = feed.Last()
				cur.Done(after)
				continue
			}
			if len(cs) == 0 {
				break
			}
			for i := range cs {
				e.Handle(&cs[i])
			}
			after = cs[len(cs)-1].Seq
			cur.Done(after)
		}
		select {
		case <-ctx.Done():
			return
		case <-cur.C():
		}
	}
}

// Handle applies one change (Run's consumer calls it; tests may too).
func (s *Service) Handle(c *twin.Change) { s.enf.Handle(c) }

// Handle looks at one change: a muck truck's fix, or a new crossing alert.
func (e *enforcer) Handle(c *twin.Change) {
	if c.Kind == twin.Remove && c.Old != nil && c.Old.ID.Layer == twin.Vehicles {
		e.mu.Lock()
		delete(e.fixes, c.Old.ID)
		delete(e.open, c.Old.ID)
		e.mu.Unlock()
		return
	}
	if c.Kind != twin.Upsert || c.New == nil {
		return
	}
	switch c.New.ID.Layer {
	case twin.Vehicles:
		if c.Sample == nil || !c.Sample.HasPos || c.New.Prop("kind") != "muck_truck" {
			return
		}
		e.addFix(c.New.ID, fix{at: c.Sample.Time, p: c.Sample.Pos, speed: c.Sample.SpeedKmh, hasSpeed: c.Sample.HasSpeed})
	case twin.Alerts:
		if c.Old == nil && e.isCrossing(c.New) {
			e.openCase(c.New)
		} else if c.New.Prop("state") == "closed" {
			if vid, err := twin.ParseID(c.New.Prop("subject")); err == nil {
				e.finish(vid, "alert closed")
			}
		}
	}
}

func (e *enforcer) addFix(vid twin.ID, f fix) {
	e.mu.Lock()
	l := append(e.fixes[vid], f)
	cut := 0
	for cut < len(l) && (f.at.Sub(l[cut].at) > fixesAge || len(l)-cut > fixesKept) {
		cut++
	}
	l = l[cut:]
	e.fixes[vid] = l
	col, collectingCase := e.open[vid]
	e.mu.Unlock()
	if !collectingCase {
		return
	}
	b, ok := e.s.tw.Get(col.bridge)
	if !ok || b.Geometry == nil || sphere.PointGeometryDistance(f.p, b.Geometry) > deckM || f.at.Sub(col.since) > collectFor {
		e.finish(vid, "left the deck")
	}
}

// isCrossing: a new geofence alert about a muck truck on a bridge (the
// rule `bridge-muck` of demo/rules.yaml, or any geofence rule whose target
// is a bridge and whose subject a muck truck).
func (e *enforcer) isCrossing(al *twin.Feature) bool {
	if al.Prop("kind") != "geofence" {
		return false
	}
	tid, err1 := twin.ParseID(al.Prop("target"))
	vid, err2 := twin.ParseID(al.Prop("subject"))
	if err1 != nil || err2 != nil || tid.Layer != twin.Bridges || vid.Layer != twin.Vehicles {
		return false
	}
	v, ok := e.s.tw.Get(vid)
	return ok && v.Prop("kind") == "muck_truck"
}

// caseName is the one case of one alert (so a replayed alert never opens
// a second).
func caseName(alert string) string {
	n := "enf-" + alert
	if len(n) > 200 {
		n = n[:200]
	}
	return n
}

// openCase opens the enforcement case of a crossing alert, visible to and
// actionable by every district the bridge touches.
func (e *enforcer) openCase(al *twin.Feature) {
	s := e.s
	vid, _ := twin.ParseID(al.Prop("subject"))
	bid, _ := twin.ParseID(al.Prop("target"))
	v, ok1 := s.tw.Get(vid)
	b, ok2 := s.tw.Get(bid)
	if !ok1 || !ok2 {
		return
	}
	var districts []string
	// The districts the bridge joins: its `connects` prop (the demo's and
	// imported bridges name them) and the regions the rules placed the
	// alert in (every vertex of the bridge).
	for _, c := range append(append(twin.PropStrings(al.Props.Get(auth.AlsoRegionsProp)), b.Region()...), twin.PropStrings(b.Props.Get("connects"))...) {
		if c != auth.CityCode && len(c) == 6 {
			districts = append(districts, c)
		}
	}
	districts = sortedUnique(districts)
	assignee := auth.CityCode
	if len(al.Region()) > 1 {
		assignee = al.Region()[1]
	} else if len(districts) > 0 {
		assignee = districts[0]
	}
	if len(districts) == 0 {
		districts = []string{assignee}
	}
	now := s.opts.Clock.Now()
	id := twin.NewID(twin.Tasks, caseName(al.ID.Name))
	persons := append(twin.PropStrings(v.Props.Get("owners")), twin.PropStrings(v.Props.Get("owner"))...)
	plate := v.Prop("plate")
	bname := nameZH(b)
	ev, speed := e.evidence(vid, b)
	actor := "rule:" + al.Prop("rule")
	tier := s.tierOf(assignee) // outside Update: fn must not call the twin
	c, created, err := s.tw.Update(id, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur != nil {
			return nil, nil // this alert's case exists
		}
		return &twin.Feature{ID: id, Geometry: al.Geometry, Props: twin.NewProps(map[string]any{
			"kind": KindEnforcement, "state": Issued, "title": fmt.Sprintf("渣土车禁行时段过桥 %s %s", plate, bname),
			"text": al.Prop("message"), "subject": vid.String(), "bridge": bid.String(), "alert": al.ID.String(),
			"plate": plate, "speed_kmh": speed, "assignee": assignee, auth.AlsoRegionsProp: twin.PropList(districts),
			"persons": twin.PropList(sortedUnique(persons)), "issuer": auth.CityCode, "issued_by": actor, "issued_at": stamp(now),
			"tier": tier, "tier_code": assignee, "due": stamp(now.Add(s.opts.EnforceDue)),
			"overdue": false, "escalations": 0.0, "evidence": ev, "evidence_complete": false,
			"crossed_at": al.Prop("first"), "history": []any{step("issue", actor, now)},
		})}, nil
	})
	if err != nil {
		s.log.Error("tasks: open enforcement case", "alert", al.ID.String(), "err", err)
		return
	}
	if !created {
		return
	}
	s.m.issued.WithLabelValues(KindEnforcement).Inc()
	s.m.cases.Inc()
	e.mu.Lock()
	e.open[vid] = collecting{task: c.New.ID, bridge: bid, since: now}
	fs := e.fixes[vid]
	e.mu.Unlock()
	// The rules write the alert after the fix that made it, and ingest may
	// have applied the truck's next fixes, off the deck, before that: no
	// later fix would then complete the case. Its last fix off the deck
	// after one on it means the truck has left already.
	if leftDeck(fs, b.Geometry) {
		e.finish(vid, "left the deck")
	}
}

// leftDeck reports whether the last of fs is off the deck of a bridge
// with geometry g, after an earlier fix on it.
func leftDeck(fs []fix, g orb.Geometry) bool {
	if g == nil || len(fs) < 2 || sphere.PointGeometryDistance(fs[len(fs)-1].p, g) <= deckM {
		return false
	}
	for _, f := range fs[:len(fs)-1] {
		if sphere.PointGeometryDistance(f.p, g) <= deckM {
			return true
		}
	}
	return false
}

// finish fixes a collecting case's evidence from the track as it stands.
func (e *enforcer) finish(vid twin.ID, why string) {
	e.mu.Lock()
	col, ok := e.open[vid]
	delete(e.open, vid)
	e.mu.Unlock()
	if !ok {
		return
	}
	b, ok := e.s.tw.Get(col.bridge)
	if !ok {
		return
	}
	ev, speed := e.evidence(vid, b)
	n := 0
	for _, x := range ev {
		if m, _ := x.(map[string]any); m["type"] == "capture" {
			n++
		}
	}
	now := e.s.opts.Clock.Now()
	_, _, err := e.s.tw.Update(col.task, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, nil
		}
		if trackLen(ev) < trackLen(asList(f.Props.Get("evidence"))) {
			// Fixes were lost meanwhile (a restart): what was seen stays.
			ev, speed = asList(f.Props.Get("evidence")), 0
			if v, ok := f.Number("speed_kmh"); ok {
				speed = v
			}
		}
		f.Props.Set("evidence", withPhotos(ev, asList(f.Props.Get("evidence"))))
		f.Props.Set("speed_kmh", speed)
		f.Props.Set("evidence_complete", true)
		h := step("evidence", "system", now)
		h["why"] = why
		h["captures"] = float64(n)
		f.Props.Set("history", append(asList(f.Props.Get("history")), h))
		return f, nil
	})
	if err != nil {
		e.s.log.Error("tasks: enforcement evidence", "task", col.task.String(), "err", err)
		return
	}
	e.s.m.captures.Add(float64(n))
}

// withPhotos is the evidence ev with the photos of old (POST
// .../evidence while the case collected) after it, each once.
func withPhotos(ev, old []any) []any {
	out := make([]any, 0, len(ev)+len(old))
	for _, x := range ev {
		if m, _ := x.(map[string]any); m["type"] != "photo" {
			out = append(out, x)
		}
	}
	for _, x := range old {
		if m, _ := x.(map[string]any); m["type"] == "photo" {
			out = append(out, x)
		}
	}
	return out
}

// trackLen is the number of fixes of the track in an evidence list.
func trackLen(ev []any) int {
	for _, x := range ev {
		if m, _ := x.(map[string]any); m["type"] == "track" {
			l, _ := m["times"].([]any)
			return len(l)
		}
	}
	return 0
}

// resume picks up, after a start, the cases whose trucks were still on the
// deck: their next fix off the deck (or the collecting time running out)
// completes them, keeping the track seen before when no better one came.
func (e *enforcer) resume() {
	now := e.s.opts.Clock.Now()
	var cols []collecting
	var vids []twin.ID
	e.s.tw.Range(twin.Tasks, func(f *twin.Feature) bool {
		if f.Prop("kind") != KindEnforcement || f.Props.Get("evidence_complete") != false {
			return true
		}
		vid, err1 := twin.ParseID(f.Prop("subject"))
		bid, err2 := twin.ParseID(f.Prop("bridge"))
		issued, ok := parseTime(f.Prop("issued_at"))
		if err1 == nil && err2 == nil && ok {
			cols = append(cols, collecting{task: f.ID, bridge: bid, since: issued})
			vids = append(vids, vid)
		}
		return true
	})
	for i, c := range cols {
		e.mu.Lock()
		e.open[vids[i]] = c
		e.mu.Unlock()
		if now.Sub(c.since) >= collectFor {
			e.finish(vids[i], "resumed after a start; nothing more to collect")
		}
	}
}

// evidence cuts the truck's latest run of fixes on the deck (with the fix
// before and after it, so the segment spans the deck), and lists each
// camera within CameraRadiusM of that track with the time the truck passed
// it (interpolated along the track at the closest point) and the distance.
func (e *enforcer) evidence(vid twin.ID, b *twin.Feature) ([]any, float64) {
	e.mu.Lock()
	fixes := append([]fix(nil), e.fixes[vid]...)
	e.mu.Unlock()
	track := deckRun(fixes, b.Geometry)
	if len(track) == 0 {
		return []any{}, 0
	}
	speed := 0.0
	coords := make([]any, len(track))
	times := make([]any, len(track))
	for i, f := range track {
		coords[i] = []any{round7(f.p[0]), round7(f.p[1])}
		times[i] = stamp(f.at)
		if f.hasSpeed {
			speed = math.Max(speed, f.speed)
		}
	}
	if speed == 0 && len(track) > 1 {
		d, dt := 0.0, track[len(track)-1].at.Sub(track[0].at).Hours()
		for i := 1; i < len(track); i++ {
			d += sphere.Distance(track[i-1].p, track[i].p)
		}
		if dt > 0 {
			speed = math.Round(d/1000/dt*10) / 10
		}
	}
	out := []any{map[string]any{"type": "track", "bridge": b.ID.String(),
		"geometry": map[string]any{"type": "LineString", "coordinates": coords}, "times": times,
		"from": stamp(track[0].at), "to": stamp(track[len(track)-1].at), "speed_kmh": speed}}
	r := e.s.opts.CameraRadiusM
	bound := orb.MultiPoint(pointsOf(track)).Bound()
	bound = sphere.ExpandBound(bound, r)
	var caps []map[string]any
	e.s.tw.Search(twin.Devices, bound, func(cam *twin.Feature) bool {
		if cam.Prop("kind") != "camera" {
			return true
		}
		cp, ok := cam.Geometry.(orb.Point)
		if !ok {
			return true
		}
		d, at := closest(track, cp)
		if d <= r {
			caps = append(caps, map[string]any{"type": "capture", "camera": cam.ID.String(), "ts": stamp(at),
				"distance_m": math.Round(d*10) / 10})
		}
		return true
	})
	sort.Slice(caps, func(i, j int) bool {
		if caps[i]["ts"] != caps[j]["ts"] {
			return caps[i]["ts"].(string) < caps[j]["ts"].(string)
		}
		return caps[i]["camera"].(string) < caps[j]["camera"].(string)
	})
	for _, c := range caps {
		out = append(out, c)
	}
	return out, speed
}

// deckRun returns the latest contiguous run of fixes on the deck, with the
// fix before and the fix after it when there are.
func deckRun(fixes []fix, deck orb.Geometry) []fix {
	if deck == nil {
		return nil
	}
	end := -1
	for i := len(fixes) - 1; i >= 0; i-- {
		if sphere.PointGeometryDistance(fixes[i].p, deck) <= deckM {
			end = i
			break
		}
	}
	if end < 0 {
		return nil
	}
	start := end
	for start > 0 && sphere.PointGeometryDistance(fixes[start-1].p, deck) <= deckM {
		start--
	}
	if start > 0 {
		start--
	}
	if end < len(fixes)-1 {
		end++
	}
	return fixes[start : end+1]
}

func pointsOf(fs []fix) []orb.Point {
	out := make([]orb.Point, len(fs))
	for i, f := range fs {
		out[i] = f.p
	}
	return out
}

// closest is the distance in metres from p to the track and the time the
// truck was at the closest point (linear in time along each segment), on
// a local plane (tens of metres: the sphere's curvature is far below GPS).
func closest(track []fix, p orb.Point) (float64, time.Time) {
	if len(track) == 1 {
		return sphere.Distance(track[0].p, p), track[0].at
	}
	best, at := math.Inf(1), track[0].at
	kx := 111320 * math.Cos(p[1]*math.Pi/180)
	const ky = 110574
	for i := 1; i < len(track); i++ {
		a, b := track[i-1], track[i]
		ax, ay := (a.p[0]-p[0])*kx, (a.p[1]-p[1])*ky
		bx, by := (b.p[0]-p[0])*kx, (b.p[1]-p[1])*ky
		dx, dy := bx-ax, by-ay
		t := 0.0
		if l2 := dx*dx + dy*dy; l2 > 0 {
			t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l2))
		}
		x, y := ax+t*dx, ay+t*dy
		if d := math.Hypot(x, y); d < best {
			best = d
			at = a.at.Add(time.Duration(t * float64(b.at.Sub(a.at))))
		}
	}
	return best, at
}

func round7(v float64) float64 { return math.Round(v*1e7) / 1e7 }
