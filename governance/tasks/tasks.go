// Package tasks runs the one work loop that directives, rectification and
// enforcement share (CONTRACT §8, the article's 一件事): a task is issued,
// acknowledged, reported (note, photo refs) and closed, each step recorded
// with actor and time in its history; a task past its due time escalates
// one tier (street -> district -> city) with an alert, once per step;
// responsible persons hear of it through rules/notify, which follows the
// tasks layer like the alerts layer.
//
// Tasks and directives are ordinary twin objects (layers `tasks`,
// `directives`), as incidents are: every step is one twin change, so the
// websocket, tiles, OGC, the store writer and the cluster see it, and the
// deadlines live in props, so the clock survives a restart with the store.
// Scope is the server-written `regions` prop (auth.Sees): a directive's task
// has no geometry, and is seen by its target region and the regions above
// it, never by the streets inside it until it is forwarded to them.
package tasks

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// Kinds of task.
const (
	KindDirective     = "directive"
	KindRectification = "rectification"
	KindEnforcement   = "enforcement"
)

// States of the loop, in order.
const (
	Issued   = "issued"
	Acked    = "acked"
	Reported = "reported"
	Closed   = "closed"
)

// Enforcement outcomes.
const (
	Rectified = "rectified"
	Penalised = "penalised"
)

// Errors the HTTP layer maps to statuses.
var (
	ErrNotFound   = errors.New("not found")                        // 404: absent or outside scope
	ErrForbidden  = errors.New("not allowed")                      // 403: seen, but not yours to do
	ErrTransition = errors.New("action not allowed in this state") // 409
	ErrBad        = errors.New("bad request")                      // 400
)

// Options configure the service. Zero values take defaults.
type Options struct {
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	// Period is how long a rectification or enforcement task stays at a
	// tier once overdue before it escalates another (一楼一策: 逾期未改,
	// the tier above supervises); default 24 h. A directive's task
	// escalates once, to the issuing tier, at its due time.
	Period time.Duration
	// RemindBefore caps how long before its due time an open task's
	// persons are reminded (the reminder comes at the last quarter of the
	// time given, at most this long before); default 24 h.
	RemindBefore time.Duration
	// EnforceDue is the time an enforcement case gives its owner to
	// rectify; default 72 h.
	EnforceDue time.Duration
	// CameraRadiusM: cameras this close to a truck's track on a bridge deck
	// are its captures; default 50.
	CameraRadiusM float64
	// TickEvery is how often Run checks due times; default 1 s.
	TickEvery time.Duration
	// Evidence keeps the photos a task's report carries (POST
	// /api/tasks/{name}/evidence): the same store the incidents' photos
	// go to, whichever implementation the server builds. Nil: no photos.
	Evidence incidents.EvidenceStore
}

// Service runs the loop over a twin. Safe for concurrent use: every
// mutation of a task goes through twin.Update, which serialises per object;
// a directive's roll-up is recomputed from its tasks after each change.
type Service struct {
	tw   *twin.Twin
	opts Options
	log  *slog.Logger
	m    metrics

	// rollMu serialises roll-up recomputations of one directive at a time
	// (two tasks of it changing at once must not write a stale roll-up last).
	rollMu sync.Mutex
	// fwdMu serialises forwards, so two at once never give one street two
	// children of the same task.
	fwdMu sync.Mutex

	enf *enforcer
}

// New makes the service.
func New(tw *twin.Twin, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Period <= 0 {
		opts.Period = 24 * time.Hour
	}
	if opts.RemindBefore <= 0 {
		opts.RemindBefore = 24 * time.Hour
	}
	if opts.EnforceDue <= 0 {
		opts.EnforceDue = 72 * time.Hour
	}
	if opts.CameraRadiusM <= 0 {
		opts.CameraRadiusM = 50
	}
	if opts.TickEvery <= 0 {
		opts.TickEvery = time.Second
	}
	s := &Service{tw: tw, opts: opts, log: opts.Logger, m: newMetrics(opts.Registerer)}
	s.enf = newEnforcer(s)
	return s
}

// tiers is the escalation ladder, lowest first.
var tiers = []string{"street", "district", "city"}

// tierColour is the alert colour of an escalation reaching a tier.
var tierColour = map[string]string{"street": "yellow", "district": "orange", "city": "red"}

