package rules

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Notifier tells persons of building risk changes (rules/notify implements
// it, on twin/notify/{person}). It may block while its outbox is full.
type Notifier interface {
	Notify(ctx context.Context, persons []string, msg map[string]any)
}

// Options configure an Engine. The zero value works: no publisher, no
// notifier, wall clock, Asia/Shanghai.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	Clock      clock.Clock
	// Notifier receives building risk notifications; nil: none are sent.
	// Alerts are never published by the engine: it writes them into the
	// twin's alerts layer, and the notifications consumer (rules/notify)
	// publishes every alert change, whoever made it.
	Notifier Notifier
	TimeZone string // default for rules that name none; default Asia/Shanghai
	// TickEvery is how often Run calls Tick; default 5 s.
	TickEvery time.Duration
	// SLA is the default time an open, unacknowledged alert may stay at a
	// tier before it escalates; a rules file's `sla` overrides it per tier.
	// Default street 10 min, district 30 min.
	SLA map[string]time.Duration
	// OpenIncident reports an incident for rules with `incident: TYPE`
	// (the server wires it to the incident service); nil: such rules only
	// raise alerts.
	OpenIncident func(typ string, at orb.Point, description string) error
	// Place returns the region path of a point (the server passes its
	// locator's Path). Alerts concerning a line target (a bridge) are made
	// visible to the regions of each of its vertices; nil: only the region
	// paths of the objects involved count.
	Place func(orb.Point) []string
}

// Engine evaluates the loaded rules on the twin's changes and on Tick.
//
// All evaluation runs under one mutex: the engine is one consumer of the
// feed, and its per-(rule, subject, target) state is plain maps. HTTP
// handlers and Tick take the same mutex; Load swaps rules atomically under it.
type Engine struct {
	tw   *twin.Twin
	opts Options
	log  *slog.Logger
	clk  clock.Clock
	loc  *time.Location
	m    metrics

	// pubMu orders Publish calls (a tier's PUT merges with the running
	// rules); syncMu orders Sync's read of the twin and its Load.
	pubMu, syncMu sync.Mutex

	mu    sync.Mutex
	rs    *RuleSet
	rules []*active
	after uint64        // feed position processed
	scan  []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	// cur is the engine's required feed cursor while Run runs (nil
	// otherwise): the feed keeps every change until the engine is done
	// with it, so no crossing or alarm is skipped (twin.Required).
	cur  *twin.Cursor
	al   *alertBook
	risk *riskIndex
	// vs is process's CEL variables, reset for each change (process runs
	// under mu, and nothing keeps them past it): one allocation of 96 B
	// per telemetry change was 7 % of the bytes a fenced write allocated
	// (issue 16 goal 1).
	vs vars
}

// New makes an engine over tw. It restores the open alerts already in the
// twin's alerts layer, so a restart keeps updating them instead of
// opening duplicates. No rules run until Load.
func New(tw *twin.Twin, opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = tw.Clock()
	}
	if opts.TickEvery <= 0 {
		opts.TickEvery = 5 * time.Second
	}
	tz := opts.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		opts.Logger.Warn("rules: bad time zone, using Asia/Shanghai", "tz", tz, "err", err)
		loc, _ = time.LoadLocation(DefaultTimeZone)
	}
	e := &Engine{tw: tw, opts: opts, log: opts.Logger, clk: opts.Clock, loc: loc, m: newMetrics(opts.Registerer)}
	if err := registerAlertGauges(opts.Registerer, tw); err != nil {
		opts.Logger.Warn("rules: register alert gauges", "err", err)
	}
	e.al = newAlertBook(tw)
	e.risk = newRiskIndex()
	e.after = tw.Feed().Last()
	return e
}

