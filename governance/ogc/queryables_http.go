package ogc

import (
	"net/http"
	"strings"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// keyProps are the props CONTRACT §2 names for each layer, with their types.
// They are queryable even while no object of the layer carries them (a
// client filtering alerts by rule before the first alert fires gets an
// empty page, not a 400), and their type wins over the one the values
// suggest: a heading of 249.0 or a speed of 0 looks integral, but a client
// that made it an integer column would cut the next 12.5.
var keyProps = map[twin.Layer][]Queryable{
	twin.Regions:   {{Name: "level", Type: "string"}, {Name: "code", Type: "string"}, {Name: "name", Type: "string"}, {Name: "parent", Type: "string"}},
	twin.Grids:     {{Name: "code", Type: "string"}, {Name: "street", Type: "string"}, {Name: "workers", Type: "integer"}},
	twin.Roads:     {{Name: "name", Type: "string"}, {Name: "class", Type: "string"}, {Name: "oneway", Type: "boolean"}},
	twin.Bridges:   {{Name: "name", Type: "string"}, {Name: "restrictions", Type: "object"}},
	twin.Rivers:    {{Name: "name", Type: "string"}},
	twin.Buildings: {{Name: "name", Type: "string"}, {Name: "height_m", Type: "number"}, {Name: "levels", Type: "integer"}, {Name: "high_rise", Type: "boolean"}, {Name: "fire_code", Type: "string"}, {Name: "risk_level", Type: "integer"}, {Name: "risk_color", Type: "string"}, {Name: "owners", Type: "array"}},
	twin.Devices:   {{Name: "kind", Type: "string"}, {Name: "attached_to", Type: "string"}, {Name: "values", Type: "object"}, {Name: "status", Type: "string"}},
	twin.Vehicles:  {{Name: "kind", Type: "string"}, {Name: "plate", Type: "string"}, {Name: "speed_kmh", Type: "number"}, {Name: "heading", Type: "number"}},
	twin.Workers:   {{Name: "status", Type: "string"}}, // grid is a member of every object
	twin.Incidents: {{Name: "type", Type: "string"}, {Name: "state", Type: "string"}, {Name: "sla", Type: "object"}, {Name: "assignee", Type: "string"}, {Name: "reports", Type: "integer"}},
	twin.Alerts:    {{Name: "rule", Type: "string"}, {Name: "severity", Type: "string"}, {Name: "subject", Type: "string"}, {Name: "state", Type: "string"}, {Name: "tier", Type: "string"}},
	twin.Tasks: {{Name: "kind", Type: "string"}, {Name: "state", Type: "string"}, {Name: "subject", Type: "string"}, {Name: "assignee", Type: "string"},
		{Name: "tier", Type: "string"}, {Name: "due", Type: "string"}, {Name: "overdue", Type: "boolean"}, {Name: "directive", Type: "string"}, {Name: "outcome", Type: "string"}},
	twin.Directives: {{Name: "title", Type: "string"}, {Name: "issuer", Type: "string"}, {Name: "due", Type: "string"}, {Name: "targets", Type: "array"}},
}

// IsQueryable reports whether name may be used in a filter on layer l (see
// Queryables); a name not yet known triggers one rescan of the layer.
func (a *API) IsQueryable(l twin.Layer, name string) bool {
	_, ok := a.lookupFor(l)(name)
	return ok
}

// queryablesDoc is the Part 3 queryables document of a layer: a JSON Schema
// whose properties are the queryables.
func (a *API) queryablesDoc(r *http.Request, l twin.Layer) map[string]any {
	props := map[string]any{}
	for _, q := range a.Queryables(l).List {
		s := q.Schema()
		if q.IsGeometry() {
			s["x-ogc-role"] = "primary-geometry"
		}
		props[q.Name] = s
	}
	return map[string]any{
		"$schema":              "https://json-schema.org/draft/2019-09/schema",
		"$id":                  base(r) + "/collections/" + string(l) + "/queryables",
		"type":                 "object",
		"title":                string(l),
		"description":          "Names a property filter (?name=value) or a CQL2 filter may use on " + string(l) + ".",
		"properties":           props,
		"additionalProperties": false,
	}
}

// QueryablesHandler serves GET /ogc/collections/{collectionId}/queryables.
func (a *API) QueryablesHandler(w http.ResponseWriter, r *http.Request) {
	l, ok := a.layerOf(w, r)
	if !ok {
		return
	}
	httpx.ContentJSON(w, http.StatusOK, schemaMediaType(r), a.queryablesDoc(r, l))
}

// FeatureSchemaHandler serves GET /ogc/collections/{collectionId}/schema:
// the JSON Schema of one GeoJSON feature of the layer, linked from the
// collection as describedBy. GDAL reads its field list from it instead of
// guessing from the first page, so props absent from the first features
// (attached_to, values on most devices) still become fields. Integral
// numbers are declared number unless the contract says integer (see
// keyProps).
func (a *API) FeatureSchemaHandler(w http.ResponseWriter, r *http.Request) {
	l, ok := a.layerOf(w, r)
	if !ok {
		return
	}
	declared := map[string]bool{}
	for _, q := range keyProps[l] {
		declared[q.Name] = true
	}
	props := map[string]any{}
	var geom map[string]any
	for _, q := range a.Queryables(l).List {
		switch {
		case q.IsGeometry():
			geom = q.Schema()
		case isFixed(q.Name):
		default:
			if q.Type == "integer" && !declared[q.Name] {
				q.Type = "number"
			}
			props[q.Name] = q.Schema()
		}
	}
	httpx.ContentJSON(w, http.StatusOK, schemaMediaType(r), map[string]any{
		"$schema":  "https://json-schema.org/draft/2019-09/schema",
		"$id":      base(r) + "/collections/" + string(l) + "/schema",
		"title":    string(l),
		"type":     "object",
		"required": []string{"type", "geometry", "properties"},
		"properties": map[string]any{
			"type":       map[string]any{"type": "string", "enum": []string{"Feature"}},
			"id":         map[string]any{"type": "string"},
			"geometry":   geom,
			"properties": map[string]any{"type": "object", "properties": props},
		},
	})
}

// isFixed reports whether name is one of the twin's own members, which the
// GeoJSON carries beside "properties", not inside it.
func isFixed(name string) bool {
	_, ok := indexOf(fixedQueryables, name)
	return ok
}

const schemaJSON = "application/schema+json"

// schemaMediaType is application/schema+json unless the client asked only
// for plain JSON (GDAL 3.6 fetches queryables with "application/geo+json,
// application/json" and rejects any other answer): a JSON Schema is JSON.
func schemaMediaType(r *http.Request) string {
	acc := r.Header.Get("Accept")
	if acc != "" && !strings.Contains(acc, schemaJSON) && !strings.Contains(acc, "*/*") && strings.Contains(acc, "json") {
		return "application/json"
	}
	return schemaJSON
}
