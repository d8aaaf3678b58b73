// Package incidents runs the grid-worker loop of the governance centres:
// incidents are reported (duplicates merge), dispatched to the nearest
// available grid worker, accepted, reached, resolved and closed, each step
// an action with actor and time. SLA clocks (1 minute to accept, 5 to
// arrive, 10 to report after arriving, by default) escalate a late incident
// one tier (street -> district -> city) and raise an alert.
//
// Incidents are ordinary twin objects: every step is a twin change (so the
// websocket, tiles and store writer see it) and the deadlines live in the
// object's props, so timers survive a restart with the store.
package incidents

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/spatial/sphere"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Lifecycle states, in order.
const (
	Reported   = "reported"
	Dispatched = "dispatched"
	Accepted   = "accepted"
	Arrived    = "arrived"
	Resolved   = "resolved"
	Closed     = "closed"
)

// Errors the HTTP layer maps to statuses.
var (
	ErrNotFound   = errors.New("incident not found")
	ErrTransition = errors.New("action not allowed in this state")
	ErrForbidden  = errors.New("not allowed for this role")
	ErrTooFar     = errors.New("worker is not at the incident")
	ErrNoWorker   = errors.New("no available worker")
	ErrBadReport  = errors.New("bad report")
	// ErrNoSuchWorker answers a named worker that does not exist and one
	// the dispatcher may not assign alike (404), so a name reveals nothing.
	ErrNoSuchWorker = errors.New("worker not found")
	// ErrWorkerBusy: the named worker was claimed by another incident.
	ErrWorkerBusy = errors.New("worker is not available")
)

// SLA holds the time allowed for each step.
type SLA struct {
	Accept time.Duration // from dispatch to accept; default 1 min
	Arrive time.Duration // from accept to arrive; default 5 min
	Report time.Duration // from arrive to resolve (the report); default 10 min
}

// Options configure the service.
type Options struct {
	Clock         clock.Clock
	Logger        *slog.Logger
	SLA           SLA
	MergeRadiusM  float64       // duplicates within this distance merge; default 50
	MergeWindow   time.Duration // ... and this time; default 30 min
	ArriveRadiusM float64       // arrive needs the worker this close; default 50
	AutoDispatch  bool          // dispatch on report when a worker is available
	// Enricher places a report's position before anything is created, so an
	// out-of-region report is refused without a trace (the server passes
	// the twin's locator). nil: positions have no region path, and only
	// city-level principals may report.
	Enricher twin.Enricher
	// Evidence keeps the photos workers attach (POST
	// /api/incidents/{name}/evidence); nil: none are accepted.
	Evidence EvidenceStore
}

// Service runs the incident loop over a twin. Safe for concurrent use: every
// mutation goes through twin.Update, which serialises per object.
type Service struct {
	tw   *twin.Twin
	opts Options
	log  *slog.Logger
}

// New makes the service.
func New(tw *twin.Twin, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SLA.Accept <= 0 {
		opts.SLA.Accept = time.Minute
	}
	if opts.SLA.Arrive <= 0 {
		opts.SLA.Arrive = 5 * time.Minute
	}
	if opts.SLA.Report <= 0 {
		opts.SLA.Report = 10 * time.Minute
	}
	if opts.MergeRadiusM <= 0 {
		opts.MergeRadiusM = 50
	}
	if opts.MergeWindow <= 0 {
		opts.MergeWindow = 30 * time.Minute
	}
	if opts.ArriveRadiusM <= 0 {
		opts.ArriveRadiusM = 50
	}
	return &Service{tw: tw, opts: opts, log: opts.Logger}
}

// Report is a new incident as reported by a person or a rule. The reporter
// is always the principal's subject (a body cannot name someone else).
type Report struct {
	Type        string  `json:"type"`
	Lon         float64 `json:"lon"`
	Lat         float64 `json:"lat"`
	Description string  `json:"description"`
}

// maxDescription bounds a report's description (bytes).
const maxDescription = 4096

