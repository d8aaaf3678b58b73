// Package indicators keeps CityTwin's figures over time (CONTRACT §5
// GET /api/regions/{code}/indicators): per region (city, district, street)
// and per hour and day, alerts raised and closed by colour, incidents and
// tasks by the state they entered, the 1-5-10 SLA outcome of each incident
// step, median times to accept, arrive and resolve, and gauges sampled from
// running counts (open alerts, open incidents and tasks by state, overdue
// tasks, devices online, workers on duty).
//
// The figures are computed from the twin's change feed as it happens (a
// required feed consumer, like the store writer), never by rescanning the
// twin, and kept in the store (twin.IndicatorStore) with the consumer's
// position and its per-object summaries, in one atomic write.
//
// Counting is idempotent per object: each event (an alert raised or
// closed, an incident entering a state, an SLA step's outcome, a task
// entering a state) is derived from the object's own props and timestamps
// (alerts' first/closed_at, incidents' reported_at ... closed_at and sla
// deadlines) and marked as counted in the object's summary. Applying the
// same state twice, a change replayed after a restart, or a reconciliation
// against the twin loaded from the store counts nothing twice; a state the
// consumer missed (a crash after the store writer flushed but before the
// consumer did) is counted when it is reconciled at the next start, at the
// times the object records. So the figures equal those recomputed from
// the stored objects.
package indicators

import (
	"sort"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// Steps of a series.
const (
	Hour = "hour"
	Day  = "day"
)

// Incident lifecycle states (governance/incidents) and the prop holding
// the time each was entered.
var incidentStates = []struct{ state, at string }{
	{"reported", "reported_at"}, {"dispatched", "dispatched_at"}, {"accepted", "accepted_at"},
	{"arrived", "arrived_at"}, {"resolved", "resolved_at"}, {"closed", "closed_at"},
}

// slaSteps are the 1-5-10 steps: the deadline key in props.sla, the prop
// of the action that ends the step, and the bit marking its outcome as
// counted in an incident's summary.
var slaSteps = []struct{ step, by, at string }{
	{"accept", "accept_by", "accepted_at"},
	{"arrive", "arrive_by", "arrived_at"},
	{"report", "report_by", "resolved_at"},
}

// durations are the median times: from one incident prop to another, taken
// when the later one appears (time to resolve is from the report, as the
// citizen waits).
var durations = []struct{ name, from, to string }{
	{"accept", "dispatched_at", "accepted_at"},
	{"arrive", "accepted_at", "arrived_at"},
	{"resolve", "reported_at", "resolved_at"},
}

// Task states (CONTRACT §8) and the prop holding the time each was entered
// (when the tasks layer records it; else the change's time is used).
var taskStates = []struct{ state, at string }{
	{"issued", "issued_at"}, {"acked", "acked_at"}, {"reported", "reported_at"}, {"closed", "closed_at"},
}

// Bits of objSum.Done.
const (
	doneRaised = 1 << 0 // alert raised counted
	doneClosed = 1 << 1 // alert closed counted
	// incidents: bit i for incidentStates[i], bit 8+j for slaSteps[j]
	// tasks: bit i for taskStates[i]
	slaBit = 8
)

// objSum is what the consumer remembers of one counted object: enough to
// move its gauge contributions and to never count one of its events twice.
// It is stored (JSON) with the buckets.
type objSum struct {
	L    twin.Layer `json:"l"`
	R    []string   `json:"r,omitempty"` // region codes it counts in
	S    string     `json:"s,omitempty"` // state (alerts, incidents, tasks) or status (devices, workers)
	C    string     `json:"c,omitempty"` // alert colour
	Due  int64      `json:"due,omitempty"`
	Done uint32     `json:"d,omitempty"`
}

func (s *objSum) equal(o *objSum) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.L != o.L || s.S != o.S || s.C != o.C || s.Due != o.Due || s.Done != o.Done || len(s.R) != len(o.R) {
		return false
	}
	for i := range s.R {
		if s.R[i] != o.R[i] {
			return false
		}
	}
	return true
}

// tracked reports whether the layer is counted.
func tracked(l twin.Layer) bool {
	switch l {
	case twin.Alerts, twin.Incidents, twin.Tasks, twin.Devices, twin.Workers:
		return true
	}
	return false
}

// trackedLayers are ranged at a reconciliation.
var trackedLayers = []twin.Layer{twin.Alerts, twin.Incidents, twin.Tasks, twin.Devices, twin.Workers}

