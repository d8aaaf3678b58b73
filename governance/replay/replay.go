// Package replay serves GET /api/snapshot?at=T&layers=&bbox= (CONTRACT §5):
// the objects of the replayable layers as they were at time T, from the
// store's timeline (twin/timeline), scoped by the caller's token like every
// other surface.
package replay

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/ogc"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/timeline"
)

// Handler serves GET /api/snapshot.
type Handler struct {
	rd  *timeline.Reader
	clk clock.Clock
}

// New makes the handler; clk (default the wall clock) bounds at: a time
// in the future is refused.
func New(rd *timeline.Reader, clk clock.Clock) *Handler {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Handler{rd: rd, clk: clk}
}

// ParseQuery validates the snapshot parameters: at (RFC 3339 or epoch ms,
// required, not after now), layers (comma-separated replayable layers;
// default all of them), bbox (w,s,e,n). Any other parameter is an error.
func ParseQuery(v url.Values, now time.Time) (timeline.Query, error) {
	var q timeline.Query
	for k := range v {
		if k != "at" && k != "layers" && k != "bbox" && k != "access_token" {
			return q, fmt.Errorf("unknown parameter %q (want at, layers, bbox)", k)
		}
	}
	at, err := timeline.ParseAt(v.Get("at"))
	if err != nil {
		return q, err
	}
	if at.After(now) {
		return q, errors.New("at: in the future")
	}
	q.At = at
	if s := v.Get("layers"); s != "" {
		for _, name := range strings.Split(s, ",") {
			l, err := twin.ParseLayer(strings.TrimSpace(name))
			if err != nil {
				return q, fmt.Errorf("layers: %w", err)
			}
			if !timeline.Replayable(l) {
				return q, fmt.Errorf("layers: %s is not replayable (want some of %v; the city's frame is in the live tiles)", l, timeline.ReplayableLayers())
			}
			if !slices.Contains(q.Layers, l) {
				q.Layers = append(q.Layers, l)
			}
		}
	} else {
		q.Layers = timeline.ReplayableLayers()
	}
	if s := v.Get("bbox"); s != "" {
		b, err := ogc.ParseBBox(s)
		if err != nil {
			return q, err
		}
		q.BBox, q.HasBBox = b, true
	}
	return q, nil
}

// ServeHTTP answers a GeoJSON FeatureCollection with "at" as a foreign member.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), h.clk.Now())
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad snapshot query", err.Error())
		return
	}
	p := auth.Of(r.Context())
	q.Sees = p.Sees
	fs, err := h.rd.Snapshot(r.Context(), q)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		status := http.StatusInternalServerError
		if errors.Is(err, twin.ErrStoreUnavailable) {
			status = http.StatusServiceUnavailable
		}
		httpx.Error(w, status, "snapshot failed", err.Error())
		return
	}
	if fs == nil {
		fs = []*twin.Feature{}
	}
	httpx.ContentJSON(w, http.StatusOK, "application/geo+json", map[string]any{
		"type": "FeatureCollection", "at": q.At.UTC().Format(time.RFC3339Nano), "numberReturned": len(fs), "features": fs})
}