// Report files an incident, or merges it into an open one of the same type
// within MergeRadiusM and MergeWindow (counting reports). It returns the
// incident and whether it merged. The position's region is checked first:
// a report outside the principal's region creates, merges and broadcasts
// nothing.
func (s *Service) Report(p auth.Principal, r Report) (*twin.Feature, bool, error) {
	if r.Type == "" || len(r.Type) > 64 {
		return nil, false, fmt.Errorf("%w: type is required (at most 64 bytes)", ErrBadReport)
	}
	if len(r.Description) > maxDescription {
		return nil, false, fmt.Errorf("%w: description longer than %d bytes", ErrBadReport, maxDescription)
	}
	if !(r.Lon >= -180 && r.Lon <= 180 && r.Lat >= -90 && r.Lat <= 90) || (r.Lon == 0 && r.Lat == 0) {
		return nil, false, fmt.Errorf("%w: lon/lat out of range", ErrBadReport)
	}
	reporter := p.Subject
	now := s.opts.Clock.Now()
	at := orb.Point{r.Lon, r.Lat}
	probe := &twin.Feature{ID: twin.NewID(twin.Incidents, "probe"), Geometry: at}
	if s.opts.Enricher != nil {
		_, probe.Place = s.opts.Enricher.Locate(at)
	}
	if !p.Sees(probe) {
		return nil, false, fmt.Errorf("%w: position is outside your region", ErrForbidden)
	}
	if f, ok := s.mergeInto(p, at, r.Type, reporter, now); ok {
		return f, true, nil
	}
	name := newName(now)
	c, err := s.tw.Put(&twin.Feature{ID: twin.NewID(twin.Incidents, name), Geometry: at, Props: twin.NewProps(map[string]any{
		"type": r.Type, "description": r.Description, "reporter": reporter, "reporters": []any{reporter},
		"state": Reported, "reports": 1.0, "reported_at": stamp(now), "tier": "street", "sla_breaches": 0.0,
		"breached": []any{}, "history": []any{step("report", reporter, now)},
	})})
	if err != nil {
		return nil, false, err
	}
	f := s.setTierCode(c.New)
	if s.opts.AutoDispatch {
		if d, err := s.Act(auth.Principal{Subject: "system", Role: auth.Admin, Region: auth.CityCode}, f.ID.Name, "dispatch", Action{}); err == nil {
			f = d
		}
	}
	return f, false, nil
}

// mergeInto finds an open incident of the same type nearby and recent, and
// counts the report on it.
func (s *Service) mergeInto(p auth.Principal, at orb.Point, typ, reporter string, now time.Time) (*twin.Feature, bool) {
	var target twin.ID
	s.tw.Nearest(twin.Incidents, at, func(f *twin.Feature, approx float64) bool {
		if approx > s.opts.MergeRadiusM*1.01 {
			return false
		}
		st := f.Prop("state")
		if f.Prop("type") != typ || st == Resolved || st == Closed || !p.Sees(f) {
			return true
		}
		if t, err := time.Parse(time.RFC3339Nano, f.Prop("reported_at")); err != nil || now.Sub(t) > s.opts.MergeWindow {
			return true
		}
		if sphere.PointGeometryDistance(at, f.Geometry) <= s.opts.MergeRadiusM {
			target = f.ID
			return false
		}
		return true
	})
	if target.IsZero() {
		return nil, false
	}
	c, ok, err := s.tw.Update(target, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil {
			return nil, nil
		}
		n, _ := cur.Number("reports")
		cur.Props.Set("reports", n+1)
		cur.Props.Set("reporters", append(asList(cur.Props.Get("reporters")), reporter))
		cur.Props.Set("history", append(asList(cur.Props.Get("history")), step("merge", reporter, now)))
		return cur, nil
	})
	if err != nil || !ok {
		return nil, false
	}
	return c.New, true
}

