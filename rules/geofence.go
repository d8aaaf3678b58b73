package rules

import (
	"math"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/tidwall/rtree"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/spatial/sphere"
	"github.com/citytwin/citytwin/twin"
)

// fenceTarget is one indexed fence: a line (a bridge) or an area.
type fenceTarget struct {
	f       *twin.Feature
	line    orb.LineString // set for line targets
	area    orb.Geometry   // set for polygon targets
	windows []window       // from the target's props (windows_from); nil = the rule's own
	lengthM float64
	spanM   float64   // diagonal of the geometry's bound, metres
	bound   orb.Bound // geometry bound expanded by the buffer: the index key
	gone    bool      // removed from the rule (or replaced by a newer state of its fence)
}

// Limits of a sparse trace: a visit that fell wholly between two fixes
// counts only when a plausible drive explains the gap, so a GPS jump or a
// device off for an hour never invents a crossing. The jump may be at most
// the fence's span plus maxApproachM on either side, driven at no more
// than maxGapSpeedKmh.
const (
	maxGapSpeedKmh = 150.0
	maxApproachM   = 1000.0
)

// plausibleGap reports whether the movement q->p in dt could be one drive
// across the target.
func (t *fenceTarget) plausibleGap(q, p orb.Point, dt time.Duration) bool {
	if dt <= 0 {
		return false
	}
	d := sphere.Distance(q, p)
	if d > t.spanM+2*maxApproachM {
		return false
	}
	return d/dt.Seconds()*3.6 <= maxGapSpeedKmh
}

// subjectFences is one subject's state at the fences it is in, entering,
// or (outsideAll) tested against: a few entries, usually none, one or two,
// so a slice scanned by pointer. Maps keyed by twin.ID (subject -> target
// -> state) hashed two strings per look-up and per state entry on every
// update: 3 % of the server's CPU at 10k fences (issue 16 goal 1).
type subjectFences []subjectFence

type subjectFence struct {
	id twin.ID      // the target's: its state outlives a removal and a re-add
	t  *fenceTarget // the target when the entry was last used; see current
	s  *fenceState
}

// current is the live target of entry i, nil while its fence is out of
// the rule: a removed or replaced target (gone) is looked up by ID again.
func (st subjectFences) current(i int, f *fenceRule) *fenceTarget {
	if e := &st[i]; e.t == nil || e.t.gone {
		e.t = f.targets[e.id]
	}
	return st[i].t
}

// find returns t's state, nil when there is none (after current has been
// called for every entry, so that no entry holds a gone target).
func (st subjectFences) find(t *fenceTarget) *fenceState {
	for i := range st {
		if st[i].t == t {
			return st[i].s
		}
	}
	return nil
}

// fenceState is the state of one (rule, subject, target).
type fenceState struct {
	in        bool // debounced: on the line / inside the area
	pending   bool // the raw state disagrees with `in` ...
	pendN     int  // ... for this many consecutive fixes
	pendSince time.Time
	entryS    float64   // metres along a line target where the (possible) visit began
	entryP    orb.Point // where it began, for the bearing of an area crossing
	fired     bool      // this visit already raised the alert
	outFired  bool      // this stretch outside already raised the alert
}

// fenceRule is a geofence rule's index and state. The R-tree holds every
// applicable target under its bound expanded by buffer_m, so one update
// looks only at the fences its movement segment could touch.
type fenceRule struct {
	targetLayer twin.Layer
	ids         map[twin.ID]bool // nil: the whole layer
	buffer      float64
	windowsFrom []string // prop path, split on dots
	idx         rtree.RTreeG[*fenceTarget]
	targets     map[twin.ID]*fenceTarget
	state       map[twin.ID]subjectFences // by subject
	detect      map[string]bool
}

func newFenceRule(r *Rule) *fenceRule {
	f := &fenceRule{buffer: r.BufferM, targets: map[twin.ID]*fenceTarget{},
		state: map[twin.ID]subjectFences{}, detect: map[string]bool{}}
	for _, d := range r.Detect {
		f.detect[d] = true
	}
	if r.WindowsFrom != "" {
		f.windowsFrom = strings.Split(r.WindowsFrom, ".")
	}
	f.targetLayer = twin.Layer(r.Target.Layer)
	ids := append([]string(nil), r.Target.IDs...)
	if r.Target.ID != "" {
		ids = append(ids, r.Target.ID)
	}
	if len(ids) > 0 {
		f.ids = map[twin.ID]bool{}
		for _, s := range ids {
			if id, err := twin.ParseID(s); err == nil {
				f.ids[id] = true
				f.targetLayer = id.Layer
			}
		}
	}
	return f
}

