package indicators

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// MaxBuckets bounds one series (a quarter of a year of hours, ten years of
// days would be more than a trend chart draws).
const MaxBuckets = 2400

// Series is the answer of GET /api/regions/{code}/indicators: one bucket
// per step from `from` to `to`, every bucket present (zeros where nothing
// happened). The shape is stable for clients (README "Indicators").
type Series struct {
	Region string   `json:"region"`
	Name   string   `json:"name,omitempty"`
	Level  string   `json:"level,omitempty"`
	Step   string   `json:"step"`
	From   string   `json:"from"`
	To     string   `json:"to"`
	TZ     string   `json:"tz"` // the city's UTC offset; days start at its midnight
	Bucket []Bucket `json:"buckets"`
}

// Bucket is one step of a series.
type Bucket struct {
	Start            string              `json:"start"`
	End              string              `json:"end"`
	AlertsRaised     map[string]int      `json:"alerts_raised"`     // by colour
	AlertsClosed     map[string]int      `json:"alerts_closed"`     // by colour at closing
	IncidentsEntered map[string]int      `json:"incidents_entered"` // by state entered
	TasksEntered     map[string]int      `json:"tasks_entered"`     // by state entered
	SLA              map[string]SLAStep  `json:"sla"`               // accept, arrive, report
	MedianS          map[string]*float64 `json:"median_s"`          // accept, arrive, resolve; null without samples
	Samples          map[string]int      `json:"samples"`           // durations behind each median
	MedianExact      bool                `json:"median_exact"`      // false once a bucket held more than MaxSamples
	Gauges           *Gauges             `json:"gauges"`            // last sampled in the bucket; null if never
}

// SLAStep is one step's outcomes in a bucket.
type SLAStep struct {
	Met        int      `json:"met"`
	Breached   int      `json:"breached"`
	Compliance *float64 `json:"compliance"` // met / (met + breached); null when none
}

// ErrBadParams answers a malformed query (400).
var ErrBadParams = errors.New("bad parameters")

// Query is a parsed request.
type Query struct {
	Step     string
	From, To time.Time // bucket-aligned, To exclusive
}

// ParseQuery reads step (hour or day; default hour), from and to (RFC 3339
// or epoch milliseconds; default the last 24 hours or 30 days up to now)
// and aligns them to whole buckets. Unknown parameters are refused.
func ParseQuery(v url.Values, now time.Time, loc *time.Location) (Query, error) {
	for k := range v {
		if k != "step" && k != "from" && k != "to" {
			return Query{}, fmt.Errorf("%w: unknown parameter %q (step, from, to)", ErrBadParams, k)
		}
	}
	q := Query{Step: v.Get("step")}
	switch q.Step {
	case "":
		q.Step = Hour
	case Hour, Day:
	default:
		return Query{}, fmt.Errorf("%w: step %q: want hour or day", ErrBadParams, q.Step)
	}
	to, err := parseTime(v, "to", now)
	if err != nil {
		return Query{}, err
	}
	span := 24 * time.Hour
	if q.Step == Day {
		span = 30 * 24 * time.Hour
	}
	from, err := parseTime(v, "from", to.Add(-span))
	if err != nil {
		return Query{}, err
	}
	if !from.Before(to) {
		return Query{}, fmt.Errorf("%w: from must be before to", ErrBadParams)
	}
	q.From = bucketStart(q.Step, from, loc)
	q.To = bucketStart(q.Step, to, loc)
	if q.To.Before(to) {
		q.To = bucketEnd(q.Step, q.To, loc)
	}
	n := 0
	for t := q.From; t.Before(q.To); t = bucketEnd(q.Step, t, loc) {
		if n++; n > MaxBuckets {
			return Query{}, fmt.Errorf("%w: more than %d %s buckets between from and to", ErrBadParams, MaxBuckets, q.Step)
		}
	}
	return q, nil
}

func parseTime(v url.Values, key string, def time.Time) (time.Time, error) {
	s := v.Get(key)
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Year() < 1970 || t.Year() > 9999 {
			return time.Time{}, fmt.Errorf("%w: %s %q out of range", ErrBadParams, key, s)
		}
		return t, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 && ms < 253402300800000 {
		return time.UnixMilli(ms), nil
	}
	return time.Time{}, fmt.Errorf("%w: %s %q: want RFC 3339 or epoch milliseconds", ErrBadParams, key, s)
}

