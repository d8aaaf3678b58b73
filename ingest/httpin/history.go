package httpin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/paulmach/orb/geojson"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// historyFeature is one past state: a GeoJSON Point (null geometry for a
// sample without position, e.g. a sensor reading).
type historyFeature struct {
	Type       string            `json:"type"`
	Geometry   *geojson.Geometry `json:"geometry"`
	Properties historyProps      `json:"properties"`
}

type historyProps struct {
	TS       string        `json:"ts"`
	SpeedKmh *float64      `json:"speed_kmh,omitempty"`
	Heading  *float64      `json:"heading,omitempty"`
	Values   twin.Readings `json:"values,omitzero"`
}

type historyCollection struct {
	Type     string           `json:"type"`
	ID       string           `json:"id"`
	Features []historyFeature `json:"features"`
}

// History handles GET /api/entities/{layer}/{name}/history?from=&to=&limit=&order=:
// the object's stored samples with from <= ts < to (RFC 3339, both
// optional) as a GeoJSON FeatureCollection, the latest first (order=desc,
// the default: an inspector wants the recent track) or the oldest first
// (order=asc). limit defaults to DefaultHistoryLimit and is capped at
// MaxHistoryLimit. 404 when the object is not in the twin (or out of scope).
func (a *API) History(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	f, ok := a.tw.Get(id)
	if !ok || !sees(r, f) {
		notFound(w, id)
		return
	}
	q := r.URL.Query()
	var from, to time.Time
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				httpx.Error(w, http.StatusBadRequest, "bad "+p.name, "want RFC 3339, e.g. 2026-03-01T08:00:00+08:00")
				return
			}
			*p.dst = t
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		httpx.Error(w, http.StatusBadRequest, "empty time range", "from must be before to")
		return
	}
	limit := a.opts.DefaultHistoryLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			httpx.Error(w, http.StatusBadRequest, "bad limit", "want a positive integer")
			return
		}
		limit = min(n, a.opts.MaxHistoryLimit)
	}
	var samples []twin.Sample
	var err error
	switch q.Get("order") {
	case "", "desc":
		samples, err = a.latest(r.Context(), f, from, to, limit)
	case "asc":
		samples, err = a.st.History(r.Context(), id, from, to, limit)
	default:
		httpx.Error(w, http.StatusBadRequest, "bad order", "want asc or desc (the default)")
		return
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, twin.ErrStoreUnavailable) {
			status = http.StatusServiceUnavailable
		}
		a.log.Error("history read failed", "id", id.String(), "err", err)
		httpx.Error(w, status, "cannot read history", err.Error())
		return
	}
	out := historyCollection{Type: "FeatureCollection", ID: id.String(), Features: make([]historyFeature, 0, len(samples))}
	for _, s := range samples {
		hf := historyFeature{Type: "Feature", Properties: historyProps{TS: s.Time.UTC().Format(time.RFC3339Nano), Values: s.Values}}
		if s.HasPos {
			hf.Geometry = geojson.NewGeometry(s.Pos)
		}
		if s.HasSpeed {
			v := s.SpeedKmh
			hf.Properties.SpeedKmh = &v
		}
		if s.HasHeading {
			v := s.Heading
			hf.Properties.Heading = &v
		}
		out.Features = append(out.Features, hf)
	}
	httpx.ContentJSON(w, http.StatusOK, geoJSON, out)
}

// latest returns up to limit of f's samples with from <= ts < to, newest
// first. The store reads oldest first, so it is asked for windows walking
// back in time from to (or just after f's newest sample): a window that
// comes back full is halved (the object is dense there), one that leaves
// the answer short doubles the next. Each read is bounded, so the memory
// of a request stays bounded whatever the history; the walk stops at
// from, or at twin.MinTime (no sample is older).
func (a *API) latest(ctx context.Context, f *twin.Feature, from, to time.Time, limit int) ([]twin.Sample, error) {
	end := to
	if end.IsZero() {
		end = a.opts.Clock.Now().Add(24 * time.Hour)
		if obs := f.Observed.Time(); !obs.IsZero() && obs.Before(end) {
			end = obs.Add(time.Microsecond)
		}
	}
	floor := from
	if floor.Before(twin.MinTime) {
		floor = twin.MinTime
	}
	page := min(max(4*limit, 1024), a.opts.MaxHistoryLimit)
	span := 10 * time.Minute
	out := make([]twin.Sample, 0, min(limit, 1024))
	for len(out) < limit && end.After(floor) {
		start := end.Add(-span)
		if start.Before(floor) {
			start = floor
		}
		ss, err := a.st.History(ctx, f.ID, start, end, page)
		if err != nil {
			return nil, err
		}
		if len(ss) >= page && end.Sub(start) > time.Microsecond {
			span = end.Sub(start) / 2 // dense: read a narrower window
			continue
		}
		for k := len(ss) - 1; k >= 0 && len(out) < limit; k-- {
			out = append(out, ss[k])
		}
		end = start
		if len(ss) < page/4 {
			span *= 2
		}
	}
	return out, nil
}