// tierOf names the tier of a region code: the region object's level when
// the twin holds it, else by the GB/T 2260 shape (6 digits a district, 9 a
// street, the city code the city).
func (s *Service) tierOf(code string) string {
	if r, ok := s.tw.Get(twin.NewID(twin.Regions, code)); ok {
		if l := r.Prop("level"); l == "city" || l == "district" || l == "street" {
			return l
		}
	}
	switch {
	case code == auth.CityCode:
		return "city"
	case len(code) <= 6:
		return "district"
	default:
		return "street"
	}
}

// parentCode is the region above code (a street's district, a district's
// city): the region object's parent when known, else by prefix.
func (s *Service) parentCode(code string) string {
	if r, ok := s.tw.Get(twin.NewID(twin.Regions, code)); ok {
		if p := r.Prop("parent"); p != "" {
			return p
		}
	}
	switch {
	case code == auth.CityCode:
		return auth.CityCode
	case len(code) > 6:
		return code[:6]
	default:
		return auth.CityCode
	}
}

// regionExists reports whether the twin knows the region code.
func (s *Service) regionExists(code string) bool {
	_, ok := s.tw.Get(twin.NewID(twin.Regions, code))
	return ok
}

// inside reports whether region code c lies strictly inside region r.
func inside(c, r string) bool {
	if r == auth.CityCode {
		return c != auth.CityCode
	}
	return len(c) > len(r) && strings.HasPrefix(c, r)
}

// mayAct reports whether p's region holds the task's assignee or one of
// the regions the task is shared with (an enforcement case's districts).
func mayAct(p auth.Principal, f *twin.Feature) bool {
	if p.Role == auth.Planner {
		return false
	}
	if a := f.Prop("assignee"); a != "" && p.Covers(a) {
		return true
	}
	for _, c := range twin.PropStrings(f.Props.Get(auth.AlsoRegionsProp)) {
		if p.Covers(c) {
			return true
		}
	}
	return false
}

// done reports whether a task needs nothing more from its assignee: it is
// closed, or a directive's task has reached the last step it requires.
func done(f *twin.Feature) bool {
	st := f.Prop("state")
	if st == Closed {
		return true
	}
	if f.Prop("kind") != KindDirective {
		return false
	}
	req := twin.PropStrings(f.Props.Get("requires"))
	need := Acked
	for _, r := range req {
		if r == "report" {
			need = Reported
		}
	}
	return rank(st) >= rank(need)
}

// rank orders the states.
func rank(st string) int {
	switch st {
	case Issued:
		return 0
	case Acked:
		return 1
	case Reported:
		return 2
	case Closed:
		return 3
	}
	return -1
}

func newName(prefix string, now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func step(action, actor string, at time.Time) map[string]any {
	return map[string]any{"action": action, "actor": actor, "at": stamp(at)}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return append([]any(nil), l...)
}

func sortedUnique(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, s := range l {
		if s != "" && (i == 0 || s != l[i-1]) {
			out = append(out, s)
		}
	}
	return out
}

// Get returns a task the principal sees.
func (s *Service) Get(p auth.Principal, name string) (*twin.Feature, error) {
	f, ok := s.tw.Get(twin.NewID(twin.Tasks, name))
	if !ok || !p.Sees(f) {
		return nil, fmt.Errorf("task %s: %w", name, ErrNotFound)
	}
	return f, nil
}

// Filter selects tasks in List.
type Filter struct {
	Kind, State, Subject, Directive string
	Open                            bool // only tasks not closed
	Limit                           int
}

// List returns the tasks the principal sees that match, newest first.
func (s *Service) List(p auth.Principal, fl Filter) []*twin.Feature {
	var out []*twin.Feature
	s.tw.Range(twin.Tasks, func(f *twin.Feature) bool {
		if (fl.Kind != "" && f.Prop("kind") != fl.Kind) || (fl.State != "" && f.Prop("state") != fl.State) ||
			(fl.Subject != "" && f.Prop("subject") != fl.Subject) || (fl.Directive != "" && f.Prop("directive") != fl.Directive) ||
			(fl.Open && f.Prop("state") == Closed) || !p.Sees(f) {
			return true
		}
		out = append(out, f)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Prop("issued_at"), out[j].Prop("issued_at")
		if a != b {
			return a > b
		}
		return out[i].ID.Name < out[j].ID.Name
	})
	if fl.Limit > 0 && len(out) > fl.Limit {
		out = out[:fl.Limit]
	}
	return out
}