// Series reads one region's figures: the stored rows, overlaid with the
// buckets this server's consumer holds and has not flushed yet.
func (s *Service) Series(ctx context.Context, region string, q Query) (Series, error) {
	rows, err := s.st.Indicators(ctx, region, q.Step, q.From, q.To)
	if err != nil {
		return Series{}, err
	}
	byStart := map[int64]*figures{}
	for _, r := range rows {
		g, err := decodeFigures(r.Data)
		if err != nil {
			return Series{}, err
		}
		byStart[r.Start.Unix()] = g
	}
	out := Series{Region: region, Step: q.Step, From: stamp(q.From), To: stamp(q.To), TZ: q.From.In(s.opts.Location).Format("-07:00")}
	s.mu.Lock()
	for k, g := range s.agg.buckets {
		if _, dirty := s.agg.dirty[k]; dirty && k.region == region && k.step == q.Step && k.start >= q.From.Unix() && k.start < q.To.Unix() {
			byStart[k.start] = g
		}
	}
	for t := q.From; t.Before(q.To); t = bucketEnd(q.Step, t, s.opts.Location) {
		out.Bucket = append(out.Bucket, toBucket(byStart[t.Unix()], t, bucketEnd(q.Step, t, s.opts.Location)))
	}
	s.mu.Unlock()
	return out, nil
}

// toBucket renders one bucket's figures (nil: an empty bucket). Called
// with s.mu held when g is the consumer's.
func toBucket(g *figures, start, end time.Time) Bucket {
	b := Bucket{Start: stamp(start), End: stamp(end), AlertsRaised: map[string]int{}, AlertsClosed: map[string]int{},
		IncidentsEntered: map[string]int{}, TasksEntered: map[string]int{}, SLA: map[string]SLAStep{},
		MedianS: map[string]*float64{}, Samples: map[string]int{}, MedianExact: true}
	if g == nil {
		g = &figures{}
	}
	copyInto(b.AlertsRaised, g.AlertsRaised)
	copyInto(b.AlertsClosed, g.AlertsClosed)
	copyInto(b.IncidentsEntered, g.IncidentsEntered)
	copyInto(b.TasksEntered, g.TasksEntered)
	for _, st := range slaSteps {
		var o Outcome
		if p := g.SLA[st.step]; p != nil {
			o = *p
		}
		step := SLAStep{Met: o.Met, Breached: o.Breached}
		if n := o.Met + o.Breached; n > 0 {
			c := float64(o.Met) / float64(n)
			step.Compliance = &c
		}
		b.SLA[st.step] = step
	}
	for _, d := range durations {
		b.MedianS[d.name] = nil
		b.Samples[d.name] = 0
		if p := g.Durations[d.name]; p != nil && len(p.MS) > 0 {
			m := median(p.MS)
			b.MedianS[d.name] = &m
			b.Samples[d.name] = p.N
			if p.N > len(p.MS) {
				b.MedianExact = false
			}
		}
	}
	if g.Gauges != nil {
		b.Gauges = g.Gauges.clone()
		b.Gauges.AlertsOpen, b.Gauges.IncidentsOpen, b.Gauges.TasksOpen = nonNil(b.Gauges.AlertsOpen), nonNil(b.Gauges.IncidentsOpen), nonNil(b.Gauges.TasksOpen)
	}
	return b
}

func copyInto(dst, src map[string]int) {
	for k, v := range src {
		if v != 0 {
			dst[k] = v
		}
	}
}

func nonNil(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Handler serves GET /api/regions/{code}/indicators, scoped like /summary:
// a token sees the series of its own region and the regions inside it.
func (s *Service) Handler(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if code == "" || len(code) > 12 || strings.Trim(code, "0123456789") != "" {
		httpx.Error(w, http.StatusBadRequest, "bad region code", "want a GB/T 2260 code such as 500105")
		return
	}
	p := auth.Of(r.Context())
	region, ok := s.tw.Get(twin.NewID(twin.Regions, code))
	if code != auth.CityCode && (!ok || !p.Sees(region)) {
		httpx.Error(w, http.StatusNotFound, "not found", "region "+code)
		return
	}
	if !p.Sees(&twin.Feature{Place: twin.NewPlace(regionPath(code), "")}) {
		httpx.Error(w, http.StatusNotFound, "not found", "region "+code)
		return
	}
	q, err := ParseQuery(r.URL.Query(), s.opts.Clock.Now(), s.opts.Location)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad indicators query", err.Error())
		return
	}
	out, err := s.Series(r.Context(), code, q)
	if err != nil {
		httpx.Error(w, http.StatusServiceUnavailable, "indicators unavailable", err.Error())
		return
	}
	if region != nil {
		out.Name, out.Level = region.Prop("name"), region.Prop("level")
	}
	httpx.JSON(w, http.StatusOK, out)
}
