package ogc

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// openAPIMediaType is the media type of the API definition (OGC API Features
// Part 1, /req/oas30/oas-definition-2).
const openAPIMediaType = "application/vnd.oai.openapi+json;version=3.0"

// paramDefs documents every query parameter an endpoint may list (f is
// built per endpoint: its values differ).
func (a *API) paramDefs() map[string]map[string]any {
	q := func(name, desc string, schema map[string]any) map[string]any {
		return map[string]any{"name": name, "in": "query", "required": false, "description": desc, "schema": schema}
	}
	bbox := q("bbox", "Only features whose geometry intersects the box (exactly, not by envelope) and features without a geometry are selected. "+
		"minLon,minLat,maxLon,maxLat in WGS84 (CRS84), or 6 numbers with heights (ignored); minLon > maxLon crosses the antimeridian.",
		map[string]any{"type": "array", "minItems": 4, "maxItems": 6, "items": map[string]any{"type": "number"}})
	bbox["style"], bbox["explode"] = "form", false
	return map[string]map[string]any{
		"bbox":     bbox,
		"bbox-crs": q("bbox-crs", "CRS of bbox; only CRS84.", map[string]any{"type": "string", "format": "uri", "enum": []string{CRS84}}),
		"datetime": q("datetime", "An RFC 3339 instant or an interval a/b with .. or an empty string for an open end. "+
			"Features whose time (their `updated` instant) lies inside it are selected, and every feature without a time "+
			"(OGC API Features Part 1, /req/core/fc-time-response). Each collection's description says what time its features carry.",
			map[string]any{"type": "string"}),
		"limit": q("limit", "Page size. Larger values are cut to the maximum.",
			map[string]any{"type": "integer", "minimum": 1, "maximum": a.opts.MaxLimit, "default": a.opts.DefaultLimit}),
		"offset": q("offset", "Features to skip (the next and prev links carry it).",
			map[string]any{"type": "integer", "minimum": 0, "default": 0}),
		"filter": q("filter", "A CQL2-text expression (OGC API Features Part 3) over the collection's queryables.",
			map[string]any{"type": "string"}),
		"filter-lang": q("filter-lang", "Language of filter: cql2-text (cql-text, its draft name, is accepted as the same).",
			map[string]any{"type": "string", "enum": []string{"cql2-text", "cql-text"}, "default": "cql2-text"}),
		"filter-crs": q("filter-crs", "CRS of geometries in filter; only CRS84.", map[string]any{"type": "string", "format": "uri", "enum": []string{CRS84}}),
	}
}

var pathParams = map[string]map[string]any{
	"collectionId": {"name": "collectionId", "in": "path", "required": true, "description": "a twin layer",
		"schema": map[string]any{"type": "string", "enum": twin.Layers}},
	"featureId": {"name": "featureId", "in": "path", "required": true, "description": "the object's name, or its full id {layer}/{name}",
		"schema": map[string]any{"type": "string"}},
}

func ref(kind, name string) map[string]any {
	return map[string]any{"$ref": "#/components/" + kind + "/" + name}
}

// operation documents one endpoint; extra are further inline parameters
// (a collection's queryables as property filters).
func (e endpoint) operation(extra []map[string]any) map[string]any {
	var params []any
	for _, seg := range strings.Split(e.path, "/") {
		if strings.HasPrefix(seg, "{") {
			params = append(params, ref("parameters", strings.Trim(seg, "{}")))
		}
	}
	for _, p := range e.params {
		if p == "f" {
			params = append(params, map[string]any{"name": "f", "in": "query", "required": false,
				"description": "Output format (instead of the Accept header).",
				"schema":      map[string]any{"type": "string", "enum": e.formats, "default": e.formats[0]}})
			continue
		}
		params = append(params, ref("parameters", p))
	}
	for _, p := range extra {
		params = append(params, p)
	}
	ok := map[string]any{"description": e.summary}
	content := map[string]any{}
	if e.schema != "" {
		content[e.media] = map[string]any{"schema": ref("schemas", e.schema)}
	} else {
		content[e.media] = map[string]any{"schema": map[string]any{"type": "object"}}
	}
	if contains(e.formats, "html") {
		content["text/html"] = map[string]any{"schema": map[string]any{"type": "string"}}
	}
	ok["content"] = content
	responses := map[string]any{"200": ok, "400": ref("responses", "badRequest"), "401": ref("responses", "unauthorized")}
	if strings.Contains(e.path, "{") {
		responses["404"] = ref("responses", "notFound")
	}
	return map[string]any{"get": map[string]any{
		"operationId": e.opID, "summary": e.summary, "tags": []string{e.tag},
		"parameters": params, "responses": responses,
	}}
}

