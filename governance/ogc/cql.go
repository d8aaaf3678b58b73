package ogc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// Limits on one filter, so a single request cannot cost the server much
// (a 10,000-term OR chain used to take 27 CPU-seconds): the text's length in
// bytes, the nesting of parentheses and NOT, and the number of predicates.
// Past them the request is a 400.
const (
	MaxFilterLength = 8 << 10
	MaxFilterDepth  = 64
	MaxFilterTerms  = 1000
	// MaxFilterWork bounds one request's evaluation: predicates (plus
	// literal vertices) times features visited. 1,000 predicates over the
	// 50,000 demo buildings is just within it (about 2 CPU-seconds); at
	// larger scales a long filter needs a bbox or a spatial predicate to
	// narrow the candidates, or it is a 400 (ErrFilterTooCostly).
	MaxFilterWork = 50_000_000
)

// ErrFilterTooCostly: evaluating the filter over the candidates would pass
// MaxFilterWork.
var ErrFilterTooCostly = errors.New("filter too costly for this collection")

// Conformance classes of CQL2 this package implements, and only those:
// basic CQL2 (comparisons, IS NULL, AND/OR/NOT with three-valued logic,
// TIMESTAMP/DATE literals), advanced comparison operators (LIKE, BETWEEN,
// IN), and S_INTERSECTS exact on the geometry with every WKT literal and
// BBOX (basic spatial functions, and "plus" for the other geometry types).
var CQL2Conformance = []string{
	"http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
	"http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
	"http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
	"http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
	"http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
}

// CRS84 is the only coordinate reference system of this API (Part 2, other
// CRSs, is not implemented).
const CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

// CheckCRS validates a bbox-crs or filter-crs parameter: empty or CRS84,
// anything else is an error for a 400 (the server does not declare Part 2).
func CheckCRS(param, v string) error {
	if v == "" || v == CRS84 || v == "https://www.opengis.net/def/crs/OGC/1.3/CRS84" || v == "[OGC:CRS84]" {
		return nil
	}
	return fmt.Errorf("%s %q: only %s is supported", param, v, CRS84)
}

// Filter is a compiled CQL2-text expression. It is immutable and safe for
// concurrent use.
type Filter struct {
	root     node
	slots    int // distinct properties named
	cost     int // predicates plus literal vertices: the work per feature
	bound    orb.Bound
	hasBound bool
}

// Match reports whether the filter is TRUE for f (FALSE and unknown, as
// when a compared property is missing, do not select).
func (x *Filter) Match(f *twin.Feature) bool {
	e := env{f: f, vals: make([]value, x.slots), have: make([]bool, x.slots)}
	return x.root.eval(&e) == tTrue
}

// Bound returns a box that the geometry of every matching feature
// intersects, when the filter implies one (an S_INTERSECTS that must hold),
// so callers can take candidates from the spatial index.
func (x *Filter) Bound() (orb.Bound, bool) { return x.bound, x.hasBound }

// Lookup resolves a property name to its queryable; see API.Queryables.
type Lookup func(name string) (Queryable, bool)

// ParseCQL2 compiles a CQL2-text filter. Names are resolved by lookup (an
// unknown name is an error); a nil lookup accepts every name, untyped, and
// takes "geometry" as the geometry. Errors name the byte offset.
func ParseCQL2(src string, lookup Lookup) (*Filter, error) {
	if len(src) > MaxFilterLength {
		return nil, fmt.Errorf("filter: %d bytes, limit %d", len(src), MaxFilterLength)
	}
	toks, err := lexCQL(src)
	if err != nil {
		return nil, err
	}
	if lookup == nil {
		lookup = func(name string) (Queryable, bool) {
			if name == geometryName {
				return Queryable{Name: name, Format: "geometry-any"}, true
			}
			return Queryable{Name: name}, true
		}
	}
	p := &cqlParser{toks: toks, lookup: lookup}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, p.errorf("unexpected %q", p.peek().text)
	}
	f := &Filter{root: root, slots: len(p.slots), cost: p.terms + p.vertices}
	f.bound, f.hasBound = boundOf(root)
	return f, nil
}

// boundOf finds a box that any feature the node holds TRUE for intersects.
func boundOf(n node) (orb.Bound, bool) {
	switch n := n.(type) {
	case intersectsN:
		return n.b, true
	case andN:
		best, ok := orb.Bound{}, false
		for _, e := range n {
			if b, has := boundOf(e); has && (!ok || area(b) < area(best)) {
				best, ok = b, true
			}
		}
		return best, ok
	case orN:
		var u orb.Bound
		for i, e := range n {
			b, has := boundOf(e)
			if !has {
				return orb.Bound{}, false
			}
			if i == 0 {
				u = b
			} else {
				u = u.Union(b)
			}
		}
		return u, len(n) > 0
	}
	return orb.Bound{}, false
}