// Action carries an action's optional arguments.
type Action struct {
	Worker string `json:"worker"` // dispatch: a worker name to assign instead of the nearest
	// Note is recorded on the step; resolve requires one (the worker's
	// report of what was done).
	Note string `json:"note"`
	// Lon/Lat (arrive): where the worker is, as the field page's own GPS
	// says. Without them arrive uses the worker object's latest position
	// (which the page keeps fresh through telemetry while on duty). Either
	// way the position must lie within ArriveRadiusM of the incident.
	Lon *float64 `json:"lon,omitempty"`
	Lat *float64 `json:"lat,omitempty"`
}

// position returns the action's lon/lat when both are given and valid.
func (a Action) position() (orb.Point, bool, error) {
	if a.Lon == nil && a.Lat == nil {
		return orb.Point{}, false, nil
	}
	if a.Lon == nil || a.Lat == nil {
		return orb.Point{}, false, fmt.Errorf("%w: lon and lat go together", ErrBadReport)
	}
	lon, lat := *a.Lon, *a.Lat
	if !(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90) || (lon == 0 && lat == 0) {
		return orb.Point{}, false, fmt.Errorf("%w: lon/lat out of range", ErrBadReport)
	}
	return orb.Point{lon, lat}, true, nil
}

// Act performs a lifecycle action on an incident. A dispatch claims its
// worker atomically (available -> busy in one twin.Update), so two
// dispatches never get the same worker; the worker must lie in the
// incident's supervising tier and in the dispatcher's region.
func (s *Service) Act(p auth.Principal, name, action string, a Action) (*twin.Feature, error) {
	id := twin.NewID(twin.Incidents, name)
	cur, ok := s.tw.Get(id)
	if !ok || !p.Sees(cur) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	now := s.opts.Clock.Now()
	switch action {
	case "dispatch":
		if p.Role != auth.Operator && p.Role != auth.Admin {
			return nil, fmt.Errorf("%w: dispatch needs an operator", ErrForbidden)
		}
		if from := cur.Prop("state"); from != Reported && from != Dispatched {
			return nil, fmt.Errorf("%w: cannot dispatch an incident that is %s", ErrTransition, from)
		}
		return s.dispatch(p, cur, a.Worker, now)
	case "accept", "arrive", "resolve":
		if p.Role == auth.Field && cur.Prop("assignee") != twin.NewID(twin.Workers, p.Subject).String() {
			return nil, fmt.Errorf("%w: incident is not assigned to you", ErrForbidden)
		}
		if p.Role == auth.Planner {
			return nil, fmt.Errorf("%w: planners read only", ErrForbidden)
		}
		var at *orb.Point
		if action == "arrive" {
			wp, err := s.arrivePosition(cur, a)
			if err != nil {
				return nil, err
			}
			at = &wp
		}
		return s.commit(id, action, p.Subject, now, a.Note, at)
	case "close":
		if p.Role != auth.Operator && p.Role != auth.Admin {
			return nil, fmt.Errorf("%w: close needs an operator", ErrForbidden)
		}
	case "escalate":
		if p.Role != auth.Operator && p.Role != auth.Admin {
			return nil, fmt.Errorf("%w: escalate needs an operator", ErrForbidden)
		}
		return s.escalate(id, p.Subject, now, a.Note)
	default:
		return nil, fmt.Errorf("%w: unknown action %q (dispatch, accept, arrive, resolve, close, escalate)", ErrTransition, action)
	}
	return s.commit(id, action, p.Subject, now, a.Note, nil)
}

