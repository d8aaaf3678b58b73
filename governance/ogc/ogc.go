// Package ogc serves the twin's layers as OGC API - Features (Part 1 core,
// GeoJSON; Part 3 CQL2-text basic filters) under /ogc, for planners. Every
// answer is filtered by the caller's region scope (auth.Principal.Sees).
package ogc

import (
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

// Conformance classes this server implements (and only those).
var conformance = append([]string{
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
	"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
}, CQL2Conformance...)

// reserved query parameters; any other parameter filters on a property.
var reserved = map[string]bool{"bbox": true, "limit": true, "offset": true, "datetime": true,
	"filter": true, "filter-lang": true, "f": true, "access_token": true, "bbox-crs": true, "filter-crs": true}

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

// Landing serves GET /ogc.
func (a *API) Landing(w http.ResponseWriter, r *http.Request) {
	b := base(r)
	httpx.JSON(w, http.StatusOK, map[string]any{
		"title":       a.opts.Title,
		"description": "CityTwin city model as OGC API - Features: every twin layer is a collection.",
		"links": []link{
			{Href: b, Rel: "self", Type: "application/json", Title: "this document"},
			{Href: b + "/conformance", Rel: "conformance", Type: "application/json", Title: "conformance classes"},
			{Href: b + "/collections", Rel: "data", Type: "application/json", Title: "collections"},
		},
	})
}

// Conformance serves GET /ogc/conformance.
func (a *API) Conformance(w http.ResponseWriter, r *http.Request) {
	httpx.JSON(w, http.StatusOK, map[string]any{"conformsTo": conformance})
}

func (a *API) collection(r *http.Request, l twin.Layer) map[string]any {
	b := base(r)
	p := auth.Of(r.Context())
	bound, has := orb.Bound{}, false
	a.tw.Range(l, func(f *twin.Feature) bool {
		if f.Geometry == nil || !p.Sees(f) {
			return true
		}
		if !has {
			bound, has = f.Geometry.Bound(), true
		} else {
			bound = bound.Union(f.Geometry.Bound())
		}
		return true
	})
	c := map[string]any{
		"id":       string(l),
		"title":    string(l),
		"itemType": "feature",
		"crs":      []string{"http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
		"links": []link{
			{Href: b + "/collections/" + string(l), Rel: "self", Type: "application/json"},
			{Href: b + "/collections/" + string(l) + "/items", Rel: "items", Type: geoJSON},
		},
	}
	if has {
		c["extent"] = map[string]any{"spatial": map[string]any{
			"bbox": [][]float64{{bound.Min[0], bound.Min[1], bound.Max[0], bound.Max[1]}},
			"crs":  "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
		}}
	}
	return c
}

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

// Collection serves GET /ogc/collections/{layer}.
func (a *API) Collection(w http.ResponseWriter, r *http.Request) {
	l, err := twin.ParseLayer(r.PathValue("layer"))
	if err != nil {
		httpx.Error(w, http.StatusNotFound, "unknown collection", err.Error())
		return
	}
	httpx.JSON(w, http.StatusOK, a.collection(r, l))
}

// Item serves GET /ogc/collections/{layer}/items/{name}.
func (a *API) Item(w http.ResponseWriter, r *http.Request) {
	id, err := twin.MakeID(r.PathValue("layer"), r.PathValue("name"))
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
	props    map[string]string
	filter   *Filter
}

func (a *API) parseQuery(l twin.Layer, v url.Values) (query, error) {
	q := query{limit: a.opts.DefaultLimit, props: map[string]string{}}
	if s := v.Get("bbox"); s != "" {
		b, err := ParseBBox(s)
		if err != nil {
			return q, err
		}
		q.bbox = &b
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
		q.from, q.to = from, to
	}
	for _, p := range []string{"bbox-crs", "filter-crs"} {
		if err := CheckCRS(p, v.Get(p)); err != nil {
			return q, err
		}
	}
	if s := v.Get("filter"); s != "" {
		if lang := v.Get("filter-lang"); lang != "" && lang != "cql2-text" {
			return q, fmt.Errorf("filter-lang %q: only cql2-text is supported", lang)
		}
		f, err := ParseCQL2(s, a.lookupFor(l))
		if err != nil {
			return q, err
		}
		q.filter = f
	}
	for k, vs := range v {
		if !reserved[k] && len(vs) > 0 {
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
// "" for an open end.
func parseDatetime(s string) (time.Time, time.Time, error) {
	parse := func(p string) (time.Time, error) {
		if p == ".." || p == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, p)
		if err != nil {
			return time.Time{}, fmt.Errorf("datetime %q: want RFC 3339 or an interval a/b", s)
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
			return from, from, fmt.Errorf("datetime %q: want RFC 3339 or an interval a/b", s)
		}
		return from, from, nil
	}
	to, err := parse(b)
	return from, to, err
}

func (q query) match(f *twin.Feature) bool {
	if q.bbox != nil && !MatchBBox(f.Geometry, *q.bbox) {
		return false
	}
	if !q.from.IsZero() && f.Updated.Before(q.from) {
		return false
	}
	if !q.to.IsZero() && f.Updated.After(q.to) {
		return false
	}
	for k, want := range q.props {
		v, ok := propValue(f, k)
		if !ok || fmt.Sprint(v) != want {
			return false
		}
	}
	return q.filter == nil || q.filter.Match(f)
}

// Items serves GET /ogc/collections/{layer}/items.
func (a *API) Items(w http.ResponseWriter, r *http.Request) {
	l, err := twin.ParseLayer(r.PathValue("layer"))
	if err != nil {
		httpx.Error(w, http.StatusNotFound, "unknown collection", err.Error())
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
		return // the client left
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
		if k != "offset" && k != "limit" && k != "access_token" {
			c[k] = vs
		}
	}
	c.Set("offset", strconv.Itoa(offset))
	c.Set("limit", strconv.Itoa(limit))
	return self + "?" + c.Encode()
}