func area(b orb.Bound) float64 { return (b.Max[0] - b.Min[0]) * (b.Max[1] - b.Min[1]) }

type cqlParser struct {
	toks     []token
	i        int
	lookup   Lookup
	depth    int
	terms    int
	vertices int            // positions in geometry literals
	slots    map[string]int // property name -> env cache slot
}

func (p *cqlParser) slot(name string) int {
	if p.slots == nil {
		p.slots = map[string]int{}
	}
	i, ok := p.slots[name]
	if !ok {
		i = len(p.slots)
		p.slots[name] = i
	}
	return i
}

func (p *cqlParser) peek() token { return p.toks[p.i] }

func (p *cqlParser) peekAt(k int) token {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return p.toks[len(p.toks)-1]
}

func (p *cqlParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *cqlParser) errorf(format string, a ...any) error {
	return fmt.Errorf("filter: at %d: %s", p.peek().pos, fmt.Sprintf(format, a...))
}

func isKeyword(t token, k string) bool { return t.kind == tIdent && strings.EqualFold(t.text, k) }

func (p *cqlParser) keyword(k string) bool {
	if isKeyword(p.peek(), k) {
		p.i++
		return true
	}
	return false
}

func (p *cqlParser) expect(k tokKind, what string) (token, error) {
	if p.peek().kind != k {
		found := p.peek().text
		if p.peek().kind == tEOF {
			found = "end of filter"
		}
		return token{}, p.errorf("expected %s, found %q", what, found)
	}
	return p.next(), nil
}

func (p *cqlParser) enter() error {
	p.depth++
	if p.depth > MaxFilterDepth {
		return p.errorf("nested deeper than %d", MaxFilterDepth)
	}
	return nil
}

func (p *cqlParser) term() error {
	p.terms++
	if p.terms > MaxFilterTerms {
		return p.errorf("more than %d predicates", MaxFilterTerms)
	}
	return nil
}