// escalate hands an open incident to the next tier up (street -> district
// -> city) by an operator's decision, as a missed deadline would, without
// counting an SLA breach: the operator on the wall screen judges that the
// street cannot handle it. The tier's code follows, so the higher tier's
// dispatchers may assign its workers.
func (s *Service) escalate(id twin.ID, actor string, now time.Time, note string) (*twin.Feature, error) {
	c, _, err := s.tw.Update(id, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		switch st := f.Prop("state"); st {
		case Resolved, Closed:
			return f, fmt.Errorf("%w: cannot escalate an incident that is %s", ErrTransition, st)
		}
		if f.Prop("tier") == "city" {
			return f, fmt.Errorf("%w: the incident is already at the city tier", ErrTransition)
		}
		tier := nextTier[f.Prop("tier")]
		if tier == "" {
			tier = "district"
		}
		f.Props.Set("tier", tier)
		f.Props.Set("tier_code", tierCode(f.Region(), tier))
		st := step("escalate", actor, now)
		if note = strings.TrimSpace(note); note != "" {
			st["note"] = note
		}
		f.Props.Set("history", append(asList(f.Props.Get("history")), st))
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return c.New, nil
}

// commit applies a (checked) action to the incident and frees its worker
// when the action ends the work.
func (s *Service) commit(id twin.ID, action, actor string, now time.Time, note string, at *orb.Point) (*twin.Feature, error) {
	c, _, err := s.tw.Update(id, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		if err := transition(f, action, actor, now, nil, s.opts.SLA); err != nil {
			return f, err
		}
		if action == "resolve" && strings.TrimSpace(note) == "" {
			// after the state check: resolving too early is a 409 either way
			return f, fmt.Errorf("%w: resolve needs a note (what was done)", ErrBadReport)
		}
		h := asList(f.Props.Get("history"))
		last, _ := h[len(h)-1].(map[string]any)
		if note != "" {
			last["note"] = note
			if action == "resolve" {
				f.Props.Set("resolution", note)
			}
		}
		if at != nil {
			pos := []any{at[0], at[1]}
			last["at_position"] = pos
			f.Props.Set("arrived_position", pos)
		}
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	s.afterAction(c.New, action)
	return c.New, nil
}

// arrivePosition decides where the assigned worker is for arrive: the
// position the action carries (the field page's GPS), else the worker
// object's latest position; it must lie within ArriveRadiusM.
func (s *Service) arrivePosition(inc *twin.Feature, a Action) (orb.Point, error) {
	if inc.Geometry == nil {
		return orb.Point{}, fmt.Errorf("%w: the incident has no position", ErrTooFar)
	}
	wp, given, err := a.position()
	if err != nil {
		return orb.Point{}, err
	}
	who := "the assigned worker"
	if given {
		who = "the position sent"
	} else {
		wid, err := twin.ParseID(inc.Prop("assignee"))
		w, ok := s.tw.Get(wid)
		if err != nil || !ok || w.Geometry == nil {
			return orb.Point{}, fmt.Errorf("%w: the assigned worker has no live position (send lon/lat)", ErrTooFar)
		}
		p, isPoint := w.Geometry.(orb.Point)
		if !isPoint {
			return orb.Point{}, fmt.Errorf("%w: the assigned worker has no point position", ErrTooFar)
		}
		wp = p
	}
	if d := sphere.PointGeometryDistance(wp, inc.Geometry); d > s.opts.ArriveRadiusM {
		return orb.Point{}, fmt.Errorf("%w: %s is %.0f m away (must be within %.0f m)", ErrTooFar, who, d, s.opts.ArriveRadiusM)
	}
	return wp, nil
}

// maxClaimTries bounds how many candidates a dispatch tries to claim when
// others take them first.
const maxClaimTries = 8

// dispatch claims a worker (the named one, or the nearest available) and
// assigns it. A worker claimed here is released again when the incident
// cannot take it (its state changed meanwhile).
func (s *Service) dispatch(p auth.Principal, inc *twin.Feature, name string, now time.Time) (*twin.Feature, error) {
	var w *twin.Feature
	if name != "" {
		cand, ok := s.tw.Get(twin.NewID(twin.Workers, name))
		if !ok || !s.mayAssign(p, inc, cand) {
			return nil, fmt.Errorf("%w: %q", ErrNoSuchWorker, name)
		}
		if err := s.claim(cand.ID); err != nil {
			return nil, err
		}
		w = cand
	} else {
		tried := map[twin.ID]bool{}
		for range maxClaimTries {
			cand, err := s.pickWorker(p, inc, tried)
			if err != nil {
				return nil, err
			}
			if err := s.claim(cand.ID); err != nil {
				tried[cand.ID] = true // taken meanwhile: the next nearest
				continue
			}
			w = cand
			break
		}
		if w == nil {
			return nil, fmt.Errorf("%w in the incident's grid or street", ErrNoWorker)
		}
	}
	prev := ""
	c, _, err := s.tw.Update(inc.ID, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		prev = f.Prop("assignee")
		return f, transition(f, "dispatch", p.Subject, now, w, s.opts.SLA)
	})
	if err != nil {
		s.setStatus(w.ID, "available")
		return nil, err
	}
	if pid, perr := twin.ParseID(prev); perr == nil && pid != w.ID {
		s.setStatus(pid, "available") // re-dispatch: the previous worker is free again
	}
	return c.New, nil
}

// mayAssign reports whether the dispatcher may give inc to worker w: the
// dispatcher sees w, and w lies in the region of the incident's
// supervising tier (its street, or its district or the city once
// escalated), computed from the incident's region path, never from props.
func (s *Service) mayAssign(p auth.Principal, inc, w *twin.Feature) bool {
	if !p.Sees(w) {
		return false
	}
	code := tierCode(inc.Region(), inc.Prop("tier"))
	return code == auth.CityCode || w.InRegion(code)
}

// claim marks an available worker busy in one twin.Update: of two
// concurrent dispatches, one sees "available" and the other ErrWorkerBusy.
func (s *Service) claim(wid twin.ID) error {
	_, _, err := s.tw.Update(wid, func(w *twin.Feature) (*twin.Feature, error) {
		if w == nil {
			return nil, ErrNoSuchWorker
		}
		if w.Prop("status") != "available" {
			return nil, ErrWorkerBusy
		}
		w.Props.Set("status", "busy")
		return w, nil
	})
	return err
}

// setStatus sets a worker's status (no change when it already has it). A
// failure is logged, not returned: the incident's own transition has
// already been committed, but a worker left "busy" can no longer be
// dispatched, so an operator must be able to see why.
func (s *Service) setStatus(wid twin.ID, status string) {
	_, _, err := s.tw.Update(wid, func(w *twin.Feature) (*twin.Feature, error) {
		if w == nil || w.Prop("status") == status {
			return nil, nil
		}
		w.Props.Set("status", status)
		return w, nil
	})
	if err != nil {
		s.log.Error("incidents: worker status not updated", "worker", wid.String(), "status", status, "err", err)
	}
}

// transition applies an action to a cloned incident.
func transition(f *twin.Feature, action, actor string, now time.Time, worker *twin.Feature, sla SLA) error {
	from := f.Prop("state")
	allowed := map[string][]string{
		"dispatch": {Reported, Dispatched},
		"accept":   {Dispatched},
		"arrive":   {Accepted},
		"resolve":  {Arrived},
		"close":    {Resolved, Reported, Dispatched, Accepted, Arrived},
	}
	ok := false
	for _, st := range allowed[action] {
		ok = ok || st == from
	}
	if !ok {
		return fmt.Errorf("%w: cannot %s an incident that is %s", ErrTransition, action, from)
	}
	deadlines, _ := f.Props.Get("sla").(map[string]any)
	if deadlines == nil {
		deadlines = map[string]any{}
	} else {
		deadlines = copyMap(deadlines)
	}
	switch action {
	case "dispatch":
		f.Props.Set("state", Dispatched)
		f.Props.Set("assignee", worker.ID.String())
		f.Props.Set("dispatched_at", stamp(now))
		deadlines["accept_by"] = stamp(now.Add(sla.Accept))
	case "accept":
		f.Props.Set("state", Accepted)
		f.Props.Set("accepted_at", stamp(now))
		deadlines["arrive_by"] = stamp(now.Add(sla.Arrive))
	case "arrive":
		f.Props.Set("state", Arrived)
		f.Props.Set("arrived_at", stamp(now))
		deadlines["report_by"] = stamp(now.Add(sla.Report))
	case "resolve":
		f.Props.Set("state", Resolved)
		f.Props.Set("resolved_at", stamp(now))
	case "close":
		f.Props.Set("state", Closed)
		f.Props.Set("closed_at", stamp(now))
	}
	f.Props.Set("sla", deadlines)
	f.Props.Set("history", append(asList(f.Props.Get("history")), step(action, actor, now)))
	return nil
}

// afterAction frees the worker of a resolved or closed incident.
func (s *Service) afterAction(inc *twin.Feature, action string) {
	switch action {
	case "resolve", "close":
		if wid, err := twin.ParseID(inc.Prop("assignee")); err == nil {
			s.setStatus(wid, "available")
		}
	}
}

// pickWorker chooses the nearest available worker in the incident's grid,
// then in its street, that the dispatcher may assign and that is not in
// skip. Candidates come from the workers R-tree in distance order (standing
// in for an H3 ring search: both visit the nearest first), filtered by grid
// or street, then exact distance.
func (s *Service) pickWorker(p auth.Principal, inc *twin.Feature, skip map[twin.ID]bool) (*twin.Feature, error) {
	at, ok := incidentPoint(inc)
	if !ok {
		return nil, fmt.Errorf("%w: the incident has no position", ErrNoWorker)
	}
	street := ""
	if len(inc.Region()) > 0 {
		street = inc.Region()[len(inc.Region())-1]
	}
	var inGrid, inStreet *twin.Feature
	var dGrid, dStreet float64
	s.tw.Nearest(twin.Workers, at, func(w *twin.Feature, approx float64) bool {
		if inGrid != nil && approx > dGrid*1.01 {
			return false
		}
		if inGrid == nil && inStreet != nil && approx > 5000 {
			return false // a street candidate exists; stop searching far for a grid-mate
		}
		if approx > 20000 {
			return false
		}
		if w.Prop("status") != "available" || skip[w.ID] || !s.mayAssign(p, inc, w) {
			return true
		}
		d := sphere.PointGeometryDistance(at, w.Geometry)
		grid := w.Prop("grid")
		if grid == "" {
			grid = w.Grid()
		}
		if inc.Grid() != "" && grid == inc.Grid() && (inGrid == nil || d < dGrid) {
			inGrid, dGrid = w, d
		}
		if street != "" && w.InRegion(street) && (inStreet == nil || d < dStreet) {
			inStreet, dStreet = w, d
		}
		return true
	})
	if inGrid != nil {
		return inGrid, nil
	}
	if inStreet != nil {
		return inStreet, nil
	}
	return nil, fmt.Errorf("%w in the incident's grid or street", ErrNoWorker)
}

// incidentPoint is where an incident is for distances: its point, or the
// representative point of a line or polygon incident (one registered
// through PUT /api/entities).
func incidentPoint(f *twin.Feature) (orb.Point, bool) {
	switch g := f.Geometry.(type) {
	case nil:
		return orb.Point{}, false
	case orb.Point:
		return g, true
	default:
		return planar.Centroid(g)
	}
}

// setTierCode records the region code of the supervising tier.
func (s *Service) setTierCode(f *twin.Feature) *twin.Feature {
	c, ok, _ := s.tw.Update(f.ID, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil {
			return nil, nil
		}
		cur.Props.Set("tier_code", tierCode(cur.Region(), cur.Prop("tier")))
		return cur, nil
	})
	if ok {
		return c.New
	}
	return f
}

// tierCode picks the code on the region path for a tier name.
func tierCode(region []string, tier string) string {
	i := map[string]int{"city": 0, "district": 1, "street": 2}[tier]
	if len(region) == 0 {
		return auth.CityCode
	}
	if i >= len(region) {
		i = len(region) - 1
	}
	return region[i]
}

func newName(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "inc-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func step(action, actor string, at time.Time) map[string]any {
	return map[string]any{"action": action, "actor": actor, "at": stamp(at)}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return append([]any(nil), l...)
}

func copyMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
