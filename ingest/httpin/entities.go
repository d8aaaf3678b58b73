package httpin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/spatial/planar"
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
	if err := auth.CheckClientProps(in.Props); err != nil {
		httpx.Error(w, http.StatusBadRequest, "reserved property", err.Error())
		return
	}
	if !mayEdit(w, r, id) {
		return
	}
	if err := twin.ValidProps(in.Props); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad properties", err.Error())
		return
	}
	// Cheap checks first, so a huge or foreign geometry is refused before
	// the validity check and the H3 cover cost anything: its size, then
	// the caller's scope.
	if n := twin.VertexCount(in.Geometry); n > a.opts.MaxVertices {
		httpx.Error(w, http.StatusBadRequest, "geometry too large", map[string]int{"vertices": n, "max_vertices": a.opts.MaxVertices})
		return
	}
	old, existed := a.tw.Get(id)
	if existed && !sees(r, old) {
		notFound(w, id)
		return
	}
	if !a.placedInScope(w, r, id, in.Geometry) {
		return
	}
	if err := validIfPlaced(in.Geometry); err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad geometry", err.Error())
		return
	}
	nf := &twin.Feature{ID: id, Geometry: in.Geometry, Props: in.Props}
	if s, ok := in.Props.Get("source").(string); ok {
		nf.SetSource(s)
	}
	ch, err := a.tw.Put(nf)
	if err != nil {
		if errors.Is(err, twin.ErrConflict) {
			// Never the other object's id: it may be outside the caller's region.
			httpx.Error(w, http.StatusConflict, "name already in use", "telemetry names are unique across vehicles, workers and devices")
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
	if !mayEdit(w, r, id) {
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

// placedInScope refuses (403) a geometry that a region-scoped caller would
// place outside its region. The region path of an object is that of its
// representative point (twin/locate), so locating that one point is
// enough, and costs O(vertices) rather than an H3 cover of the shape.
func (a *API) placedInScope(w http.ResponseWriter, r *http.Request, id twin.ID, g orb.Geometry) bool {
	p, scoped := auth.FromContext(r.Context())
	if !scoped || a.opts.Enricher == nil || g == nil {
		return true
	}
	rep, ok := planar.Centroid(g)
	if !ok {
		return true // empty: ValidGeometry refuses it next
	}
	probe := &twin.Feature{ID: id}
	_, probe.Place = a.opts.Enricher.Locate(rep)
	if !p.Sees(probe) {
		httpx.Error(w, http.StatusForbidden, "geometry lies outside your region", map[string]string{"region": p.Region})
		return false
	}
	return true
}

// validIfPlaced checks a geometry with twin.ValidGeometry; null is allowed
// (a device registered before it is placed).
func validIfPlaced(g orb.Geometry) error {
	if g == nil {
		return nil
	}
	return twin.ValidGeometry(g)
}

// mayEdit refuses (403) changes to the city's skeleton, the regions and
// grids layers, by anyone but a city-level admin: they decide every
// object's region path, so a street token editing them could capture
// other districts' objects.
func mayEdit(w http.ResponseWriter, r *http.Request, id twin.ID) bool {
	if id.Layer != twin.Regions && id.Layer != twin.Grids {
		return true
	}
	if p := auth.Of(r.Context()); !p.IsCityAdmin() {
		httpx.Error(w, http.StatusForbidden, "only a city-level admin may change "+string(id.Layer), map[string]string{"role": string(p.Role), "region": p.Region})
		return false
	}
	return true
}