// or = and {OR and}; chains become one n-ary node, so a long chain costs
// no recursion.
func (p *cqlParser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	if !isKeyword(p.peek(), "OR") {
		return l, nil
	}
	out := orN{l}
	for p.keyword("OR") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (p *cqlParser) and() (node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	if !isKeyword(p.peek(), "AND") {
		return l, nil
	}
	out := andN{l}
	for p.keyword("AND") {
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (p *cqlParser) not() (node, error) {
	if p.keyword("NOT") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		e, err := p.not()
		if err != nil {
			return nil, err
		}
		p.depth--
		return notN{e}, nil
	}
	return p.primary()
}

func (p *cqlParser) primary() (node, error) {
	t := p.peek()
	if t.kind == tLParen {
		p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		p.depth--
		return e, nil
	}
	if err := p.term(); err != nil {
		return nil, err
	}
	if t.kind == tIdent && p.peekAt(1).kind == tLParen {
		name := strings.ToUpper(t.text)
		switch {
		case name == "S_INTERSECTS":
			p.next()
			return p.spatial()
		case strings.HasPrefix(name, "S_"), strings.HasPrefix(name, "T_"), strings.HasPrefix(name, "A_"):
			return nil, p.errorf("%s is not supported (spatial: S_INTERSECTS only; no temporal or array operators)", t.text)
		case name != "TIMESTAMP" && name != "DATE":
			return nil, p.errorf("unknown function %s", t.text)
		}
	}
	// A bare TRUE or FALSE is a predicate of its own unless compared.
	if (isKeyword(t, "TRUE") || isKeyword(t, "FALSE")) && !p.followsComparison(1) {
		p.next()
		return constN(triOf(isKeyword(t, "TRUE"))), nil
	}
	return p.predicate()
}

// followsComparison reports whether the token k ahead starts the rest of a
// comparison predicate (an operator, LIKE, BETWEEN, IN, IS, NOT ...).
func (p *cqlParser) followsComparison(k int) bool {
	t := p.peekAt(k)
	return t.kind == tOp || isKeyword(t, "LIKE") || isKeyword(t, "BETWEEN") || isKeyword(t, "IN") ||
		isKeyword(t, "IS") || (isKeyword(t, "NOT") && (isKeyword(p.peekAt(k+1), "LIKE") ||
		isKeyword(p.peekAt(k+1), "BETWEEN") || isKeyword(p.peekAt(k+1), "IN")))
}

// predicate = scalar (op scalar | [NOT] LIKE pattern | [NOT] BETWEEN a AND b
// | [NOT] IN (list) | IS [NOT] NULL).
func (p *cqlParser) predicate() (node, error) {
	startPos := p.peek().pos
	x, err := p.scalar(true)
	if err != nil {
		return nil, err
	}
	if p.keyword("IS") {
		not := p.keyword("NOT")
		if !p.keyword("NULL") {
			return nil, p.errorf("expected NULL after IS")
		}
		if x.geom {
			return nullN{not: not, geom: true}, nil
		}
		return nullN{x: x.op, not: not}, nil
	}
	if x.geom {
		return nil, fmt.Errorf("filter: at %d: the geometry can only be used in S_INTERSECTS or IS NULL", startPos)
	}
	if t := p.peek(); t.kind == tOp {
		p.next()
		y, err := p.scalar(false)
		if err != nil {
			return nil, err
		}
		if err := comparable(x, y, t.pos); err != nil {
			return nil, err
		}
		return cmpN{l: x.op, r: y.op, op: t.text}, nil
	}
	not := p.keyword("NOT")
	switch {
	case p.keyword("LIKE"):
		pt, err := p.expect(tString, "a pattern string after LIKE")
		if err != nil {
			return nil, err
		}
		if x.typ != vString && x.typ != vNull {
			return nil, fmt.Errorf("filter: at %d: LIKE needs a string", startPos)
		}
		return likeN{x: x.op, pat: compileLike(pt.text), not: not}, nil
	case p.keyword("BETWEEN"):
		lo, err := p.scalar(false)
		if err != nil {
			return nil, err
		}
		if !p.keyword("AND") {
			return nil, p.errorf("expected AND in BETWEEN")
		}
		hi, err := p.scalar(false)
		if err != nil {
			return nil, err
		}
		for _, b := range []scalar{lo, hi} {
			if err := comparable(x, b, startPos); err != nil {
				return nil, err
			}
		}
		return betweenN{x: x.op, lo: lo.op, hi: hi.op, not: not}, nil
	case p.keyword("IN"):
		if _, err := p.expect(tLParen, "'(' after IN"); err != nil {
			return nil, err
		}
		var list []operand
		for {
			y, err := p.scalar(false)
			if err != nil {
				return nil, err
			}
			if err := comparable(x, y, startPos); err != nil {
				return nil, err
			}
			list = append(list, y.op)
			if p.peek().kind != tComma {
				break
			}
			p.next()
			if err := p.term(); err != nil {
				return nil, err
			}
		}
		if _, err := p.expect(tRParen, "')' closing the IN list"); err != nil {
			return nil, err
		}
		return inN{x: x.op, list: list, not: not}, nil
	}
	if not {
		return nil, p.errorf("expected LIKE, BETWEEN or IN after NOT")
	}
	return nil, p.errorf("expected a comparison (=, <>, <, <=, >, >=, LIKE, BETWEEN, IN, IS NULL)")
}

// scalar is a parsed operand with its static type (vNull when unknown).
type scalar struct {
	op   operand
	typ  vkind
	geom bool // the geometry property
	lit  bool
}

func (p *cqlParser) scalar(allowGeom bool) (scalar, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return scalar{op: litOp{value{k: vString, s: t.text}}, typ: vString, lit: true}, nil
	case tNumber:
		n, err := parseNumber(t.text)
		if err != nil {
			return scalar{}, fmt.Errorf("filter: at %d: %w", t.pos, err)
		}
		return scalar{op: litOp{value{k: vNumber, n: n}}, typ: vNumber, lit: true}, nil
	case tIdent, tQuoted:
		if t.kind == tIdent {
			switch strings.ToUpper(t.text) {
			case "TRUE", "FALSE":
				b := strings.EqualFold(t.text, "TRUE")
				return scalar{op: litOp{value{k: vBool, b: b}}, typ: vBool, lit: true}, nil
			case "TIMESTAMP", "DATE":
				return p.instant(t)
			case "NULL":
				return scalar{}, fmt.Errorf("filter: at %d: NULL is not a value; use IS NULL", t.pos)
			}
		}
		q, ok := p.lookup(t.text)
		if !ok {
			return scalar{}, fmt.Errorf("filter: at %d: unknown property %q (see the collection's queryables)", t.pos, t.text)
		}
		if q.IsGeometry() {
			if !allowGeom {
				return scalar{}, fmt.Errorf("filter: at %d: the geometry can only be used in S_INTERSECTS or IS NULL", t.pos)
			}
			return scalar{geom: true}, nil
		}
		return scalar{op: propOp{name: t.text, slot: p.slot(t.text)}, typ: staticType(q)}, nil
	}
	found := t.text
	if t.kind == tEOF {
		found = "end of filter"
	}
	return scalar{}, fmt.Errorf("filter: at %d: expected a property or a literal, found %q", t.pos, found)
}

// instant parses TIMESTAMP('...') or DATE('...').
func (p *cqlParser) instant(fn token) (scalar, error) {
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return scalar{}, err
	}
	s, err := p.expect(tString, "a quoted instant")
	if err != nil {
		return scalar{}, err
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return scalar{}, err
	}
	if strings.EqualFold(fn.text, "DATE") {
		d, err := parseDate(s.text)
		if err != nil {
			return scalar{}, fmt.Errorf("filter: at %d: DATE(%q): want YYYY-MM-DD", s.pos, s.text)
		}
		return scalar{op: litOp{value{k: vDate, t: d}}, typ: vDate, lit: true}, nil
	}
	ts, err := ParseInstant(s.text)
	if err != nil {
		return scalar{}, fmt.Errorf("filter: at %d: TIMESTAMP(%q): want RFC 3339 (2024-05-01T08:00:00Z)", s.pos, s.text)
	}
	return scalar{op: litOp{value{k: vTime, t: ts}}, typ: vTime, lit: true}, nil
}