// Load replaces the running rules with rs. Rules whose definition did not
// change keep their state (who is inside which fence, which alarms are
// raised); open alerts are never lost because they live in the twin and are
// keyed by rule name and subject.
func (e *Engine) Load(rs *RuleSet) {
	if rs == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := map[string]*active{}
	for _, a := range e.rules {
		old[a.spec.Name] = a
	}
	var next []*active
	for _, r := range rs.Rules {
		if r.Disabled {
			continue
		}
		c, err := compile(r, rs.Name)
		if err != nil { // Parse compiled it already; only a hand-built RuleSet gets here
			e.log.Error("rules: compile", "rule", r.Name, "err", err)
			continue
		}
		c.loc = rs.loc
		if r.TimeZone != "" {
			c.loc, _ = time.LoadLocation(r.TimeZone)
		} else if c.loc == nil || rs.TimeZone == "" {
			c.loc = e.loc
		}
		a := newActive(r, c, e.opts.Clock.Now())
		if o := old[r.Name]; o != nil && sameSpec(o.spec, r) {
			a.carry(o)
		}
		if a.fence != nil {
			a.fence.rebuild(e.tw, r)
		}
		next = append(next, a)
		e.m.fired.WithLabelValues(r.Name) // a 0 series from start
	}
	e.rs, e.rules = rs, next
	e.risk.rule = nil
	for _, a := range next {
		if a.spec.Kind == KindRisk {
			e.risk.rule = a
		}
	}
	if e.risk.rule != nil {
		e.seedRisk()
	}
	e.log.Info("rules: loaded", "file", rs.Name, "rules", rs.ruleNames())
}

// Resume makes the next Run evaluate changes after the feed's current end
// (a server that starts leading a replicated twin: what came before was
// evaluated by the previous leader) and restores the open alerts from the
// twin, which followed the change log meanwhile.
func (e *Engine) Resume() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.after = e.tw.Feed().Last()
	e.al = newAlertBook(e.tw)
	if e.risk.rule != nil {
		e.seedRisk()
	}
	for _, a := range e.rules {
		if a.fence != nil {
			a.fence.rebuild(e.tw, a.spec)
		}
	}
}

// RuleSet returns the running rules (nil before the first Load).
func (e *Engine) RuleSet() *RuleSet {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rs
}

// Run follows the twin's feed until ctx ends, evaluating every change, and
// calls Tick every Options.TickEvery. It is a required consumer of the
// feed: the feed keeps the changes it has not evaluated (slowing telemetry
// ingest when it is four feed windows behind), so it sees every change. Only
// if it hangs long enough for the feed to cut it loose does it skip ahead,
// log and count the skipped changes. When ctx ends it evaluates what is left
// in the feed and returns (rules/notify publishes the alerts).
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	cur := e.tw.Feed().Follow("rules", twin.Required, e.after)
	e.cur = cur
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.cur = nil
		e.mu.Unlock()
		cur.Close()
	}()
	t := time.NewTicker(e.opts.TickEvery)
	defer t.Stop()
	for {
		e.Drain() //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
		select {
		case <-ctx.Done():
			// Stopping: ingest stopped first (cmd/twin's shutdown order), so
			// this drain reaches the feed's last change.
			e.Drain() //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
			return nil
		case <-cur.C():
		case <-t.C:
			e.Tick(e.clk.Now()) //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
		}
	}
}

// Drain evaluates every change appended to the feed since the last call,
// synchronously. Run calls it on every wake-up; tests and benchmarks call it
// directly. It returns the number of changes processed.
func (e *Engine) Drain() int {
	n := 0
	for {
		k, more := e.drainBatch()
		n += k
		if !more {
			return n
		}
	}
}

// drainBatch evaluates up to one batch of changes under mu, so HTTP actions
// and Tick interleave with a long backlog instead of waiting it out.
func (e *Engine) drainBatch() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		cs, err := e.tw.Feed().SinceAppend(e.scan[:0], e.after, 4096)
		e.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			last := e.tw.Feed().Last()
			e.log.Warn("rules: fell behind the feed; skipping", "from", e.after, "to", last)
			e.m.skipped.Add(float64(last - e.after))
			e.after = last
			e.done()
			continue
		}
		if len(cs) == 0 {
			return 0, false
		}
		start := time.Now()
		for i := range cs {
			e.process(&cs[i])
		}
		e.m.evalSeconds.Observe(time.Since(start).Seconds() / float64(len(cs)))
		e.after = cs[len(cs)-1].Seq
		e.done()
		return len(cs), true
	}
}

// done tells the feed the engine is through with changes up to e.after.
// Caller holds e.mu.
func (e *Engine) done() {
	if e.cur != nil {
		e.cur.Done(e.after)
	}
}

