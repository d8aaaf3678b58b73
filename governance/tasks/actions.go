package tasks

import (
	"fmt"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Limits of an action body.
const (
	maxNote   = 4096
	maxPhotos = 16
	maxRef    = 512
)

// ActionReq is a POST /api/tasks/{name}/{action} body (all optional but a
// report's note or photos, and an enforcement case's outcome at close).
type ActionReq struct {
	Note    string   `json:"note"`
	Photos  []string `json:"photos"` // references (URLs or object keys) of photos stored elsewhere
	Outcome string   `json:"outcome"`
}

func (a ActionReq) check() error {
	if len(a.Note) > maxNote || len(a.Photos) > maxPhotos || len(a.Outcome) > 32 {
		return fmt.Errorf("%w: note at most %d bytes, at most %d photos", ErrBad, maxNote, maxPhotos)
	}
	for _, p := range a.Photos {
		if p == "" || len(p) > maxRef {
			return fmt.Errorf("%w: a photo reference is 1 to %d bytes", ErrBad, maxRef)
		}
	}
	return nil
}

// Act performs ack, report or close on a task. A task outside p's scope is
// ErrNotFound; one p sees but whose assignee p's region does not hold is
// ErrForbidden.
func (s *Service) Act(p auth.Principal, name, action string, a ActionReq) (*twin.Feature, error) {
	cur, err := s.Get(p, name)
	if err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	switch action {
	case "ack", "report", "close":
	default:
		return nil, fmt.Errorf("%w: unknown action %q (ack, report, close, forward)", ErrBad, action)
	}
	if !mayAct(p, cur) {
		return nil, fmt.Errorf("%w: task %s is assigned to %s", ErrForbidden, name, cur.Prop("assignee"))
	}
	if action == "close" && p.Role != auth.Operator && p.Role != auth.Admin {
		return nil, fmt.Errorf("%w: close needs an operator", ErrForbidden)
	}
	if action == "report" && a.Note == "" && len(a.Photos) == 0 {
		return nil, fmt.Errorf("%w: a report carries a note or photos", ErrBad)
	}
	if cur.Prop("kind") == KindEnforcement && action == "close" && a.Outcome != Rectified && a.Outcome != Penalised {
		return nil, fmt.Errorf("%w: an enforcement case closes as %s or %s", ErrBad, Rectified, Penalised)
	}
	if cur.Prop("kind") != KindEnforcement && a.Outcome != "" && a.Outcome != "done" {
		return nil, fmt.Errorf("%w: outcome is for enforcement cases", ErrBad)
	}
	now := s.opts.Clock.Now()
	c, _, err := s.tw.Update(cur.ID, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		return f, transition(f, action, p.Subject, a, now)
	})
	if err != nil {
		return nil, err
	}
	s.m.actions.WithLabelValues(cur.Prop("kind"), action).Inc()
	s.rollupOf(c.New)
	return c.New, nil
}

// transition applies an action to a cloned task.
func transition(f *twin.Feature, action, actor string, a ActionReq, now time.Time) error {
	from := f.Prop("state")
	ok := false
	switch action {
	case "ack":
		ok = from == Issued
	case "report":
		ok = from == Issued || from == Acked
	case "close":
		ok = from != Closed
	}
	if !ok {
		return fmt.Errorf("%w: cannot %s a task that is %s", ErrTransition, action, from)
	}
	h := step(action, actor, now)
	switch action {
	case "ack":
		f.Props.Set("state", Acked)
		f.Props.Set("acked_at", stamp(now))
		f.Props.Set("acked_by", actor)
	case "report":
		f.Props.Set("state", Reported)
		f.Props.Set("reported_at", stamp(now))
		rep := map[string]any{"note": a.Note, "photos": twin.PropList(a.Photos), "by": actor, "at": stamp(now)}
		f.Props.Set("report", rep)
		h["note"] = a.Note
		h["photos"] = twin.PropList(a.Photos)
		if from == Issued && f.Props.Get("acked_at") == nil {
			f.Props.Set("acked_at", stamp(now)) // a report acknowledges
		}
	case "close":
		f.Props.Set("state", Closed)
		f.Props.Set("closed_at", stamp(now))
		f.Props.Set("closed_by", actor)
		if a.Outcome != "" {
			f.Props.Set("outcome", a.Outcome)
			h["outcome"] = a.Outcome
		}
		if a.Note != "" {
			h["note"] = a.Note
		}
	}
	if done(f) {
		f.Props.Set("overdue", false)
	}
	f.Props.Set("history", append(asList(f.Props.Get("history")), h))
	return nil
}