func staticType(q Queryable) vkind {
	switch {
	case q.Format == "date-time":
		return vTime
	case q.Type == "string":
		return vString
	case q.Type == "number" || q.Type == "integer":
		return vNumber
	case q.Type == "boolean":
		return vBool
	case q.Type == "object" || q.Type == "array":
		return vOther
	}
	return vNull // unknown until evaluated
}

var kindName = map[vkind]string{vString: "a string", vNumber: "a number", vBool: "a boolean",
	vTime: "a timestamp", vDate: "a date", vOther: "an object or array"}

// comparable rejects comparisons that can never be true for any feature
// (a number with a string, an object with anything), so a planner gets a
// 400 that says why instead of an empty answer.
func comparable(a, b scalar, pos int) error {
	ta, tb := a.typ, b.typ
	if ta == vOther || tb == vOther {
		return fmt.Errorf("filter: at %d: cannot compare %s", pos, kindName[vOther])
	}
	if ta == vNull || tb == vNull || ta == tb {
		return nil
	}
	timeish := func(k vkind) bool { return k == vTime || k == vDate }
	if timeish(ta) && timeish(tb) {
		return nil
	}
	// A string literal next to a timestamp must read as one.
	for _, pair := range [][2]scalar{{a, b}, {b, a}} {
		s, o := pair[0], pair[1]
		if s.typ == vString && timeish(o.typ) {
			if !s.lit {
				return nil // a string property may hold timestamps
			}
			if _, ok := asTime(s.op.value(nil)); ok {
				return nil
			}
		}
	}
	return fmt.Errorf("filter: at %d: cannot compare %s with %s", pos, kindName[ta], kindName[tb])
}

func parseNumber(s string) (float64, error) {
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return n, nil
}

// ParseInstant reads an RFC 3339 timestamp. The "T" and "Z" may be lower
// case, as RFC 3339 section 5.6 allows.
func ParseInstant(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, strings.ToUpper(s))
}

func parseDate(s string) (time.Time, error) {
	return time.Parse(time.DateOnly, s)
}

// spatial parses the arguments of S_INTERSECTS: the geometry property and
// a literal, in either order.
func (p *cqlParser) spatial() (node, error) {
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return nil, err
	}
	var args [2]orb.Geometry // nil = the geometry property
	for i := range args {
		if i == 1 {
			if _, err := p.expect(tComma, "','"); err != nil {
				return nil, err
			}
		}
		t := p.peek()
		if (t.kind == tIdent || t.kind == tQuoted) && p.peekAt(1).kind != tLParen && !isGeomKeyword(t) {
			p.next()
			q, ok := p.lookup(t.text)
			if !ok {
				return nil, fmt.Errorf("filter: at %d: unknown property %q (see the collection's queryables)", t.pos, t.text)
			}
			if !q.IsGeometry() {
				return nil, fmt.Errorf("filter: at %d: %q is not the geometry", t.pos, t.text)
			}
			continue
		}
		g, err := p.geometry()
		if err != nil {
			return nil, err
		}
		args[i] = g
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return nil, err
	}
	switch {
	case args[0] == nil && args[1] == nil:
		return nil, p.errorf("S_INTERSECTS compares the geometry with a literal")
	case args[0] != nil && args[1] != nil:
		return constN(triOf(intersectsLiterals(args[0], args[1]))), nil
	}
	g := args[0]
	if g == nil {
		g = args[1]
	}
	return intersectsN{g: g, b: g.Bound()}, nil
}

func isGeomKeyword(t token) bool {
	if t.kind != tIdent {
		return false
	}
	switch strings.ToUpper(t.text) {
	case "POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION", "BBOX":
		return true
	}
	return false
}
