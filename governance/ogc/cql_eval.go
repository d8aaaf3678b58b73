package ogc

import (
	"cmp"
	"strings"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// tri is a truth value of CQL2's three-valued logic: a comparison with a
// missing (NULL) property is unknown, NOT unknown is unknown, and only TRUE
// selects a feature (as in SQL).
type tri int8

const (
	tFalse tri = iota
	tTrue
	tUnknown
)

func triOf(b bool) tri {
	if b {
		return tTrue
	}
	return tFalse
}

func (t tri) not() tri {
	switch t {
	case tTrue:
		return tFalse
	case tFalse:
		return tTrue
	}
	return tUnknown
}

// node is a compiled boolean expression.
type node interface {
	eval(e *env) tri
}

// env is one feature under evaluation, with the values of the properties
// the filter names, each read once however many predicates use it (a
// 900-term OR on one property costs one map lookup per feature, not 900).
type env struct {
	f    *twin.Feature
	vals []value
	have []bool
}

func (e *env) prop(slot int, name string) value {
	if e.have[slot] {
		return e.vals[slot]
	}
	v := readProp(e.f, name)
	e.vals[slot], e.have[slot] = v, true
	return v
}

type andN []node
type orN []node
type notN struct{ e node }
type constN tri

func (n andN) eval(e *env) tri {
	out := tTrue
	for _, c := range n {
		switch c.eval(e) {
		case tFalse:
			return tFalse
		case tUnknown:
			out = tUnknown
		}
	}
	return out
}

func (n orN) eval(e *env) tri {
	out := tFalse
	for _, c := range n {
		switch c.eval(e) {
		case tTrue:
			return tTrue
		case tUnknown:
			out = tUnknown
		}
	}
	return out
}

func (n notN) eval(e *env) tri { return n.e.eval(e).not() }
func (n constN) eval(*env) tri { return tri(n) }

// vkind is the type of a scalar value during evaluation.
type vkind uint8

const (
	vNull vkind = iota
	vString
	vNumber
	vBool
	vTime // an instant (TIMESTAMP, updated, a time.Time prop)
	vDate // a day (DATE): t is its midnight UTC
	vOther
)

type value struct {
	k vkind
	s string
	n float64
	b bool
	t time.Time
}

// operand yields a scalar for a feature: a literal or a property.
type operand interface {
	value(e *env) value
}

type litOp struct{ v value }

// propOp reads a property; slot indexes the env's cache.
type propOp struct {
	name string
	slot int
}

func (o litOp) value(*env) value { return o.v }

func (o propOp) value(e *env) value { return e.prop(o.slot, o.name) }

func readProp(f *twin.Feature, name string) value {
	if name == "updated" {
		return value{k: vTime, t: f.Updated.Time()}
	}
	v, ok := propValue(f, name)
	if !ok {
		return value{}
	}
	return valueOf(v)
}

func valueOf(v any) value {
	switch v := v.(type) {
	case nil:
		return value{}
	case string:
		return value{k: vString, s: v}
	case bool:
		return value{k: vBool, b: v}
	case time.Time:
		return value{k: vTime, t: v}
	}
	if n, ok := twin.ToFloat(v); ok {
		return value{k: vNumber, n: n}
	}
	return value{k: vOther}
}

// compare orders a and b; ok is false when either is NULL or the two cannot
// be compared (a string with a number, an object with anything), which
// makes the predicate unknown. Strings compare with instants when they
// parse as RFC 3339; an instant compares with a DATE by its UTC day.
func compare(a, b value) (int, bool) {
	if a.k == vNull || b.k == vNull || a.k == vOther || b.k == vOther {
		return 0, false
	}
	switch {
	case a.k == vNumber && b.k == vNumber:
		return cmp.Compare(a.n, b.n), true
	case a.k == vString && b.k == vString:
		return strings.Compare(a.s, b.s), true
	case a.k == vBool && b.k == vBool:
		return cmp.Compare(boolInt(a.b), boolInt(b.b)), true
	}
	ta, oka := asTime(a)
	tb, okb := asTime(b)
	if !oka || !okb {
		return 0, false
	}
	if a.k == vDate || b.k == vDate {
		ta, tb = day(ta), day(tb)
	}
	return ta.Compare(tb), true
}

func asTime(v value) (time.Time, bool) {
	switch v.k {
	case vTime, vDate:
		return v.t, true
	case vString:
		if t, err := ParseInstant(v.s); err == nil {
			return t, true
		}
		if t, err := parseDate(v.s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cmpN is a binary comparison.
type cmpN struct {
	l, r operand
	op   string
}

func (n cmpN) eval(e *env) tri {
	c, ok := compare(n.l.value(e), n.r.value(e))
	if !ok {
		return tUnknown
	}
	return triOf(holds(c, n.op))
}

func holds(c int, op string) bool {
	switch op {
	case "=":
		return c == 0
	case "<>":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

// betweenN is x [NOT] BETWEEN lo AND hi, i.e. lo <= x AND x <= hi.
type betweenN struct {
	x, lo, hi operand
	not       bool
}

func (n betweenN) eval(e *env) tri {
	x := n.x.value(e)
	r := andN{cmpN{litOp{n.lo.value(e)}, litOp{x}, "<="}, cmpN{litOp{x}, litOp{n.hi.value(e)}, "<="}}.eval(e)
	if n.not {
		return r.not()
	}
	return r
}

// inN is x [NOT] IN (a, b, ...), i.e. x = a OR x = b OR ...
type inN struct {
	x    operand
	list []operand
	not  bool
}

func (n inN) eval(e *env) tri {
	x := n.x.value(e)
	r := tFalse
	for _, o := range n.list {
		c, ok := compare(x, o.value(e))
		if !ok {
			r = tUnknown
			continue
		}
		if c == 0 {
			r = tTrue
			break
		}
	}
	if n.not {
		return r.not()
	}
	return r
}

// nullN is x IS [NOT] NULL: a missing property and a JSON null are NULL.
// Never unknown.
type nullN struct {
	x    operand // nil for the geometry
	not  bool
	geom bool
}

func (n nullN) eval(e *env) tri {
	var isNull bool
	if n.geom {
		isNull = e.f.Geometry == nil
	} else {
		isNull = n.x.value(e).k == vNull
	}
	return triOf(isNull != n.not)
}

// likeN is x [NOT] LIKE pattern: % matches any run of characters, _ one
// character, \ escapes the next; case-sensitive. x must be a string, or the
// predicate is unknown.
type likeN struct {
	x   operand
	pat []likeTok
	not bool
}

type likeTok struct {
	any  bool // % (when one is false: _ or a literal)
	one  bool // _
	char rune
}

func compileLike(p string) []likeTok {
	var out []likeTok
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\\' && i+1 < len(rs):
			i++
			out = append(out, likeTok{char: rs[i]})
		case r == '%':
			out = append(out, likeTok{any: true})
		case r == '_':
			out = append(out, likeTok{one: true})
		default:
			out = append(out, likeTok{char: r})
		}
	}
	return out
}

func (n likeN) eval(e *env) tri {
	v := n.x.value(e)
	if v.k != vString {
		return tUnknown
	}
	r := triOf(likeMatch([]rune(v.s), n.pat))
	if n.not {
		return r.not()
	}
	return r
}

// likeMatch is the classic wildcard match with one backtrack point (the
// last %), O(len(s)·len(p)) at worst: no regexp, no exponential blow-up.
func likeMatch(s []rune, p []likeTok) bool {
	i, j := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case j < len(p) && !p[j].any && (p[j].one || p[j].char == s[i]):
			i++
			j++
		case j < len(p) && p[j].any:
			star, mark = j, i
			j++
		case star >= 0:
			mark++
			i, j = mark, star+1
		default:
			return false
		}
	}
	for j < len(p) && p[j].any {
		j++
	}
	return j == len(p)
}

// intersectsN is S_INTERSECTS(geometry, literal): exact on the geometry
// (spatial/planar), unknown for a feature without geometry.
type intersectsN struct {
	g orb.Geometry
	b orb.Bound
}

func (n intersectsN) eval(e *env) tri {
	f := e.f
	if f.Geometry == nil {
		return tUnknown
	}
	if !n.b.Intersects(f.Geometry.Bound()) {
		return tFalse
	}
	return triOf(planar.Intersects(f.Geometry, n.g))
}

// propValue reads a property, or the twin's own members id, layer, version,
// updated and grid; dotted names reach into nested maps (values.ch4).
func propValue(f *twin.Feature, name string) (any, bool) {
	switch name {
	case "id":
		return f.ID.String(), true
	case "layer":
		return string(f.ID.Layer), true
	case "version":
		return float64(f.Version), true
	case "grid":
		return f.Grid(), true
	case "updated":
		return f.Updated.Time().Format("2006-01-02T15:04:05Z"), true
	}
	if v, ok := f.Props.Lookup(name); ok {
		return v, true
	}
	head, rest, ok := strings.Cut(name, ".")
	if !ok {
		return nil, false
	}
	m, _ := f.Props.Get(head).(map[string]any)
	v, ok := m[rest]
	return v, ok
}