// rebuild indexes the targets from the twin (at Load).
func (f *fenceRule) rebuild(tw *twin.Twin, r *Rule) {
	f.idx = rtree.RTreeG[*fenceTarget]{}
	f.targets = map[twin.ID]*fenceTarget{}
	if f.ids != nil {
		for id := range f.ids {
			if ft, ok := tw.Get(id); ok {
				f.add(ft)
			}
		}
		return
	}
	var all []*twin.Feature
	tw.Range(f.targetLayer, func(ft *twin.Feature) bool { all = append(all, ft); return true })
	for _, ft := range all {
		f.add(ft)
	}
}

func (f *fenceRule) add(ft *twin.Feature) {
	t := &fenceTarget{f: ft}
	switch g := ft.Geometry.(type) {
	case orb.LineString:
		if len(g) < 2 {
			return
		}
		t.line = g
		for i := 1; i < len(g); i++ {
			t.lengthM += sphere.Distance(g[i-1], g[i])
		}
	case orb.MultiLineString:
		if len(g) == 0 || len(g[0]) < 2 {
			return
		}
		t.line = g[0] // bridges are single lines; a multi-line fence uses its first part
		for i := 1; i < len(t.line); i++ {
			t.lengthM += sphere.Distance(t.line[i-1], t.line[i])
		}
	case orb.Polygon, orb.MultiPolygon:
		t.area = g
	default:
		return
	}
	if f.windowsFrom != nil {
		ws, ok := windowsAt(ft.Props, f.windowsFrom)
		if !ok {
			return // the target carries no such restriction: the rule does not apply to it
		}
		t.windows = ws
	}
	gb := ft.Geometry.Bound()
	t.spanM = sphere.Distance(gb.Min, gb.Max)
	t.bound = sphere.ExpandBound(gb, f.buffer)
	f.targets[ft.ID] = t
	f.idx.Insert(t.bound.Min, t.bound.Max, t)
}

func (f *fenceRule) removeTarget(id twin.ID) {
	if t := f.targets[id]; t != nil {
		f.idx.Delete(t.bound.Min, t.bound.Max, t)
		delete(f.targets, id)
		t.gone = true
	}
}

// targetChanged re-indexes a changed fence.
func (f *fenceRule) targetChanged(c *twin.Change, r *Rule) {
	id := c.ID()
	if f.ids != nil && !f.ids[id] {
		return
	}
	f.removeTarget(id)
	if c.New != nil {
		f.add(c.New)
	}
}

