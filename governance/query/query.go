// Package query answers the read-only questions of field staff and planners
// from the live twin: what is near me (nearby), how objects are spread over
// H3 cells (aggregates), and a tier's indicators (region summary). Every
// answer is filtered by the caller's region scope.
package query

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/ogc"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/sphere"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	h3 "github.com/uber/h3-go/v4"
)

// Options bound what one request may ask for.
type Options struct {
	MaxRadiusM float64 // default 50 km
	MaxLimit   int     // default 1000
}

// API holds the query handlers. Safe for concurrent use.
type API struct {
	tw   *twin.Twin
	opts Options
	bufs sync.Pool // answer buffers (*[]byte), reused across requests
}

// New makes the handlers over a twin.
func New(tw *twin.Twin, opts Options) *API {
	if opts.MaxRadiusM <= 0 {
		opts.MaxRadiusM = 50_000
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = 1000
	}
	return &API{tw: tw, opts: opts}
}

// Hit is one nearby object with its exact distance in metres.
type Hit struct {
	F         *twin.Feature
	DistanceM float64
}

// Nearby returns up to limit objects of layer within radius metres of p that
// the principal may see, nearest first. It walks the layer's R-tree in
// approximate-distance order and stops once no closer object can follow.
func (a *API) Nearby(p auth.Principal, l twin.Layer, at orb.Point, radiusM float64, limit int) []Hit {
	var hits []Hit
	a.tw.Nearest(l, at, func(f *twin.Feature, approx float64) bool {
		// approx is within 0.1% of the exact distance: stop with margin.
		if approx > radiusM*1.002+1 {
			return false
		}
		if len(hits) >= limit && approx > hits[len(hits)-1].DistanceM*1.002+1 {
			return false
		}
		if !p.Sees(f) {
			return true
		}
		d := sphere.PointGeometryDistance(at, f.Geometry)
		if d > radiusM {
			return true
		}
		i := sort.Search(len(hits), func(i int) bool { return hits[i].DistanceM > d })
		hits = append(hits, Hit{})
		copy(hits[i+1:], hits[i:])
		hits[i] = Hit{F: f, DistanceM: d}
		if len(hits) > limit {
			hits = hits[:limit]
		}
		return true
	})
	return hits
}

// NearbyHandler serves GET /api/nearby?layer=&lon=&lat=&radius_m=&limit=
// [&properties=a,b][&format=ids]. properties= keeps only the named
// properties of each feature (empty: none); format=ids answers ids and
// distances only. A large limit with a radius is the "within" query.
func (a *API) NearbyHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	layer := twin.Incidents
	if s := q.Get("layer"); s != "" {
		l, err := twin.ParseLayer(s)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad layer", err.Error())
			return
		}
		layer = l
	}
	lon, err1 := num(q.Get("lon"), -180, 180)
	lat, err2 := num(q.Get("lat"), -90, 90)
	if err1 != nil || err2 != nil {
		httpx.Error(w, http.StatusBadRequest, "lon and lat are required WGS84 degrees", fmt.Sprint(firstErr(err1, err2)))
		return
	}
	radius := 1000.0
	if s := q.Get("radius_m"); s != "" {
		v, err := num(s, 0, a.opts.MaxRadiusM)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad radius_m", err.Error())
			return
		}
		radius = v
	}
	limit := 10
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.opts.MaxLimit {
			httpx.Error(w, http.StatusBadRequest, "bad limit", fmt.Sprintf("want 1..%d", a.opts.MaxLimit))
			return
		}
		limit = n
	}
	ids := false
	switch q.Get("format") {
	case "", "geojson":
	case "ids":
		ids = true
	default:
		httpx.Error(w, http.StatusBadRequest, "bad format", "want geojson (the default) or ids")
		return
	}
	var keep []string // nil: every property
	if v, ok := q["properties"]; ok {
		keep = propertyNames(v)
	}
	hits := a.Nearby(auth.Of(r.Context()), layer, orb.Point{lon, lat}, radius, limit)
	buf := a.getBuf()
	defer a.putBuf(buf)
	b, err := appendNearby((*buf)[:0], hits, lon, lat, radius, ids, keep)
	*buf = b
	if err != nil {
		httpx.Error(w, http.StatusInternalServerError, "encoding the answer failed", err.Error())
		return
	}
	if ids {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "application/geo+json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// propertyNames reads ?properties=a,b (repeatable) into sorted unique
// names; an empty value selects none.
func propertyNames(vs []string) []string {
	keep := []string{}
	for _, v := range vs {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				keep = append(keep, n)
			}
		}
	}
	slices.Sort(keep)
	return slices.Compact(keep)
}