// filterParams documents a layer's queryables as property-filter parameters
// (Part 1, /rec/core/fc-filters; Part 3 queryables-query-parameters).
func filterParams(qs []Queryable) []map[string]any {
	var out []map[string]any
	for _, q := range qs {
		if q.IsGeometry() {
			continue
		}
		s := map[string]any{}
		if q.Type != "" && q.Type != "array" && q.Type != "object" {
			s["type"] = q.Type
		} else {
			s["type"] = "string"
		}
		desc := "Only features whose " + q.Name + " equals the value are selected."
		if q.Type == "array" {
			desc = "Only features whose " + q.Name + " list holds the value are selected."
		}
		out = append(out, map[string]any{"name": q.Name, "in": "query", "required": false, "description": desc,
			"schema": s, "style": "form", "explode": false})
	}
	return out
}

// OpenAPI builds the API definition from the endpoints and, for each
// collection, its items path with the collection's queryables as
// parameters. It scans every layer once (O(objects)).
func (a *API) OpenAPI(r *http.Request) map[string]any {
	paths := map[string]any{}
	for _, e := range a.endpoints() {
		key := e.path
		if key == "" {
			key = "/"
		}
		paths[key] = e.operation(nil)
		if e.filters {
			for _, l := range twin.Layers {
				concrete := e
				concrete.path = strings.Replace(e.path, "{collectionId}", string(l), 1)
				concrete.opID = e.opID + "-" + string(l)
				concrete.summary = "The " + string(l) + " features, filtered and paged"
				paths[concrete.path] = concrete.operation(filterParams(a.Queryables(l).List))
			}
		}
	}
	params := map[string]any{}
	for k, v := range a.paramDefs() {
		params[k] = v
	}
	for k, v := range pathParams {
		params[k] = v
	}
	exception := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": ref("schemas", "exception")}}}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       a.opts.Title + " OGC API - Features",
			"version":     "1.0.0",
			"description": "The city twin's layers as OGC API - Features (Parts 1 and 3). Generated by the server from its routes and collections.",
		},
		"servers":  []any{map[string]any{"url": base(r)}},
		"security": []any{map[string]any{"bearerAuth": []string{}}},
		"tags": []any{
			map[string]any{"name": "Capabilities", "description": "what the API offers"},
			map[string]any{"name": "Data", "description": "the features"},
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearerAuth": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "CityTwin token (twin token)"}},
			"parameters":      params,
			"responses": map[string]any{
				"badRequest":   withDesc(exception, "a parameter is unknown or has a bad value"),
				"unauthorized": withDesc(exception, "no or bad token"),
				"notFound":     withDesc(exception, "no such collection or feature (or outside the token's region)"),
			},
			"schemas": schemas(),
		},
	}
}

func withDesc(m map[string]any, d string) map[string]any {
	c := map[string]any{}
	for k, v := range m {
		c[k] = v
	}
	c["description"] = d
	return c
}

