package ogc

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// Route is one mounted OGC API endpoint (a Go 1.22 ServeMux pattern and its
// handler). Every route is a read: cmd/twin mounts them with read access.
type Route struct {
	Pattern string
	Handler http.Handler
}

// endpoint describes one path of the API: the handler, and what the API
// definition (/ogc/api) says about it. The query parameters listed here are
// the only ones the handler accepts (others answer 400), so the document
// and the behaviour cannot drift apart.
type endpoint struct {
	path    string // under /ogc, as an OpenAPI path template ("" = the landing page)
	opID    string
	summary string
	tag     string
	params  []string // query parameters, names in paramDefs
	// filters: the items endpoint also takes each queryable name as a
	// property filter (?kind=camera).
	filters bool
	formats []string // values f= may take; the first is the default
	media   string   // media type of a 200 answer
	schema  string   // components/schemas name of a 200 answer
	handler http.HandlerFunc
}

// endpoints is the API: what Routes mounts and what the API definition
// documents.
func (a *API) endpoints() []endpoint {
	return []endpoint{
		{path: "", opID: "getLandingPage", summary: "Landing page: links to the API definition, the conformance declaration and the collections", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: "application/json", schema: "landingPage", handler: a.Landing},
		{path: "/api", opID: "getAPI", summary: "This API definition (OpenAPI 3.0; f=html for a readable page)", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json", "html"}, media: openAPIMediaType, handler: a.APIDoc},
		{path: "/conformance", opID: "getConformanceDeclaration", summary: "The conformance classes this server implements", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: "application/json", schema: "confClasses", handler: a.Conformance},
		{path: "/collections", opID: "getCollections", summary: "The feature collections: one per twin layer", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: "application/json", schema: "collections", handler: a.Collections},
		{path: "/collections/{collectionId}", opID: "describeCollection", summary: "One collection: extent, links, what time its features carry", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: "application/json", schema: "collection", handler: a.Collection},
		{path: "/collections/{collectionId}/queryables", opID: "getQueryables", summary: "The names filters may use on the collection, as JSON Schema (Part 3)", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: schemaJSON, schema: "jsonSchema", handler: a.QueryablesHandler},
		{path: "/collections/{collectionId}/schema", opID: "getSchema", summary: "JSON Schema of one feature of the collection (its properties and their types)", tag: "Capabilities",
			params: []string{"f"}, formats: []string{"json"}, media: schemaJSON, schema: "jsonSchema", handler: a.FeatureSchemaHandler},
		{path: "/collections/{collectionId}/items", opID: "getFeatures", summary: "The collection's features, filtered and paged", tag: "Data",
			params:  []string{"bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang", "filter-crs", "f"},
			filters: true, formats: []string{"geojson", "json"}, media: geoJSON, schema: "featureCollectionGeoJSON", handler: a.Items},
		{path: "/collections/{collectionId}/items/{featureId}", opID: "getFeature", summary: "One feature", tag: "Data",
			params: []string{"f"}, formats: []string{"geojson", "json"}, media: geoJSON, schema: "featureGeoJSON", handler: a.Item},
	}
}

// Routes returns the OGC API's routes under /ogc, for the server to mount.
func (a *API) Routes() []Route {
	var out []Route
	for _, e := range a.endpoints() {
		out = append(out, Route{Pattern: "GET /ogc" + e.path, Handler: a.checked(e)})
	}
	return out
}

// checked wraps an endpoint's handler with the parameter rules of Part 1
// (/req/core/query-param-unknown, /req/core/query-param-invalid): a
// parameter the endpoint does not document, or an f= it cannot produce, is
// a 400 with the JSON error body, before the handler runs.
func (a *API) checked(e endpoint) http.Handler {
	allowed := map[string]bool{}
	for _, p := range e.params {
		allowed[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		if err := a.checkParams(r, e, allowed, v); err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad query parameter", err.Error())
			return
		}
		e.handler(w, r)
	})
}

func (a *API) checkParams(r *http.Request, e endpoint, allowed map[string]bool, v url.Values) error {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if allowed[k] {
			continue
		}
		if e.filters {
			l, err := twin.ParseLayer(r.PathValue("collectionId"))
			if err != nil {
				return nil // the handler answers 404
			}
			if a.IsQueryable(l, k) {
				continue
			}
			return fmt.Errorf("%q is neither a parameter of this endpoint (%s) nor a queryable of %s (see %s/collections/%s/queryables)",
				k, strings.Join(e.params, ", "), l, base(r), l)
		}
		return fmt.Errorf("%q is not a parameter of this endpoint (it takes %s)", k, strings.Join(e.params, ", "))
	}
	if f, ok := v["f"]; ok {
		if len(f) != 1 || !contains(e.formats, f[0]) {
			return fmt.Errorf("f=%s: this endpoint answers f=%s", strings.Join(f, ","), strings.Join(e.formats, ", f="))
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}
