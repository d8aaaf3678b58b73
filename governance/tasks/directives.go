package tasks

import (
	"fmt"
	"sort"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// Limits of a directive.
const (
	maxTitle   = 200
	maxText    = 8192
	maxTargets = 64
)

// DirectiveReq is a POST /api/directives body.
type DirectiveReq struct {
	Title    string   `json:"title"`
	Text     string   `json:"text"`
	Targets  []string `json:"targets"`
	Due      string   `json:"due"`
	Requires []string `json:"requires"`
}

// ForwardReq is a POST /api/tasks/{name}/forward body.
type ForwardReq struct {
	Targets []string `json:"targets"`
	Due     string   `json:"due"` // optional: an earlier due time for the children
}

func issuer(p auth.Principal) error {
	if p.Role != auth.Operator && p.Role != auth.Admin {
		return fmt.Errorf("%w: only an operator or admin of a tier issues work", ErrForbidden)
	}
	return nil
}

// checkTargets validates target codes: present, unique, known regions,
// strictly inside the region `in` (404 otherwise, as for anything outside
// the principal's scope).
func (s *Service) checkTargets(targets []string, in string) ([]string, error) {
	if len(targets) == 0 || len(targets) > maxTargets {
		return nil, fmt.Errorf("%w: targets: 1 to %d region codes", ErrBad, maxTargets)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range targets {
		if c == "" || len(c) > 12 {
			return nil, fmt.Errorf("%w: bad target %q", ErrBad, c)
		}
		if seen[c] {
			continue
		}
		seen[c] = true
		if !inside(c, in) || !s.regionExists(c) {
			return nil, fmt.Errorf("target region %s: %w", c, ErrNotFound)
		}
		out = append(out, c)
	}
	return out, nil
}

func parseDue(s string, now time.Time) (time.Time, error) {
	t, ok := parseTime(s)
	if !ok {
		return time.Time{}, fmt.Errorf("%w: due: want an RFC 3339 time", ErrBad)
	}
	if t.Before(now.Add(-time.Minute)) {
		return time.Time{}, fmt.Errorf("%w: due %s is in the past", ErrBad, s)
	}
	return t, nil
}

func checkRequires(req []string) ([]string, error) {
	if len(req) == 0 {
		return []string{"ack", "report"}, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range req {
		if r != "ack" && r != "report" {
			return nil, fmt.Errorf("%w: requires: ack, report (got %q)", ErrBad, r)
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// CreateDirective issues an order from p's tier: a directive object and one
// task per target region (each strictly inside p's region).
func (s *Service) CreateDirective(p auth.Principal, r DirectiveReq) (*twin.Feature, error) {
	if err := issuer(p); err != nil {
		return nil, err
	}
	if r.Title == "" || len(r.Title) > maxTitle || len(r.Text) > maxText {
		return nil, fmt.Errorf("%w: title (1 to %d bytes) is required; text at most %d bytes", ErrBad, maxTitle, maxText)
	}
	now := s.opts.Clock.Now()
	due, err := parseDue(r.Due, now)
	if err != nil {
		return nil, err
	}
	req, err := checkRequires(r.Requires)
	if err != nil {
		return nil, err
	}
	targets, err := s.checkTargets(r.Targets, p.Region)
	if err != nil {
		return nil, err
	}
	did := twin.NewID(twin.Directives, newName("dir", now))
	taskOf := map[string]any{}
	names := make([]string, len(targets))
	for i, c := range targets {
		names[i] = newName("tsk", now)
		taskOf[c] = twin.NewID(twin.Tasks, names[i]).String()
	}
	if _, err := s.tw.Put(&twin.Feature{ID: did, Geometry: s.regionPoint(p.Region), Props: twin.NewProps(map[string]any{
		"title": r.Title, "text": r.Text, "issuer": p.Region, "issued_by": p.Subject, "issued_at": stamp(now),
		"due": stamp(due), "requires": twin.PropList(req), "targets": twin.PropList(targets), "tasks": taskOf,
		auth.AlsoRegionsProp: twin.PropList(sortedUnique(append([]string{p.Region}, targets...))),
		"history":            []any{step("issue", p.Subject, now)},
	})}); err != nil {
		return nil, err
	}
	for i, c := range targets {
		if _, err := s.tw.Put(&twin.Feature{ID: twin.NewID(twin.Tasks, names[i]), Geometry: s.regionPoint(c),
			Props: twin.NewProps(s.directiveTask(p, r, req, did, c, p.Region, due, now))}); err != nil {
			return nil, err
		}
		s.m.issued.WithLabelValues(KindDirective).Inc()
	}
	return s.rollup(did)
}

// directiveTask is the props of one target's task.
func (s *Service) directiveTask(p auth.Principal, r DirectiveReq, req []string, did twin.ID, target, issuerCode string, due, now time.Time) map[string]any {
	return map[string]any{
		"kind": KindDirective, "state": Issued, "title": r.Title, "text": r.Text, "assignee": target,
		auth.AlsoRegionsProp: []any{target}, "issuer": issuerCode, "issued_by": p.Subject, "issued_at": stamp(now),
		"tier": s.tierOf(target), "tier_code": target, "due": stamp(due), "overdue": false, "escalations": 0.0,
		"requires": twin.PropList(req), "directive": did.String(), "evidence": []any{},
		"history": []any{step("issue", p.Subject, now)},
	}
}

// Forward passes a directive's task down: one child task per target, each
// strictly inside the task's assignee region; the child's issuing tier is
// the task's assignee (an overdue child escalates to it).
func (s *Service) Forward(p auth.Principal, name string, r ForwardReq) (*twin.Feature, error) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	cur, err := s.Get(p, name)
	if err != nil {
		return nil, err
	}
	if err := issuer(p); err != nil {
		return nil, err
	}
	if cur.Prop("kind") != KindDirective {
		return nil, fmt.Errorf("%w: only a directive's task is forwarded", ErrTransition)
	}
	if !mayAct(p, cur) {
		return nil, fmt.Errorf("%w: task %s is assigned to %s", ErrForbidden, name, cur.Prop("assignee"))
	}
	if cur.Prop("state") == Closed {
		return nil, fmt.Errorf("%w: the task is closed", ErrTransition)
	}
	assignee := cur.Prop("assignee")
	targets, err := s.checkTargets(r.Targets, assignee)
	if err != nil {
		return nil, err
	}
	now := s.opts.Clock.Now()
	due, ok := parseTime(cur.Prop("due"))
	if !ok {
		due = now
	}
	if r.Due != "" {
		d, err := parseDue(r.Due, now)
		if err != nil {
			return nil, err
		}
		due = d
	}
	did, _ := twin.ParseID(cur.Prop("directive"))
	have := map[string]bool{}
	for _, c := range twin.PropStrings(cur.Props.Get("children")) {
		if ch, ok := s.tw.Get(mustID(c)); ok {
			have[ch.Prop("assignee")] = true
		}
	}
	req := twin.PropStrings(cur.Props.Get("requires"))
	dr := DirectiveReq{Title: cur.Prop("title"), Text: cur.Prop("text")}
	var kids []string
	for _, c := range targets {
		if have[c] {
			continue
		}
		id := twin.NewID(twin.Tasks, newName("tsk", now))
		props := s.directiveTask(p, dr, req, did, c, assignee, due, now)
		props["parent"] = cur.ID.String()
		if _, err := s.tw.Put(&twin.Feature{ID: id, Geometry: s.regionPoint(c), Props: twin.NewProps(props)}); err != nil {
			return nil, err
		}
		s.m.issued.WithLabelValues(KindDirective).Inc()
		kids = append(kids, id.String())
	}
	c, _, err := s.tw.Update(cur.ID, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, ErrNotFound
		}
		f.Props.Set("children", twin.PropList(append(twin.PropStrings(f.Props.Get("children")), kids...)))
		h := step("forward", p.Subject, now)
		h["targets"] = twin.PropList(targets)
		f.Props.Set("history", append(asList(f.Props.Get("history")), h))
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	if !did.IsZero() {
		// The streets it reached may read the order it came from.
		if _, _, err := s.tw.Update(did, func(f *twin.Feature) (*twin.Feature, error) {
			if f == nil {
				return nil, nil
			}
			f.Props.Set(auth.AlsoRegionsProp, twin.PropList(sortedUnique(append(twin.PropStrings(f.Props.Get(auth.AlsoRegionsProp)), targets...))))
			return f, nil
		}); err != nil {
			return nil, err
		}
		if _, err := s.rollup(did); err != nil {
			s.log.Error("tasks: roll-up", "directive", did.String(), "err", err)
		}
	}
	return c.New, nil
}

// regionPoint is where a region's work is drawn: its representative point
// (nil when the twin has no geometry for it). Scope never follows it.
func (s *Service) regionPoint(code string) orb.Geometry {
	r, ok := s.tw.Get(twin.NewID(twin.Regions, code))
	if !ok || r.Geometry == nil {
		return nil
	}
	if p, ok := planar.Centroid(r.Geometry); ok {
		return p
	}
	return nil
}

func mustID(s string) twin.ID {
	id, _ := twin.ParseID(s)
	return id
}

// counts is one row of a roll-up.
type counts struct {
	Total, Acked, Reported, Closed, Overdue int
}

func (c *counts) add(o counts) {
	c.Total += o.Total
	c.Acked += o.Acked
	c.Reported += o.Reported
	c.Closed += o.Closed
	c.Overdue += o.Overdue
}

func (c counts) props() map[string]any {
	return map[string]any{"total": float64(c.Total), "acked": float64(c.Acked), "reported": float64(c.Reported),
		"closed": float64(c.Closed), "overdue": float64(c.Overdue)}
}

// leafCounts counts a task, or, once forwarded, its children (recursively).
func (s *Service) leafCounts(f *twin.Feature, depth int) counts {
	kids := twin.PropStrings(f.Props.Get("children"))
	if len(kids) > 0 && depth < 4 {
		var c counts
		for _, k := range kids {
			if ch, ok := s.tw.Get(mustID(k)); ok {
				c.add(s.leafCounts(ch, depth+1))
			}
		}
		return c
	}
	c := counts{Total: 1}
	r := rank(f.Prop("state"))
	if r >= rank(Acked) {
		c.Acked = 1
	}
	if r >= rank(Reported) {
		c.Reported = 1
	}
	if r >= rank(Closed) {
		c.Closed = 1
	}
	if o, _ := f.Props.Get("overdue").(bool); o && !done(f) {
		c.Overdue = 1
	}
	return c
}

// rollup recomputes a directive's roll-up from its tasks and writes it
// (no change when it is the same).
func (s *Service) rollup(did twin.ID) (*twin.Feature, error) {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	d, ok := s.tw.Get(did)
	if !ok {
		return nil, fmt.Errorf("directive %s: %w", did.Name, ErrNotFound)
	}
	per := map[string]any{}
	var all counts
	taskOf, _ := d.Props.Get("tasks").(map[string]any)
	for code, v := range taskOf {
		ref, _ := v.(string)
		t, ok := s.tw.Get(mustID(ref))
		if !ok {
			continue
		}
		c := s.leafCounts(t, 0)
		all.add(c)
		row := c.props()
		row["state"] = t.Prop("state")
		row["task"] = ref
		row["forwarded"] = len(twin.PropStrings(t.Props.Get("children"))) > 0
		per[code] = row
	}
	ch, changed, err := s.tw.Update(did, func(f *twin.Feature) (*twin.Feature, error) {
		if f == nil {
			return nil, nil
		}
		old, _ := f.Props.Get("rollup").(map[string]any)
		if sameRollup(old, per) {
			if n, _ := f.Number("total"); int(n) == all.Total {
				return nil, nil
			}
		}
		f.Props.Set("rollup", per)
		for k, v := range all.props() {
			f.Props.Set(k, v)
		}
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		return ch.New, nil
	}
	d, _ = s.tw.Get(did)
	return d, nil
}

func sameRollup(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		ov, ok := a[k].(map[string]any)
		nv, _ := v.(map[string]any)
		if !ok || len(ov) != len(nv) {
			return false
		}
		for kk, x := range nv {
			if fmt.Sprint(ov[kk]) != fmt.Sprint(x) {
				return false
			}
		}
	}
	return true
}

// rollupOf refreshes the roll-up of the directive a task belongs to.
func (s *Service) rollupOf(task *twin.Feature) {
	if task == nil || task.Prop("kind") != KindDirective {
		return
	}
	did, err := twin.ParseID(task.Prop("directive"))
	if err != nil || did.Layer != twin.Directives {
		return
	}
	if _, err := s.rollup(did); err != nil {
		s.log.Error("tasks: roll-up", "directive", did.String(), "err", err)
	}
}

// Directives returns the directives p sees (issued by its tier or above it
// to regions it holds, or by it), newest first, with their roll-up.
func (s *Service) Directives(p auth.Principal, limit int) []*twin.Feature {
	var out []*twin.Feature
	s.tw.Range(twin.Directives, func(f *twin.Feature) bool {
		if p.Sees(f) {
			out = append(out, f)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Prop("issued_at"), out[j].Prop("issued_at")
		if a != b {
			return a > b
		}
		return out[i].ID.Name < out[j].ID.Name
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// DirectiveView is GET /api/directives/{name}: the directive, and per
// target its task with the children it was forwarded to (drill-down),
// limited to what the principal sees.
type DirectiveView struct {
	Directive *twin.Feature  `json:"directive"`
	Targets   []TargetView   `json:"targets"`
	Totals    map[string]any `json:"totals"`
}

// TargetView is one target's row of the roll-up.
type TargetView struct {
	Code     string         `json:"code"`
	Name     string         `json:"name,omitempty"`
	Counts   map[string]any `json:"counts"`
	Task     *twin.Feature  `json:"task"`
	Children []TargetView   `json:"children,omitempty"`
}

// Directive returns the directive view, or ErrNotFound when p sees
// neither the directive nor any of its tasks.
func (s *Service) Directive(p auth.Principal, name string) (*DirectiveView, error) {
	d, ok := s.tw.Get(twin.NewID(twin.Directives, name))
	if !ok {
		return nil, fmt.Errorf("directive %s: %w", name, ErrNotFound)
	}
	v := &DirectiveView{Directive: d}
	taskOf, _ := d.Props.Get("tasks").(map[string]any)
	var all counts
	for _, code := range twin.PropStrings(d.Props.Get("targets")) {
		ref, _ := taskOf[code].(string)
		t, ok := s.tw.Get(mustID(ref))
		if !ok {
			continue
		}
		tv, c, seen := s.targetView(p, code, t, 0)
		if seen {
			v.Targets = append(v.Targets, tv)
			all.add(c)
		}
	}
	if !p.Sees(d) && len(v.Targets) == 0 {
		return nil, fmt.Errorf("directive %s: %w", name, ErrNotFound)
	}
	v.Totals = all.props()
	return v, nil
}

// targetView builds a target's row and its children's rows, counting only
// what p sees.
func (s *Service) targetView(p auth.Principal, code string, t *twin.Feature, depth int) (TargetView, counts, bool) {
	tv := TargetView{Code: code}
	if r, ok := s.tw.Get(twin.NewID(twin.Regions, code)); ok {
		tv.Name = r.Prop("name")
	}
	var c counts
	seenKid := false
	if depth < 4 {
		for _, k := range twin.PropStrings(t.Props.Get("children")) {
			ch, ok := s.tw.Get(mustID(k))
			if !ok {
				continue
			}
			cv, cc, seen := s.targetView(p, ch.Prop("assignee"), ch, depth+1)
			if seen {
				tv.Children = append(tv.Children, cv)
				c.add(cc)
				seenKid = true
			}
		}
	}
	if !p.Sees(t) {
		// A street sees its own child task, not its district's.
		if len(tv.Children) == 1 {
			return tv.Children[0], c, seenKid
		}
		tv.Task = nil
		tv.Counts = c.props()
		return tv, c, seenKid
	}
	if !seenKid {
		c = s.leafCounts(t, 0)
	}
	tv.Task = t
	tv.Counts = c.props()
	return tv, c, true
}