func schemas() map[string]any {
	obj := func(required []string, props map[string]any) map[string]any {
		return map[string]any{"type": "object", "required": required, "properties": props}
	}
	str := map[string]any{"type": "string"}
	links := map[string]any{"type": "array", "items": ref("schemas", "link")}
	return map[string]any{
		"exception":   obj([]string{"error"}, map[string]any{"error": str, "detail": map[string]any{}}),
		"link":        obj([]string{"href", "rel"}, map[string]any{"href": str, "rel": str, "type": str, "title": str}),
		"landingPage": obj([]string{"links"}, map[string]any{"title": str, "description": str, "links": links}),
		"confClasses": obj([]string{"conformsTo"}, map[string]any{"conformsTo": map[string]any{"type": "array", "items": str}}),
		"collection": obj([]string{"id", "links"}, map[string]any{"id": str, "title": str, "description": str, "links": links,
			"extent": map[string]any{"type": "object"}, "itemType": str, "crs": map[string]any{"type": "array", "items": str}}),
		"collections": obj([]string{"links", "collections"}, map[string]any{"links": links,
			"collections": map[string]any{"type": "array", "items": ref("schemas", "collection")}}),
		"featureGeoJSON": obj([]string{"type", "geometry", "properties"}, map[string]any{
			"type": map[string]any{"type": "string", "enum": []string{"Feature"}}, "id": str,
			"geometry": map[string]any{"nullable": true, "type": "object"}, "properties": map[string]any{"type": "object", "nullable": true},
			"layer": str, "version": map[string]any{"type": "integer"}, "updated": map[string]any{"type": "string", "format": "date-time"},
			"region": map[string]any{"type": "array", "items": str}, "links": links}),
		"featureCollectionGeoJSON": obj([]string{"type", "features"}, map[string]any{
			"type":     map[string]any{"type": "string", "enum": []string{"FeatureCollection"}},
			"features": map[string]any{"type": "array", "items": ref("schemas", "featureGeoJSON")},
			"links":    links, "timeStamp": map[string]any{"type": "string", "format": "date-time"},
			"numberMatched": map[string]any{"type": "integer", "minimum": 0}, "numberReturned": map[string]any{"type": "integer", "minimum": 0}}),
		"jsonSchema": map[string]any{"type": "object", "description": "a JSON Schema document"},
	}
}

// APIDoc serves GET /ogc/api: the OpenAPI 3.0 definition, or with f=html a
// readable page generated from the same document (the service-doc link).
func (a *API) APIDoc(w http.ResponseWriter, r *http.Request) {
	doc := a.OpenAPI(r)
	if r.URL.Query().Get("f") == "html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_ = apiPage.Execute(w, htmlModel(doc))
		return
	}
	httpx.ContentJSON(w, http.StatusOK, openAPIMediaType, doc)
}

type htmlOp struct {
	Method, Path, Summary string
	Params                []htmlParam
}

type htmlParam struct{ Name, In, Type, Description string }

// htmlModel flattens the document for the page; the per-collection items
// paths are listed after the generic ones.
func htmlModel(doc map[string]any) map[string]any {
	comps := doc["components"].(map[string]any)["parameters"].(map[string]any)
	var ops []htmlOp
	for path, item := range doc["paths"].(map[string]any) {
		get := item.(map[string]any)["get"].(map[string]any)
		op := htmlOp{Method: "GET", Path: path, Summary: get["summary"].(string)}
		for _, p := range get["parameters"].([]any) {
			pm, _ := p.(map[string]any)
			if r, ok := pm["$ref"].(string); ok {
				pm = comps[r[strings.LastIndex(r, "/")+1:]].(map[string]any)
			}
			typ := ""
			if s, ok := pm["schema"].(map[string]any); ok {
				b, _ := json.Marshal(s)
				typ = string(b)
			}
			op.Params = append(op.Params, htmlParam{Name: pm["name"].(string), In: pm["in"].(string), Type: typ, Description: asString(pm["description"])})
		}
		ops = append(ops, op)
	}
	// The generic paths first, then each collection's items path.
	perCollection := func(p string) bool { return !strings.Contains(p, "{") && strings.HasSuffix(p, "/items") }
	sort.Slice(ops, func(i, j int) bool {
		if ci, cj := perCollection(ops[i].Path), perCollection(ops[j].Path); ci != cj {
			return cj
		}
		return ops[i].Path < ops[j].Path
	})
	info := doc["info"].(map[string]any)
	servers := doc["servers"].([]any)
	return map[string]any{"Title": info["title"], "Description": info["description"], "Server": servers[0].(map[string]any)["url"],
		"Ops": ops, "Version": strconv.Quote(doc["openapi"].(string))}
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

var apiPage = template.Must(template.New("api").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}code{background:#f3f3f3;padding:0 .2em}
table{border-collapse:collapse;margin:.3em 0 1.2em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Description}}</p>
<p>Server: <code>{{.Server}}</code>. Machine-readable definition (OpenAPI {{.Version}}): <a href="?f=json">{{.Server}}/api</a>.</p>
{{range .Ops}}<h3><code>{{.Method}} {{.Path}}</code></h3><p>{{.Summary}}</p>
{{if .Params}}<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>
{{range .Params}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td><code>{{.Type}}</code></td><td>{{.Description}}</td></tr>{{end}}
</table>{{end}}{{end}}</body></html>
`))