// RectifyReq is a POST /api/tasks body (kind rectification).
type RectifyReq struct {
	Kind      string   `json:"kind"`
	Subject   string   `json:"subject"`
	Title     string   `json:"title"`
	Text      string   `json:"text"`
	Plan      string   `json:"plan"`
	Due       string   `json:"due"`
	RiskLevel *float64 `json:"risk_level"` // the hazard's level while open (1 red .. 5 green); optional
}

// CreateRectification binds a hazard on a building to its responsible
// persons (the building's owners) with a deadline and a plan (一楼一策).
// The building's street works on it; the building's risk follows it (the
// risk rule reads open rectification tasks).
func (s *Service) CreateRectification(p auth.Principal, r RectifyReq) (*twin.Feature, error) {
	if r.Kind != KindRectification {
		return nil, fmt.Errorf("%w: kind: only %s tasks are created here (directives: POST /api/directives; enforcement cases open from bridge crossings)", ErrBad, KindRectification)
	}
	if err := issuer(p); err != nil {
		return nil, err
	}
	if len(r.Title) > maxTitle || len(r.Text) > maxText || len(r.Plan) > maxText {
		return nil, fmt.Errorf("%w: title at most %d bytes, text and plan at most %d", ErrBad, maxTitle, maxText)
	}
	if r.RiskLevel != nil && (*r.RiskLevel < 1 || *r.RiskLevel > 5) {
		return nil, fmt.Errorf("%w: risk_level 1 (red) to 5 (green)", ErrBad)
	}
	bid, err := twin.ParseID(r.Subject)
	if err != nil || bid.Layer != twin.Buildings {
		return nil, fmt.Errorf("%w: subject: a buildings/… id", ErrBad)
	}
	b, ok := s.tw.Get(bid)
	if !ok || !p.Sees(b) {
		return nil, fmt.Errorf("building %s: %w", bid.Name, ErrNotFound)
	}
	now := s.opts.Clock.Now()
	due, err := parseDue(r.Due, now)
	if err != nil {
		return nil, err
	}
	return s.rectify(p, b, r, due, now)
}

// rectify creates the task (issued at `now`, which the demo sets in the past).
func (s *Service) rectify(p auth.Principal, b *twin.Feature, r RectifyReq, due, now time.Time) (*twin.Feature, error) {
	bid := b.ID
	assignee := auth.CityCode
	if len(b.Region()) > 0 {
		assignee = b.Region()[len(b.Region())-1]
	}
	title := r.Title
	if title == "" {
		title = "隐患整改 " + nameZH(b)
	}
	props := map[string]any{
		"kind": KindRectification, "state": Issued, "title": title, "text": r.Text, "plan": r.Plan,
		"subject": bid.String(), "assignee": assignee, auth.AlsoRegionsProp: []any{assignee},
		"persons": twin.PropList(twin.PropStrings(b.Props.Get("owners"))), "issuer": p.Region, "issued_by": p.Subject,
		"issued_at": stamp(now), "tier": s.tierOf(assignee), "tier_code": assignee, "due": stamp(due),
		"overdue": false, "escalations": 0.0, "evidence": []any{}, "history": []any{step("issue", p.Subject, now)},
	}
	if r.RiskLevel != nil {
		props["risk_level"] = *r.RiskLevel
	}
	// The persons' display names, index for index, when the building
	// carries them (the demo's owners_zh): pages show names, not ids.
	if zh := twin.PropStrings(b.Props.Get("owners_zh")); len(zh) > 0 && len(zh) == len(twin.PropStrings(b.Props.Get("owners"))) {
		props["persons_zh"] = twin.PropList(zh)
	}
	var geom orb.Geometry
	if b.Geometry != nil {
		if c, ok := planar.Centroid(b.Geometry); ok {
			geom = c
		}
	}
	c, err := s.tw.Put(&twin.Feature{ID: twin.NewID(twin.Tasks, newName("rect", now)), Geometry: geom, Props: twin.NewProps(props)})
	if err != nil {
		return nil, err
	}
	s.m.issued.WithLabelValues(KindRectification).Inc()
	return c.New, nil
}

// nameZH is what a Chinese title calls an object: its name_zh, else its
// name, else its id's name.
func nameZH(f *twin.Feature) string {
	for _, k := range []string{"name_zh", "name"} {
		if v := f.Prop(k); v != "" {
			return v
		}
	}
	return f.ID.Name
}