// figures is one bucket of one region: flows counted at their event time,
// and the gauges last sampled in it. Stored as JSON (the row's Data).
type figures struct {
	AlertsRaised     map[string]int      `json:"alerts_raised,omitempty"`
	AlertsClosed     map[string]int      `json:"alerts_closed,omitempty"`
	IncidentsEntered map[string]int      `json:"incidents_entered,omitempty"`
	TasksEntered     map[string]int      `json:"tasks_entered,omitempty"`
	SLA              map[string]*Outcome `json:"sla,omitempty"`
	Durations        map[string]*samples `json:"durations,omitempty"`
	Gauges           *Gauges             `json:"gauges,omitempty"`
}

// Outcome counts an SLA step's outcomes.
type Outcome struct {
	Met      int `json:"met"`
	Breached int `json:"breached"`
}

// samples are one bucket's durations in ms. Medians are exact: every
// duration is kept up to maxSamples per bucket (an hour of a street, or a
// day of the city, sees far fewer incidents); beyond that N keeps counting
// and the list is a uniform reservoir sample, and the series says the
// median is then an estimate. A mergeable sketch (t-digest, DDSketch)
// would bound memory further but never give the exact median the 1-5-10
// reviews quote, and buckets are never merged here (each region has its
// own), which is what a sketch would buy.
type samples struct {
	N  int     `json:"n"`
	MS []int64 `json:"ms"`
}

// Gauges are running counts sampled into a bucket.
type Gauges struct {
	At            time.Time      `json:"at"`
	AlertsOpen    map[string]int `json:"alerts_open"`    // open or acked, by colour
	IncidentsOpen map[string]int `json:"incidents_open"` // every state but closed
	TasksOpen     map[string]int `json:"tasks_open"`     // every state but closed
	TasksOverdue  int            `json:"tasks_overdue"`  // open past due
	DevicesOnline int            `json:"devices_online"`
	DevicesTotal  int            `json:"devices_total"`
	WorkersOnDuty int            `json:"workers_on_duty"` // available or busy
	WorkersTotal  int            `json:"workers_total"`
}

// sameCounts compares gauges without their sampling time.
func (g *Gauges) sameCounts(o *Gauges) bool {
	if g == nil || o == nil {
		return g == o
	}
	return sameMap(g.AlertsOpen, o.AlertsOpen) && sameMap(g.IncidentsOpen, o.IncidentsOpen) && sameMap(g.TasksOpen, o.TasksOpen) &&
		g.TasksOverdue == o.TasksOverdue && g.DevicesOnline == o.DevicesOnline && g.DevicesTotal == o.DevicesTotal &&
		g.WorkersOnDuty == o.WorkersOnDuty && g.WorkersTotal == o.WorkersTotal
}

func sameMap(a, b map[string]int) bool {
	n := 0
	for k, v := range a {
		if v == 0 {
			continue
		}
		n++
		if b[k] != v {
			return false
		}
	}
	for _, v := range b {
		if v != 0 {
			n--
		}
	}
	return n == 0
}

func (g *Gauges) clone() *Gauges {
	c := *g
	c.AlertsOpen, c.IncidentsOpen, c.TasksOpen = cloneMap(g.AlertsOpen), cloneMap(g.IncidentsOpen), cloneMap(g.TasksOpen)
	return &c
}

func cloneMap(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		if v != 0 {
			c[k] = v
		}
	}
	return c
}

func inc(m *map[string]int, k string, d int) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k] += d
	if (*m)[k] == 0 {
		delete(*m, k)
	}
}

// median returns the median of ms (sorted copy), in seconds.
func median(ms []int64) float64 {
	s := append([]int64(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return float64(s[n/2]) / 1000
	}
	return float64(s[n/2-1]+s[n/2]) / 2000
}

// bucketStart is the start of the bucket holding t: hours are whole hours,
// days start at midnight in loc (the city's time zone).
func bucketStart(step string, t time.Time, loc *time.Location) time.Time {
	if step == Day {
		l := t.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc).UTC()
	}
	return t.UTC().Truncate(time.Hour)
}

// bucketEnd is the start of the next bucket.
func bucketEnd(step string, start time.Time, loc *time.Location) time.Time {
	if step == Day {
		l := start.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc).UTC()
	}
	return start.Add(time.Hour)
}

// regionPath is the region path a region code lies on (city, district,
// street), as auth scopes codes.
func regionPath(code string) []string {
	path := []string{auth.CityCode}
	if len(code) >= 6 && code != auth.CityCode {
		path = append(path, code[:6])
	}
	if len(code) > 6 {
		path = append(path, code)
	}
	return path
}
