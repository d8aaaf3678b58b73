package httpin

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// geoJSON is the media type of feature bodies (RFC 7946).
const geoJSON = "application/geo+json"

// PutEntity handles PUT /api/entities/{layer}/{name}: registers or replaces
// an object from a GeoJSON Feature (geometry may be null for a device not
// yet placed). Server-managed members in the body (version, region, grid,
// updated) are ignored; an "id" in the body must match the path. Answers
// 201 with the feature when created, 200 when updated.
func (a *API) PutEntity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var in twin.Feature
	if err := json.Unmarshal(body, &in); err != nil {
		httpx.Error(w, http.StatusBadRequest, "body is not a GeoJSON Feature", err.Error())
		return
	}
	if !in.ID.IsZero() && in.ID != id {
		httpx.Error(w, http.StatusBadRequest, "id in body does not match the path", map[string]string{"path": id.String(), "body": in.ID.String()})
		return
	}
	if err := validGeometry(in.Geometry); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad geometry", err.Error())
		return
	}
	old, existed := a.tw.Get(id)
	if existed && !sees(r, old) {
		notFound(w, id)
		return
	}
	nf := &twin.Feature{ID: id, Geometry: in.Geometry, Props: in.Props}
	if s, ok := in.Props["source"].(string); ok {
		nf.Source = s
	}
	if p, scoped := auth.FromContext(r.Context()); scoped && a.opts.Enricher != nil && nf.Geometry != nil {
		probe := &twin.Feature{ID: id, Props: nf.Props}
		probe.Cells, probe.Region, probe.Grid = a.opts.Enricher.Locate(nf.Geometry)
		if !p.Sees(probe) {
			httpx.Error(w, http.StatusForbidden, "geometry lies outside your region", map[string]string{"region": p.Region})
			return
		}
	}
	ch, err := a.tw.Put(nf)
	if err != nil {
		if errors.Is(err, twin.ErrConflict) {
			httpx.Error(w, http.StatusConflict, "name already in use", err.Error())
			return
		}
		httpx.Error(w, http.StatusBadRequest, "cannot register object", err.Error())
		return
	}
	status := http.StatusOK
	if ch.Old == nil {
		status = http.StatusCreated
	}
	httpx.ContentJSON(w, status, geoJSON, ch.New)
}

// GetEntity handles GET /api/entities/{layer}/{name}.
func (a *API) GetEntity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	f, ok := a.tw.Get(id)
	if !ok || !sees(r, f) {
		notFound(w, id)
		return
	}
	httpx.ContentJSON(w, http.StatusOK, geoJSON, f)
}

// DeleteEntity handles DELETE /api/entities/{layer}/{name}: 204 when removed.
func (a *API) DeleteEntity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	f, ok := a.tw.Get(id)
	if !ok || !sees(r, f) {
		notFound(w, id)
		return
	}
	if _, err := a.tw.Delete(id); err != nil {
		if errors.Is(err, twin.ErrNotFound) {
			notFound(w, id)
			return
		}
		httpx.Error(w, http.StatusInternalServerError, "cannot delete object", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// validGeometry checks that every coordinate is finite WGS84 lon/lat and
// that the geometry is a kind the model holds.
func validGeometry(g orb.Geometry) error {
	if g == nil {
		return nil
	}
	var bad error
	check := func(p orb.Point) {
		if bad != nil {
			return
		}
		if math.IsNaN(p[0]) || math.IsNaN(p[1]) || math.IsInf(p[0], 0) || math.IsInf(p[1], 0) {
			bad = fmt.Errorf("non-finite coordinate %v", p)
		} else if p[0] < -180 || p[0] > 180 || p[1] < -90 || p[1] > 90 {
			bad = fmt.Errorf("coordinate %v outside lon [-180,180], lat [-90,90]", p)
		}
	}
	var walk func(g orb.Geometry)
	walk = func(g orb.Geometry) {
		switch g := g.(type) {
		case orb.Point:
			check(g)
		case orb.MultiPoint:
			for _, p := range g {
				check(p)
			}
		case orb.LineString:
			if len(g) < 2 {
				bad = errors.New("a LineString needs at least 2 positions")
			}
			for _, p := range g {
				check(p)
			}
		case orb.MultiLineString:
			for _, l := range g {
				walk(l)
			}
		case orb.Polygon:
			for _, ring := range g {
				if len(ring) < 4 {
					bad = errors.New("a polygon ring needs at least 4 positions")
				}
				for _, p := range ring {
					check(p)
				}
			}
		case orb.MultiPolygon:
			for _, p := range g {
				walk(p)
			}
		case orb.Collection:
			for _, c := range g {
				walk(c)
			}
		default:
			bad = fmt.Errorf("unsupported geometry %T", g)
		}
	}
	walk(g)
	return bad
}