// windowsAt reads a list of "HH:MM-HH:MM" at a dotted path in props.
func windowsAt(props twin.Props, path []string) ([]window, bool) {
	if len(path) == 0 {
		return nil, false
	}
	v, ok := props.Lookup(path[0])
	if !ok {
		return nil, false
	}
	for _, k := range path[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	var out []window
	for _, s := range twin.PropStrings(v) {
		w, err := parseWindow(s)
		if err != nil {
			return nil, false
		}
		out = append(out, w)
	}
	return out, len(out) > 0
}

// evalFence evaluates one geofence rule on one subject's move.
func (e *Engine) evalFence(a *active, c *twin.Change, v *vars) {
	f := a.fence
	p, ok := c.New.Geometry.(orb.Point)
	if !ok {
		return
	}
	q, hasPrev := orb.Point{}, false
	var prevAt time.Time
	if c.Old != nil {
		q, hasPrev = c.Old.Geometry.(orb.Point)
		if prevAt = c.Old.Observed.Time(); prevAt.IsZero() {
			prevAt = c.Old.Updated.Time()
		}
	}
	seg := orb.Bound{Min: p, Max: p}
	if hasPrev {
		seg = seg.Extend(q)
	}
	var cand []*fenceTarget
	if f.outsideAll() {
		// "outside" of named fences is news far from them too: test them all.
		for _, t := range f.targets {
			cand = append(cand, t)
		}
	} else {
		f.idx.Search(seg.Min, seg.Max, func(_, _ [2]float64, t *fenceTarget) bool {
			cand = append(cand, t)
			return true
		})
	}
	st := f.state[c.New.ID]
	for i := range st {
		if t := st.current(i, f); t != nil && !containsTarget(cand, t) {
			cand = append(cand, t)
		}
	}
	if len(cand) == 0 {
		return
	}
	if ok, _ := a.c.filter.eval(v); !ok {
		return
	}
	at := c.New.Updated.Time()
	if c.Sample != nil {
		at = c.Sample.Time
	}
	minFixes := a.spec.MinFixes
	if minFixes < 1 {
		minFixes = 1
	}
	dwell := time.Duration(a.spec.DwellS * float64(time.Second))
	changed := false // st's entries (f.state holds the slice)
	var fresh fenceState
	for _, t := range cand {
		s := st.find(t)
		isNew := s == nil
		if isNew {
			fresh = fenceState{}
			s = &fresh // a heap copy only if it is kept
		}
		raw := f.rawIn(t, p, s.in)
		entered, exited, brief := false, false, false
		if raw != s.in {
			if !s.pending {
				s.pending, s.pendN, s.pendSince = true, 0, at
				if !s.in { // a visit may be starting: remember where
					s.entryS, s.entryP = f.along(t, p), p
					if hasPrev && f.segTouches(t, q, p) {
						s.entryS, s.entryP = f.along(t, q), q
					}
				}
			}
			s.pendN++
			if s.pendN >= minFixes && at.Sub(s.pendSince) >= dwell {
				s.in, s.pending = raw, false
				entered, exited = raw, !raw
			}
		} else {
			// An unconfirmed visit (fewer fixes on the fence than
			// min_fixes) may still have been a crossing.
			brief = s.pending && !s.in
			s.pending = false
		}
		switch {
		case entered:
			s.fired = false
			if f.detect[DetectEnter] {
				e.fenceFire(a, c, v, t, s, at, DetectEnter, nil)
			}
		case exited:
			exitS := f.along(t, p)
			if f.detect[DetectExit] {
				e.fenceFire(a, c, v, t, s, at, DetectExit, nil)
			}
			if f.detect[DetectCross] {
				if dir, ok := f.crossed(t, s.entryS, exitS, s.entryP, p); ok {
					e.fenceFire(a, c, v, t, s, at, DetectCross, dir)
				}
			}
		case brief && f.detect[DetectCross]:
			if dir, ok := f.crossed(t, s.entryS, f.along(t, p), s.entryP, p); ok {
				s.fired = false
				e.fenceFire(a, c, v, t, s, at, DetectCross, dir)
			}
		case !s.in && !s.pending && hasPrev && f.detect[DetectCross] && f.segTouches(t, q, p) && t.plausibleGap(q, p, at.Sub(prevAt)):
			// The whole visit fell between two fixes: a sparse trace
			// (a jump no drive explains is not a crossing).
			if dir, ok := f.crossed(t, f.along(t, q), f.along(t, p), q, p); ok {
				s.fired = false
				e.fenceFire(a, c, v, t, s, at, DetectCross, dir)
			}
		}
		if s.in && f.detect[DetectInside] && !s.fired {
			e.fenceFire(a, c, v, t, s, at, DetectInside, nil)
		}
		if s.in {
			s.outFired = false
		} else if f.detect[DetectOutside] && !s.pending && !s.outFired && (exited || f.outsideAll()) {
			s.outFired = e.fenceFire(a, c, v, t, s, at, DetectOutside, nil)
		}
		switch keep := s.in || s.pending || f.outsideAll(); {
		case keep && isNew:
			kept := fresh
			st = append(st, subjectFence{id: t.f.ID, t: t, s: &kept})
			changed = true
		case !keep && !isNew:
			for i := range st {
				if st[i].t == t {
					st[i] = st[len(st)-1]
					st = st[:len(st)-1]
					break
				}
			}
			changed = true
		}
	}
	if changed {
		if len(st) == 0 {
			delete(f.state, c.New.ID)
		} else {
			f.state[c.New.ID] = st
		}
	}
}

// outsideAll tells whether every named target is tested on every update:
// for `outside` against an explicit set of fences (a worker's grid, a
// depot), where being far away is exactly what the rule is about.
func (f *fenceRule) outsideAll() bool { return f.detect[DetectOutside] && f.ids != nil }

func containsTarget(l []*fenceTarget, t *fenceTarget) bool {
	for _, x := range l {
		if x == t {
			return true
		}
	}
	return false
}

// fenceFire raises the alert for one detection if the time windows and the
// rule's condition allow; one visit raises at most one alert firing.
// It reports whether it fired.
func (e *Engine) fenceFire(a *active, c *twin.Change, v *vars, t *fenceTarget, s *fenceState, at time.Time, detect string, dir map[string]any) bool {
	// Inside and cross describe the same visit: one firing per visit.
	// Enter, exit and outside are events of their own.
	once := detect == DetectInside || detect == DetectCross
	if once && s.fired {
		return false
	}
	if !inWindows(a.c.windows, at, a.c.loc) || !inWindows(t.windows, at, a.c.loc) {
		return false
	}
	v.target = t.f
	v.targetM = nil
	if ok, _ := a.c.cond.eval(v); !ok {
		return false
	}
	if once {
		s.fired = true
	}
	target := t.f.ID.String()
	detail := map[string]any{"detect": detect, "target": target}
	for k, x := range dir {
		detail[k] = x
	}
	msg := a.spec.Message
	if msg == "" {
		msg = string(c.New.ID.Layer) + "/" + c.New.ID.Name + " " + detect + " " + target
	}
	e.fire(firing{rule: a, subject: c.New, target: t.f, joined: v.joined, severity: a.severity(), at: at, message: msg, detail: detail})
	return true
}

// rawIn tells whether p is on/in the target, with hysteresis: for an area a
// subject must be inside by buffer_m to enter and outside by buffer_m to
// leave; for a line it is on within buffer_m and leaves beyond 1.5 buffer_m.
func (f *fenceRule) rawIn(t *fenceTarget, p orb.Point, was bool) bool {
	if t.line != nil {
		d := sphere.PointLineDistance(p, t.line)
		if was {
			return d <= f.buffer*1.5
		}
		return d <= f.buffer
	}
	inside := planar.Contains(t.area, p)
	if f.buffer <= 0 {
		return inside
	}
	bd := boundaryDistance(p, t.area)
	if was {
		return inside || bd < f.buffer
	}
	return inside && bd >= f.buffer
}

func boundaryDistance(p orb.Point, g orb.Geometry) float64 {
	best := math.Inf(1)
	switch g := g.(type) {
	case orb.Polygon:
		for _, r := range g {
			best = math.Min(best, sphere.PointRingDistance(p, r))
		}
	case orb.MultiPolygon:
		for _, poly := range g {
			best = math.Min(best, boundaryDistance(p, poly))
		}
	}
	return best
}

// segTouches reports whether the movement q->p passes within buffer of a
// line target, or through an area target.
func (f *fenceRule) segTouches(t *fenceTarget, q, p orb.Point) bool {
	if t.area != nil {
		switch g := t.area.(type) {
		case orb.Polygon:
			return planar.SegmentIntersectsPolygon(q, p, g)
		case orb.MultiPolygon:
			for _, poly := range g {
				if planar.SegmentIntersectsPolygon(q, p, poly) {
					return true
				}
			}
		}
		return false
	}
	if len(planar.SegmentCrossesLine(q, p, t.line)) > 0 {
		return true
	}
	return segLineDistance(q, p, t.line) <= f.buffer
}

// crossed decides whether a visit from along-position s0 to s1 (metres) on
// a line target traversed it: at least half its length, so a road passing
// under a bridge or a truck turning back midway does not count. Areas count
// any pass. It returns the direction for the alert: along the line
// (forward/reverse, from/to districts), or for an area the bearing in
// degrees from where the visit began (p0) to where it ended (p1).
func (f *fenceRule) crossed(t *fenceTarget, s0, s1 float64, p0, p1 orb.Point) (map[string]any, bool) {
	if t.line == nil {
		return map[string]any{"bearing": math.Round(sphere.Bearing(p0, p1))}, true
	}
	d := s1 - s0
	if math.Abs(d) < 0.5*t.lengthM {
		return nil, false
	}
	conn := twin.PropStrings(t.f.Props.Get("connects"))
	dir := map[string]any{"direction": "forward"}
	if d < 0 {
		dir["direction"] = "reverse"
	}
	if len(conn) == 2 {
		from, to := conn[0], conn[1]
		if d < 0 {
			from, to = to, from
		}
		dir["from"], dir["to"] = from, to
	}
	return dir, true
}

// along returns the distance in metres along a line target of p's nearest
// point (0 for areas).
func (f *fenceRule) along(t *fenceTarget, p orb.Point) float64 {
	if t.line == nil {
		return 0
	}
	best, bestS, acc := math.Inf(1), 0.0, 0.0
	for i := 1; i < len(t.line); i++ {
		a, b := t.line[i-1], t.line[i]
		ax, ay := localXY(p, a)
		bx, by := localXY(p, b)
		dx, dy := bx-ax, by-ay
		l2 := dx*dx + dy*dy
		u := 0.0
		if l2 > 0 {
			u = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l2))
		}
		if d := math.Hypot(ax+u*dx, ay+u*dy); d < best {
			best, bestS = d, acc+u*math.Sqrt(l2)
		}
		acc += math.Sqrt(l2)
	}
	return bestS
}

// localXY projects q to metres on an equirectangular plane centred on o.
func localXY(o, q orb.Point) (x, y float64) {
	const k = 6371008.8 * math.Pi / 180
	return (q[0] - o[0]) * k * math.Cos(o[1]*math.Pi/180), (q[1] - o[1]) * k
}

// segLineDistance is the least distance in metres between segment q-p and
// line ls, assuming they do not intersect (callers test that first).
func segLineDistance(q, p orb.Point, ls orb.LineString) float64 {
	best := math.Min(sphere.PointLineDistance(q, ls), sphere.PointLineDistance(p, ls))
	for _, v := range ls {
		best = math.Min(best, sphere.PointSegmentDistance(v, q, p))
	}
	return best
}