// appendNearby encodes a nearby answer into b in one pass, with no map or
// reflection per hit (issue 16 goal 3: the answer is built in a reused
// buffer, features through twin.Feature.AppendGeoJSON). The GeoJSON form
// is a FeatureCollection whose features carry distance_m; the ids form is
// {"ids":[...],"distances_m":[...]} in the same order, nearest first.
func appendNearby(b []byte, hits []Hit, lon, lat, radius float64, ids bool, keep []string) ([]byte, error) {
	if ids {
		b = append(b, `{"ids":[`...)
		for i, h := range hits {
			if i > 0 {
				b = append(b, ',')
			}
			b = twin.AppendJSONString(b, h.F.ID.String())
		}
		b = append(b, `],"distances_m":[`...)
		for i, h := range hits {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNumber(b, math.Round(h.DistanceM*10)/10)
		}
		b = append(b, ']')
	} else {
		b = append(b, `{"type":"FeatureCollection","features":[`...)
		for i, h := range hits {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = h.F.AppendGeoJSON(b, keep); err != nil {
				return b, fmt.Errorf("%s: %w", h.F.ID, err)
			}
			b = append(b[:len(b)-1], `,"distance_m":`...) // into the feature object
			b = appendNumber(b, math.Round(h.DistanceM*10)/10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"center":[`...)
	b = appendNumber(b, lon)
	b = append(b, ',')
	b = appendNumber(b, lat)
	b = append(b, `],"radius_m":`...)
	b = appendNumber(b, radius)
	b = append(b, `,"numberReturned":`...)
	b = strconv.AppendInt(b, int64(len(hits)), 10)
	return append(b, "}\n"...), nil
}

// appendNumber writes a finite float in plain decimal notation (valid
// JSON; the answer's numbers are degrees and metres).
func appendNumber(b []byte, x float64) []byte { return strconv.AppendFloat(b, x, 'f', -1, 64) }

// maxPooledAnswer bounds the answer buffers kept for reuse.
const maxPooledAnswer = 4 << 20

func (a *API) getBuf() *[]byte {
	if b, ok := a.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (a *API) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledAnswer {
		a.bufs.Put(b)
	}
}

// Cell is one H3 aggregate bucket.
type Cell struct {
	Cell  string  `json:"cell"`
	Count int     `json:"count"`
	Sum   float64 `json:"sum,omitempty"`
}

// Aggregate counts the layer's objects (and sums a numeric property) per H3
// cell at res, within bbox, for what the principal may see. An object counts
// in the cell of its representative point (its first res-9 cell's parent).
func (a *API) Aggregate(p auth.Principal, l twin.Layer, res int, bbox orb.Bound, sumProp string) []Cell {
	type acc struct {
		n int
		s float64
	}
	m := map[h3.Cell]*acc{}
	a.tw.Search(l, bbox, func(f *twin.Feature) bool {
		if !p.Sees(f) {
			return true
		}
		var c h3.Cell
		if fc := f.Cell(); fc != 0 {
			c = h3.Cell(hex.ParentOfValid(fc, res))
		} else if pt, ok := f.Geometry.(orb.Point); ok {
			c = h3.LatLngToCell(h3.NewLatLng(pt[1], pt[0]), res)
		} else {
			ctr := f.Geometry.Bound().Center()
			c = h3.LatLngToCell(h3.NewLatLng(ctr[1], ctr[0]), res)
		}
		e := m[c]
		if e == nil {
			e = &acc{}
			m[c] = e
		}
		e.n++
		if sumProp != "" {
			if v, ok := f.Number(sumProp); ok {
				e.s += v
			}
		}
		return true
	})
	out := make([]Cell, 0, len(m))
	for c, e := range m {
		out = append(out, Cell{Cell: c.String(), Count: e.n, Sum: e.s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cell < out[j].Cell })
	return out
}

// H3Handler serves GET /api/h3?layer=&res=&bbox=&sum=&format=geojson.
func (a *API) H3Handler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	l, err := twin.ParseLayer(q.Get("layer"))
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "bad layer", err.Error())
		return
	}
	res := 8
	if s := q.Get("res"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 9 {
			httpx.Error(w, http.StatusBadRequest, "bad res", "want an H3 resolution 0..9")
			return
		}
		res = n
	}
	bbox := orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}
	if s := q.Get("bbox"); s != "" {
		b, err := ogc.ParseBBox(s)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "bad bbox", err.Error())
			return
		}
		bbox = b
	}
	cells := a.Aggregate(auth.Of(r.Context()), l, res, bbox, q.Get("sum"))
	if q.Get("format") != "geojson" {
		httpx.JSON(w, http.StatusOK, map[string]any{"layer": l, "res": res, "sum": q.Get("sum"), "cells": cells})
		return
	}
	feats := make([]map[string]any, len(cells))
	for i, c := range cells {
		feats[i] = map[string]any{"type": "Feature", "id": c.Cell,
			"geometry":   map[string]any{"type": "Polygon", "coordinates": cellRing(c.Cell)},
			"properties": map[string]any{"cell": c.Cell, "count": c.Count, "sum": c.Sum}}
	}
	httpx.ContentJSON(w, http.StatusOK, "application/geo+json", map[string]any{"type": "FeatureCollection", "features": feats})
}

// cellRing is the cell's boundary as a closed GeoJSON ring, with
// coordinates rounded as every coordinate on the wire (twin.CoordFactor).
func cellRing(s string) [][][2]float64 {
	c := h3.Cell(h3.IndexFromString(s))
	b := c.Boundary()
	ring := make([][2]float64, 0, len(b)+1)
	for _, ll := range b {
		ring = append(ring, [2]float64{roundCoord(ll.Lng), roundCoord(ll.Lat)})
	}
	return [][][2]float64{append(ring, ring[0])}
}

func roundCoord(x float64) float64 { return math.Round(x*twin.CoordFactor) / twin.CoordFactor }

func num(s string, lo, hi float64) (float64, error) {
	if s == "" {
		return 0, fmt.Errorf("missing")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < lo || v > hi {
		return 0, fmt.Errorf("%q: want a number in %g..%g", s, lo, hi)
	}
	return v, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