// process evaluates one change against every rule.
func (e *Engine) process(c *twin.Change) {
	if c.Kind == twin.History {
		return
	}
	id := c.ID()
	if id.Layer == twin.Alerts {
		return // our own output; evaluating it would loop
	}
	if c.New == nil {
		e.forget(id)
		return
	}
	var v *vars
	for _, a := range e.rules {
		if a.subj == id.Layer && !a.spec.appliesTo(c.New) {
			continue // a district's or street's rule, and the subject is elsewhere
		}
		switch {
		case a.fence != nil && a.fence.targetLayer == id.Layer:
			a.fence.targetChanged(c, a.spec)
		case a.fence != nil && a.subj == id.Layer:
			if v == nil {
				v = e.varsFor(c)
			}
			e.evalFence(a, c, v)
		case a.thr != nil && a.subj == id.Layer:
			if v == nil {
				v = e.varsFor(c)
			}
			e.evalThreshold(a, c, v)
		case a.off != nil && a.subj == id.Layer:
			e.heard(a, c)
		}
	}
	e.riskChanged(c)
}

// varsFor sets the engine's variables (e.vs) to c's. Caller holds e.mu.
func (e *Engine) varsFor(c *twin.Change) *vars {
	e.vs = vars{cur: c.New, prev: c.Old, clk: e.clk}
	v := &e.vs
	if at, _ := c.New.Props.Get("attached_to").(string); at != "" {
		if jid, err := twin.ParseID(at); err == nil {
			v.joined, _ = e.tw.Get(jid)
		}
	}
	return v
}

// forget drops per-subject state of a removed object.
func (e *Engine) forget(id twin.ID) {
	for _, a := range e.rules {
		if a.fence != nil {
			if a.fence.targetLayer == id.Layer {
				a.fence.removeTarget(id)
			}
			delete(a.fence.state, id)
		}
		if a.thr != nil {
			delete(a.thr.level, id)
		}
		if a.off != nil {
			delete(a.off.down, id)
		}
	}
}

// Tick runs the time-based rules at now: offline devices, overdue hazards
// (risk), and alert escalation past the tier SLA. Run calls it on a ticker;
// tests call it with a fake clock's time.
func (e *Engine) Tick(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.rules {
		if a.off != nil {
			e.tickOffline(a, now)
		}
	}
	e.tickRisk(now)
	e.escalate(now)
}

// active is one loaded rule with its runtime state.
type active struct {
	spec  *Rule
	c     *compiled
	subj  twin.Layer
	fence *fenceRule
	thr   *thresholdState
	off   *offlineState
}

func newActive(r *Rule, c *compiled, now time.Time) *active {
	a := &active{spec: r, c: c, subj: twin.Layer(r.Subjects.Layer)}
	switch r.Kind {
	case KindGeofence:
		a.fence = newFenceRule(r)
	case KindThreshold:
		a.thr = &thresholdState{level: map[twin.ID]int{}}
	case KindOffline:
		a.off = &offlineState{down: map[twin.ID]bool{}, since: now}
	}
	return a
}

// carry keeps the runtime state of an unchanged rule across a reload.
func (a *active) carry(o *active) {
	if a.fence != nil && o.fence != nil {
		a.fence.state = o.fence.state
	}
	if a.thr != nil && o.thr != nil {
		a.thr = o.thr
	}
	if a.off != nil && o.off != nil {
		a.off = o.off
	}
}

func sameSpec(a, b *Rule) bool {
	ja, _ := jsonOf(a)
	jb, _ := jsonOf(b)
	return string(ja) == string(jb)
}

// severity returns the rule's alert colour (default yellow).
func (a *active) severity() string {
	if a.spec.Severity != "" {
		return a.spec.Severity
	}
	return "yellow"
}

func (a *active) tier() string {
	if a.spec.Tier != "" {
		return a.spec.Tier
	}
	return "street"
}

func (e *Engine) sla(tier string) time.Duration {
	if e.rs != nil {
		if d, ok := e.rs.SLA[tier]; ok && d > 0 {
			return time.Duration(d)
		}
	}
	if d, ok := e.opts.SLA[tier]; ok && d > 0 {
		return d
	}
	switch tier {
	case "street":
		return 10 * time.Minute
	case "district":
		return 30 * time.Minute
	}
	return 0
}
