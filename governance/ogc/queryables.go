package ogc

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// Queryable is a name that a CQL2 filter or a property filter may use on a
// collection, with its JSON Schema type. One list serves both the parser
// and GET /collections/{id}/queryables, so what the API advertises is
// exactly what it accepts.
type Queryable struct {
	Name string
	// Type is the JSON Schema type: "string", "number", "integer",
	// "boolean", "object" or "array"; "" when the layer's values differ in
	// type, and for the geometry.
	Type string
	// Format refines Type: "date-time" for timestamps, "geometry-point",
	// "geometry-polygon", ... or "geometry-any" for the geometry.
	Format      string
	Description string
}

// Schema is the JSON Schema fragment of the queryable (OGC API Features
// Part 3, /req/queryables/queryables-schema).
func (q Queryable) Schema() map[string]any {
	m := map[string]any{"title": q.Name}
	if q.Type != "" {
		m["type"] = q.Type
	}
	if q.Format != "" {
		m["format"] = q.Format
	}
	if q.Description != "" {
		m["description"] = q.Description
	}
	return m
}

// IsGeometry reports whether the queryable is the feature geometry.
func (q Queryable) IsGeometry() bool { return strings.HasPrefix(q.Format, "geometry-") }

// Queryables is the list for one collection, sorted by name.
type Queryables struct {
	List   []Queryable
	byName map[string]int
}

// Lookup finds a queryable by name. A dotted name (values.ch4) reaches into
// a queryable of type object; its type is then unknown ("").
func (qs Queryables) Lookup(name string) (Queryable, bool) {
	if i, ok := qs.byName[name]; ok {
		return qs.List[i], true
	}
	head, _, ok := strings.Cut(name, ".")
	if !ok {
		return Queryable{}, false
	}
	if i, ok := qs.byName[head]; ok && qs.List[i].Type == "object" {
		return Queryable{Name: name}, true
	}
	return Queryable{}, false
}

// fixedQueryables are the twin's own members, present on every feature.
var fixedQueryables = []Queryable{
	{Name: "id", Type: "string", Description: "{layer}/{name}"},
	{Name: "layer", Type: "string"},
	{Name: "version", Type: "integer", Description: "per-object version, increasing"},
	{Name: "updated", Type: "string", Format: "date-time", Description: "when the object last changed"},
	{Name: "grid", Type: "string", Description: "grid code, empty outside every grid"},
}

// geometryName is the name filters use for the feature geometry.
const geometryName = "geometry"

// Rescans read every object of a layer, so they are rationed: a name a
// filter uses that is not in the list triggers one at most every
// queryablesRefresh (a property added a moment ago is then accepted), and
// the list served to clients is at most queryablesMaxAge old.
const (
	queryablesRefresh = time.Second
	queryablesMaxAge  = 30 * time.Second
)

// queryCache keeps each layer's queryables, rebuilt from the twin when a
// name is missing (a new property arrived) at most once per
// queryablesRefresh. Safe for concurrent use.
type queryCache struct {
	mu    sync.Mutex
	byL   map[twin.Layer]Queryables
	built map[twin.Layer]time.Time
}

func newQueryCache() *queryCache {
	return &queryCache{byL: map[twin.Layer]Queryables{}, built: map[twin.Layer]time.Time{}}
}

// Queryables returns the names a filter may use on layer l: id, layer,
// version, updated, grid, geometry and every property some object of the
// layer has, typed by the values seen. The list is cached for up to
// queryablesMaxAge.
func (a *API) Queryables(l twin.Layer) Queryables {
	return a.queryables(l, queryablesMaxAge)
}

// queryables returns the cached list, rebuilding it first when it is older
// than maxAge (or missing).
func (a *API) queryables(l twin.Layer, maxAge time.Duration) Queryables {
	c := a.qc
	c.mu.Lock()
	defer c.mu.Unlock()
	qs, ok := c.byL[l]
	if ok && time.Since(c.built[l]) < maxAge {
		return qs
	}
	qs = scanQueryables(a.tw, l)
	c.byL[l], c.built[l] = qs, time.Now()
	return qs
}

// lookupFor returns a lookup over layer l's queryables that rescans the
// layer once when a name is not found, so a property added a moment ago is
// accepted without a restart.
func (a *API) lookupFor(l twin.Layer) func(string) (Queryable, bool) {
	qs := a.queryables(l, queryablesMaxAge)
	rescanned := false
	return func(name string) (Queryable, bool) {
		if q, ok := qs.Lookup(name); ok || rescanned {
			return q, ok
		}
		rescanned = true
		qs = a.queryables(l, queryablesRefresh)
		return qs.Lookup(name)
	}
}

// scanQueryables reads every object of l and types each property by the
// values seen (JSON null values do not count).
func scanQueryables(tw *twin.Twin, l twin.Layer) Queryables {
	types := map[string]string{}
	geom := ""
	tw.Range(l, func(f *twin.Feature) bool {
		if f.Geometry != nil {
			geom = mergeType(geom, "geometry-"+strings.ToLower(f.Geometry.GeoJSONType()))
		}
		for k, v := range f.Props.All() {
			if t := jsonType(v); t != "" {
				types[k] = mergeType(types[k], t)
			}
		}
		return true
	})
	list := append([]Queryable(nil), fixedQueryables...)
	if geom == "" || geom == "mixed" {
		geom = "geometry-any"
	}
	list = append(list, Queryable{Name: geometryName, Format: geom})
	for k, t := range types {
		if _, fixed := indexOf(list, k); fixed {
			continue // a prop may not shadow a member of the twin
		}
		q := Queryable{Name: k}
		switch t {
		case "mixed":
		case "date-time":
			q.Type, q.Format = "string", "date-time"
		default:
			q.Type = t
		}
		list = append(list, q)
	}
	for _, kp := range keyProps[l] {
		if i, seen := indexOf(list, kp.Name); seen {
			list[i].Type, list[i].Format = kp.Type, kp.Format // the contract's type wins
		} else {
			list = append(list, kp)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	qs := Queryables{List: list, byName: make(map[string]int, len(list))}
	for i, q := range list {
		qs.byName[q.Name] = i
	}
	return qs
}

func indexOf(list []Queryable, name string) (int, bool) {
	for i, q := range list {
		if q.Name == name {
			return i, true
		}
	}
	return 0, false
}

// mergeType combines the type seen so far with another value's type:
// integer widens to number, date-time narrows string only while every
// string parses as a timestamp; anything else disagreeing is "mixed".
func mergeType(have, t string) string {
	switch {
	case have == "" || have == t:
		return t
	case have == "mixed":
		return have
	case (have == "integer" && t == "number") || (have == "number" && t == "integer"):
		return "number"
	case (have == "date-time" && t == "string") || (have == "string" && t == "date-time"):
		return "string"
	}
	return "mixed"
}

// jsonType is the JSON Schema type of a decoded prop value ("" for null).
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		if looksLikeTime(v) {
			if _, err := ParseInstant(v); err == nil {
				return "date-time"
			}
		}
		return "string"
	case bool:
		return "boolean"
	case time.Time:
		return "date-time"
	case map[string]any:
		return "object"
	case []any, []string, []float64:
		return "array"
	case orb.Geometry:
		return "object"
	}
	if n, ok := twin.ToFloat(v); ok {
		if n == float64(int64(n)) {
			return "integer"
		}
		return "number"
	}
	return "mixed"
}

// looksLikeTime is a cheap test before parsing: YYYY-MM-DDT...
func looksLikeTime(s string) bool {
	return len(s) >= 20 && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') && s[0] >= '0' && s[0] <= '9'
}
