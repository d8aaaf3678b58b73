// Package ogc serves the twin's layers as OGC API - Features (Part 1 core,
// GeoJSON; Part 3 CQL2-text basic filters) under /ogc, for planners. Every
// answer is filtered by the caller's region scope (auth.Principal.Sees).
package ogc

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Options configure the API.
type Options struct {
	Title        string // landing page title; default "CityTwin"
	DefaultLimit int    // default 10
	MaxLimit     int    // default 10000
}

// API is the OGC API Features handler set. Safe for concurrent use.
type API struct {
	tw   *twin.Twin
	opts Options
	qc   *queryCache
}

// New makes the API over a twin.
func New(tw *twin.Twin, opts Options) *API {
	if opts.Title == "" {
		opts.Title = "CityTwin"
	}
	if opts.DefaultLimit <= 0 {
		opts.DefaultLimit = 10
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = 10000
	}
	return &API{tw: tw, opts: opts, qc: newQueryCache()}
}

type link struct {
	Href  string `json:"href"`
	Rel   string `json:"rel"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

const geoJSON = "application/geo+json"

func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/ogc"
}

// layerOf reads the {collectionId} path segment, answering 404 itself for an
// unknown collection.
func (a *API) layerOf(w http.ResponseWriter, r *http.Request) (twin.Layer, bool) {
	l, err := twin.ParseLayer(r.PathValue("collectionId"))
	if err != nil {
		httpx.Error(w, http.StatusNotFound, "unknown collection", err.Error())
		return "", false
	}
	return l, true
}

// Landing serves GET /ogc.
func (a *API) Landing(w http.ResponseWriter, r *http.Request) {
	b := base(r)
	httpx.JSON(w, http.StatusOK, map[string]any{
		"title":       a.opts.Title,
		"description": "CityTwin city model as OGC API - Features: every twin layer is a collection.",
		"links": []link{
			{Href: b, Rel: "self", Type: "application/json", Title: "this document"},
			{Href: b + "/api", Rel: "service-desc", Type: openAPIMediaType, Title: "the API definition (OpenAPI 3.0)"},
			{Href: b + "/api?f=html", Rel: "service-doc", Type: "text/html", Title: "the API documentation"},
			{Href: b + "/conformance", Rel: "conformance", Type: "application/json", Title: "conformance classes"},
			{Href: b + "/collections", Rel: "data", Type: "application/json", Title: "collections"},
		},
	})
}

// relQueryables is the Part 3 link relation of a collection's queryables.
const relQueryables = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

// timeDescription says what time a layer's features carry and how datetime
// treats them (CONTRACT §5; Part 1 /req/core/fc-time-response).
const timeDescription = "Time: a feature's temporal geometry is its `updated` instant (when the object last changed; " +
	"for vehicles, workers and devices the telemetry time). A datetime filter selects the features whose `updated` lies in the " +
	"given instant or interval, and every feature without a time (Part 1, /req/core/fc-time-response B: " +
	"datetime matches all features not associated with a temporal geometry)."

func (a *API) collection(r *http.Request, l twin.Layer) map[string]any {
	b := base(r)
	p := auth.Of(r.Context())
	bound, has := orb.Bound{}, false
	var first, last time.Time
	timed, untimed := 0, 0
	a.tw.Range(l, func(f *twin.Feature) bool {
		if !p.Sees(f) {
			return true
		}
		if t := f.Updated.Time(); t.IsZero() {
			untimed++
		} else {
			timed++
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		if f.Geometry == nil {
			return true
		}
		if !has {
			bound, has = f.Geometry.Bound(), true
		} else {
			bound = bound.Union(f.Geometry.Bound())
		}
		return true
	})
	self := b + "/collections/" + string(l)
	desc := fmt.Sprintf("The twin's %s layer. %s Now: %d features with a time, %d without.", l, timeDescription, timed, untimed)
	c := map[string]any{
		"id":          string(l),
		"title":       string(l),
		"description": desc,
		"itemType":    "feature",
		"crs":         []string{CRS84},
		"links": []link{
			{Href: self, Rel: "self", Type: "application/json"},
			{Href: self + "/items", Rel: "items", Type: geoJSON, Title: "the features"},
			{Href: self + "/queryables", Rel: relQueryables, Type: schemaJSON, Title: "queryables"},
			// GDAL 3.6 looks for the pre-release relation name.
			{Href: self + "/queryables", Rel: "queryables", Type: schemaJSON, Title: "queryables"},
			// GDAL 3.6 compares "describedBy" case-sensitively (RFC 8288 relation
			// names are case-insensitive, so this is also describedby).
			{Href: self + "/schema", Rel: "describedBy", Type: schemaJSON, Title: "JSON Schema of a feature"},
		},
	}
	extent := map[string]any{}
	if has {
		extent["spatial"] = map[string]any{
			"bbox": [][]float64{{round7(bound.Min[0]), round7(bound.Min[1]), round7(bound.Max[0]), round7(bound.Max[1])}},
			"crs":  CRS84,
		}
	}
	if timed > 0 {
		extent["temporal"] = map[string]any{
			"interval": [][]string{{first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339)}},
			"trs":      "http://www.opengis.net/def/uri/ISO-8601/0/Gregorian",
		}
	}
	if len(extent) > 0 {
		c["extent"] = extent
	}
	return c
}

// round7 rounds degrees to 7 decimals (about 1 cm), as every coordinate the
// server writes.
func round7(x float64) float64 { return math.Round(x*1e7) / 1e7 }

// Collections serves GET /ogc/collections.
func (a *API) Collections(w http.ResponseWriter, r *http.Request) {
	b := base(r)
	cs := make([]map[string]any, 0, len(twin.Layers))
	for _, l := range twin.Layers {
		cs = append(cs, a.collection(r, l))
	}
	httpx.JSON(w, http.StatusOK, map[string]any{
		"links":       []link{{Href: b + "/collections", Rel: "self", Type: "application/json"}},
		"collections": cs,
	})
}

// Collection serves GET /ogc/collections/{collectionId}.
func (a *API) Collection(w http.ResponseWriter, r *http.Request) {
	l, ok := a.layerOf(w, r)
	if !ok {
		return
	}
	httpx.JSON(w, http.StatusOK, a.collection(r, l))
}

// Item serves GET /ogc/collections/{collectionId}/items/{featureId}. The
// feature id may be the object's name or, as the GeoJSON id reads, its full
// {layer}/{name} (GDAL asks for items/{id} with the id it was given).
func (a *API) Item(w http.ResponseWriter, r *http.Request) {
	layer, name := r.PathValue("collectionId"), r.PathValue("featureId")
	if rest, ok := strings.CutPrefix(name, layer+"/"); ok {
		name = rest
	}
	id, err := twin.MakeID(layer, name)
	if err != nil {
		httpx.Error(w, http.StatusNotFound, "not found", err.Error())
		return
	}
	f, ok := a.tw.Get(id)
	if !ok || !auth.Of(r.Context()).Sees(f) {
		httpx.Error(w, http.StatusNotFound, "not found", id.String())
		return
	}
	b := base(r) + "/collections/" + string(id.Layer)
	httpx.ContentJSON(w, http.StatusOK, geoJSON, twin.WithMembers{F: f, Members: map[string]any{"links": []link{
		{Href: b + "/items/" + url.PathEscape(id.Name), Rel: "self", Type: geoJSON},
		{Href: b, Rel: "collection", Type: "application/json"},
	}}})
}

// query is a parsed items request.
type query struct {
	bbox     *orb.Bound
	limit    int
	offset   int
	from, to time.Time // zero = open
	hasTime  bool      // a datetime was given
	props    map[string]string
	filter   *Filter
}

// itemParams are the items endpoint's own parameters; any other name is a
// property filter (checked against the queryables before the handler runs).
var itemParams = map[string]bool{"bbox": true, "bbox-crs": true, "datetime": true, "limit": true, "offset": true,
	"filter": true, "filter-lang": true, "filter-crs": true, "f": true}

func (a *API) parseQuery(l twin.Layer, v url.Values) (query, error) {
	q := query{limit: a.opts.DefaultLimit, props: map[string]string{}}
	if s := v.Get("bbox"); s != "" {
		b, err := ParseItemsBBox(s)
		if err != nil {
			return q, err
		}
		q.bbox = &b
	}
	for _, p := range []string{"bbox-crs", "filter-crs"} {
		if err := CheckCRS(p, v.Get(p)); err != nil {
			return q, err
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("limit %q: want a positive integer", s)
		}
		q.limit = min(n, a.opts.MaxLimit)
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("offset %q: want a non-negative integer", s)
		}
		q.offset = n
	}
	if s := v.Get("datetime"); s != "" {
		from, to, err := parseDatetime(s)
		if err != nil {
			return q, err
		}
		q.from, q.to, q.hasTime = from, to, true
	}
	if s := v.Get("filter"); s != "" {
		// cql-text is the name drafts (and GDAL 3.6) use for CQL2 text.
		if lang := v.Get("filter-lang"); lang != "" && lang != "cql2-text" && lang != "cql-text" {
			return q, fmt.Errorf("filter-lang %q: only cql2-text is supported", lang)
		}
		f, err := ParseCQL2(s, a.lookupFor(l))
		if err != nil {
			return q, err
		}
		q.filter = f
	}
	for k, vs := range v {
		if !itemParams[k] && len(vs) > 0 {
			q.props[k] = vs[0]
		}
	}
	return q, nil
}

// ParseBBox parses "w,s,e,n" in lon/lat, checking ranges and order.
func ParseBBox(s string) (orb.Bound, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return orb.Bound{}, fmt.Errorf("bbox %q: want minLon,minLat,maxLon,maxLat", s)
	}
	var v [4]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return orb.Bound{}, fmt.Errorf("bbox %q: %q is not a number", s, p)
		}
		v[i] = f
	}
	if v[0] < -180 || v[2] > 180 || v[1] < -90 || v[3] > 90 || v[0] > v[2] || v[1] > v[3] {
		return orb.Bound{}, fmt.Errorf("bbox %q: out of range or min > max", s)
	}
	return orb.Bound{Min: orb.Point{v[0], v[1]}, Max: orb.Point{v[2], v[3]}}, nil
}

// parseDatetime reads an RFC 3339 instant or an interval "a/b" with ".." or
// "" for an open end ("../.." is every time). Lower-case t and z are read as
// T and Z (RFC 3339 §5.6 allows them).
func parseDatetime(s string) (time.Time, time.Time, error) {
	bad := fmt.Errorf("datetime %q: want an RFC 3339 instant or an interval a/b (.. or empty for an open end)", s)
	parse := func(p string) (time.Time, error) {
		if p == ".." || p == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(p))
		if err != nil {
			return time.Time{}, bad
		}
		return t, nil
	}
	a, b, isInterval := strings.Cut(s, "/")
	from, err := parse(a)
	if err != nil {
		return from, from, err
	}
	if !isInterval {
		if from.IsZero() {
			return from, from, bad
		}
		return from, from, nil
	}
	to, err := parse(b)
	if err != nil {
		return from, to, err
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return from, to, fmt.Errorf("datetime %q: the interval ends before it starts", s)
	}
	return from, to, nil
}

// match applies the items query to one feature. bbox follows Part 1
// /req/core/fc-bbox-response (features without a geometry match every box)
// and datetime /req/core/fc-time-response (features without a time match
// every instant and interval).
func (q query) match(f *twin.Feature) bool {
	if q.bbox != nil && !MatchBBox(f.Geometry, *q.bbox) {
		return false
	}
	if q.hasTime && !f.Updated.IsZero() {
		if !q.from.IsZero() && f.Updated.Time().Before(q.from) {
			return false
		}
		if !q.to.IsZero() && f.Updated.Time().After(q.to) {
			return false
		}
	}
	for k, want := range q.props {
		if !propEquals(f, k, want) {
			return false
		}
	}
	return q.filter == nil || q.filter.Match(f)
}

// propEquals is a property filter: the value's text equals want, or, for a
// list (region, owners), one element's does.
func propEquals(f *twin.Feature, name, want string) bool {
	v, ok := propValue(f, name)
	if !ok {
		return false
	}
	if list, isList := v.([]any); isList {
		for _, e := range list {
			if fmt.Sprint(e) == want {
				return true
			}
		}
		return false
	}
	if t, isTime := v.(string); isTime && (name == "updated" || name == "observed") {
		a, err1 := time.Parse(time.RFC3339Nano, t)
		b, err2 := time.Parse(time.RFC3339Nano, strings.ToUpper(want))
		return err1 == nil && err2 == nil && a.Equal(b)
	}
	return fmt.Sprint(v) == want
}

// Items serves GET /ogc/collections/{collectionId}/items.
func (a *API) Items(w http.ResponseWriter, r *http.Request) {
	l, ok := a.layerOf(w, r)
	if !ok {
		return
	}
	q, err := a.parseQuery(l, r.URL.Query())
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad query", err.Error())
		return
	}
	p := auth.Of(r.Context())
	var hits []*twin.Feature
	collect := func(f *twin.Feature) bool {
		if p.Sees(f) && q.match(f) {
			hits = append(hits, f)
		}
		return true
	}
	if err := a.scan(r.Context(), l, q.bbox, q.filter, collect); err != nil {
		if errors.Is(err, ErrFilterTooCostly) {
			httpx.Error(w, http.StatusBadRequest, "filter too costly", err.Error())
		}
		return // or the client left
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].ID.Name < hits[j].ID.Name })
	matched := len(hits)
	lo := min(q.offset, matched)
	page := hits[lo : lo+min(q.limit, matched-lo)]

	self := base(r) + "/collections/" + string(l) + "/items"
	links := []link{{Href: pageURL(self, r.URL.Query(), q.offset, q.limit), Rel: "self", Type: geoJSON}}
	if q.offset < matched-q.limit {
		links = append(links, link{Href: pageURL(self, r.URL.Query(), q.offset+q.limit, q.limit), Rel: "next", Type: geoJSON})
	}
	if q.offset > 0 {
		links = append(links, link{Href: pageURL(self, r.URL.Query(), max(0, q.offset-q.limit), q.limit), Rel: "prev", Type: geoJSON})
	}
	links = append(links, link{Href: base(r) + "/collections/" + string(l), Rel: "collection", Type: "application/json"})
	if page == nil {
		page = []*twin.Feature{}
	}
	httpx.ContentJSON(w, http.StatusOK, geoJSON, map[string]any{
		"type":           "FeatureCollection",
		"features":       page,
		"numberMatched":  matched,
		"numberReturned": len(page),
		"timeStamp":      time.Now().UTC().Format(time.RFC3339),
		"links":          links,
	})
}

func pageURL(self string, v url.Values, offset, limit int) string {
	c := url.Values{}
	for k, vs := range v {
		if k != "offset" && k != "limit" {
			c[k] = vs
		}
	}
	c.Set("offset", strconv.Itoa(offset))
	c.Set("limit", strconv.Itoa(limit))
	return self + "?" + c.Encode()
}
