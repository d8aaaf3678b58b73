package ogc

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

// Filter is a compiled CQL2-text expression (OGC API Features Part 3, the
// basic subset: comparisons, AND/OR/NOT, parentheses, S_INTERSECTS with a
// BBOX, POINT or POLYGON literal).
type Filter interface {
	Match(f *twin.Feature) bool
}

// ParseCQL2 compiles a CQL2-text filter. Errors name the offending position.
func ParseCQL2(src string) (Filter, error) {
	toks, err := lexCQL(src)
	if err != nil {
		return nil, err
	}
	p := &cqlParser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, p.errorf("unexpected %q", p.peek().text)
	}
	return e, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func lexCQL(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		case c == ',':
			out = append(out, token{tComma, ",", i})
			i++
		case c == '\'':
			j := i + 1
			var b strings.Builder
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("filter: unterminated string at %d", i)
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			out = append(out, token{tString, b.String(), i})
			i = j + 1
		case c == '=' || c == '<' || c == '>':
			j := i + 1
			if j < len(s) && (s[j] == '=' || (c == '<' && s[j] == '>')) {
				j++
			}
			out = append(out, token{tOp, s[i:j], i})
			i = j
		case c == '-' || c == '+' || c == '.' || unicode.IsDigit(c):
			j := i + 1
			for j < len(s) && (unicode.IsDigit(rune(s[j])) || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				((s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			out = append(out, token{tNumber, s[i:j], i})
			i = j
		case unicode.IsLetter(c) || c == '_' || c == '"':
			if c == '"' {
				j := strings.IndexByte(s[i+1:], '"')
				if j < 0 {
					return nil, fmt.Errorf("filter: unterminated quoted name at %d", i)
				}
				out = append(out, token{tIdent, s[i+1 : i+1+j], i})
				i += j + 2
				continue
			}
			j := i + 1
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || s[j] == '_' || s[j] == '.' || s[j] == ':') {
				j++
			}
			out = append(out, token{tIdent, s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("filter: unexpected character %q at %d", c, i)
		}
	}
	return append(out, token{tEOF, "", len(s)}), nil
}

type cqlParser struct {
	toks []token
	i    int
}

func (p *cqlParser) peek() token { return p.toks[p.i] }
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
func (p *cqlParser) keyword(k string) bool {
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.text, k) {
		p.i++
		return true
	}
	return false
}
func (p *cqlParser) expect(k tokKind, what string) (token, error) {
	if p.peek().kind != k {
		return token{}, p.errorf("expected %s, found %q", what, p.peek().text)
	}
	return p.next(), nil
}

func (p *cqlParser) or() (Filter, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword("OR") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orF{l, r}
	}
	return l, nil
}

func (p *cqlParser) and() (Filter, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.keyword("AND") {
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = andF{l, r}
	}
	return l, nil
}

func (p *cqlParser) not() (Filter, error) {
	if p.keyword("NOT") {
		e, err := p.not()
		if err != nil {
			return nil, err
		}
		return notF{e}, nil
	}
	return p.primary()
}

func (p *cqlParser) primary() (Filter, error) {
	if p.peek().kind == tLParen {
		p.next()
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return e, nil
	}
	if p.keyword("S_INTERSECTS") {
		return p.spatial()
	}
	name, err := p.expect(tIdent, "a property name")
	if err != nil {
		return nil, err
	}
	op, err := p.expect(tOp, "a comparison operator (=, <>, <, <=, >, >=)")
	if err != nil {
		return nil, err
	}
	lit, err := p.literal()
	if err != nil {
		return nil, err
	}
	return cmpF{prop: name.text, op: op.text, lit: lit}, nil
}

func (p *cqlParser) literal() (any, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return t.text, nil
	case tNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("filter: at %d: bad number %q", t.pos, t.text)
		}
		return f, nil
	case tIdent:
		switch strings.ToUpper(t.text) {
		case "TRUE":
			return true, nil
		case "FALSE":
			return false, nil
		}
	}
	return nil, fmt.Errorf("filter: at %d: expected a literal, found %q", t.pos, t.text)
}

func (p *cqlParser) spatial() (Filter, error) {
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return nil, err
	}
	if _, err := p.expect(tIdent, "the geometry property"); err != nil {
		return nil, err
	}
	if _, err := p.expect(tComma, "','"); err != nil {
		return nil, err
	}
	g, err := p.geometry()
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return nil, err
	}
	return intersectsF{g: g, b: g.Bound()}, nil
}

func (p *cqlParser) numbers(n int) ([]float64, error) {
	var out []float64
	for {
		t, err := p.expect(tNumber, "a number")
		if err != nil {
			return nil, err
		}
		f, _ := strconv.ParseFloat(t.text, 64)
		out = append(out, f)
		if n > 0 && len(out) == n {
			return out, nil
		}
		if p.peek().kind != tNumber {
			return out, nil
		}
	}
}

func (p *cqlParser) geometry() (orb.Geometry, error) {
	switch {
	case p.keyword("BBOX"):
		if _, err := p.expect(tLParen, "'('"); err != nil {
			return nil, err
		}
		var v []float64
		for len(v) < 4 {
			n, err := p.numbers(1)
			if err != nil {
				return nil, err
			}
			v = append(v, n...)
			if len(v) < 4 {
				if _, err := p.expect(tComma, "','"); err != nil {
					return nil, err
				}
			}
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return orb.Bound{Min: orb.Point{v[0], v[1]}, Max: orb.Point{v[2], v[3]}}.ToPolygon(), nil
	case p.keyword("POINT"):
		if _, err := p.expect(tLParen, "'('"); err != nil {
			return nil, err
		}
		v, err := p.numbers(2)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return orb.Point{v[0], v[1]}, nil
	case p.keyword("POLYGON"):
		if _, err := p.expect(tLParen, "'('"); err != nil {
			return nil, err
		}
		var poly orb.Polygon
		for {
			if _, err := p.expect(tLParen, "'('"); err != nil {
				return nil, err
			}
			var ring orb.Ring
			for {
				v, err := p.numbers(2)
				if err != nil {
					return nil, err
				}
				ring = append(ring, orb.Point{v[0], v[1]})
				if p.peek().kind != tComma {
					break
				}
				p.next()
			}
			if _, err := p.expect(tRParen, "')'"); err != nil {
				return nil, err
			}
			if len(ring) < 4 || ring[0] != ring[len(ring)-1] {
				return nil, p.errorf("polygon ring must be closed with at least 4 positions")
			}
			poly = append(poly, ring)
			if p.peek().kind != tComma {
				break
			}
			p.next()
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return poly, nil
	}
	return nil, p.errorf("expected BBOX(...), POINT(...) or POLYGON((...))")
}

type andF struct{ l, r Filter }
type orF struct{ l, r Filter }
type notF struct{ e Filter }

func (f andF) Match(x *twin.Feature) bool { return f.l.Match(x) && f.r.Match(x) }
func (f orF) Match(x *twin.Feature) bool  { return f.l.Match(x) || f.r.Match(x) }
func (f notF) Match(x *twin.Feature) bool { return !f.e.Match(x) }

type cmpF struct {
	prop string
	op   string
	lit  any
}

func (c cmpF) Match(f *twin.Feature) bool {
	v, ok := propValue(f, c.prop)
	if !ok {
		return false
	}
	switch lit := c.lit.(type) {
	case float64:
		n, ok := twin.ToFloat(v)
		if !ok {
			return false
		}
		return compare(cmp.Compare(n, lit), c.op)
	case string:
		s := fmt.Sprint(v)
		return compare(strings.Compare(s, lit), c.op)
	case bool:
		b, ok := v.(bool)
		if !ok {
			return false
		}
		eq := b == lit
		return (c.op == "=" && eq) || (c.op == "<>" && !eq)
	}
	return false
}

func compare(c int, op string) bool {
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

// propValue reads a property, or the twin's own fields id, layer, version,
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
		return f.Grid, true
	case "updated":
		return f.Updated.UTC().Format("2006-01-02T15:04:05Z"), true
	}
	if v, ok := f.Props[name]; ok {
		return v, true
	}
	head, rest, ok := strings.Cut(name, ".")
	if !ok {
		return nil, false
	}
	m, _ := f.Props[head].(map[string]any)
	v, ok := m[rest]
	return v, ok
}

type intersectsF struct {
	g orb.Geometry
	b orb.Bound
}

func (s intersectsF) Match(f *twin.Feature) bool {
	if f.Geometry == nil || !s.b.Intersects(f.Geometry.Bound()) {
		return false
	}
	return intersects(f.Geometry, s.g)
}

// intersects tests a feature geometry against a filter geometry: exact for
// points, and by vertices and bounds for lines and polygons (a line crossing
// a polygon with no vertex inside is caught when the polygon has a vertex in
// the line's bound, which suffices for the viewport-style filters planners use).
func intersects(g orb.Geometry, filter orb.Geometry) bool {
	poly, isPoly := filter.(orb.Polygon)
	if pt, ok := filter.(orb.Point); ok {
		switch gg := g.(type) {
		case orb.Polygon:
			return planar.PolygonContains(gg, pt)
		case orb.MultiPolygon:
			return planar.MultiPolygonContains(gg, pt)
		case orb.Point:
			return gg == pt
		}
		return g.Bound().Contains(pt)
	}
	if !isPoly {
		return true
	}
	if pt, ok := g.(orb.Point); ok {
		return planar.PolygonContains(poly, pt)
	}
	inside := false
	eachVertex(g, func(p orb.Point) bool {
		if planar.PolygonContains(poly, p) {
			inside = true
			return false
		}
		return true
	})
	if inside {
		return true
	}
	gb := g.Bound()
	for _, p := range poly[0] {
		if gb.Contains(p) {
			return true
		}
	}
	return false
}

func eachVertex(g orb.Geometry, fn func(orb.Point) bool) {
	switch gg := g.(type) {
	case orb.Point:
		fn(gg)
	case orb.MultiPoint:
		for _, p := range gg {
			if !fn(p) {
				return
			}
		}
	case orb.LineString:
		for _, p := range gg {
			if !fn(p) {
				return
			}
		}
	case orb.MultiLineString:
		for _, ls := range gg {
			for _, p := range ls {
				if !fn(p) {
					return
				}
			}
		}
	case orb.Polygon:
		for _, p := range gg[0] {
			if !fn(p) {
				return
			}
		}
	case orb.MultiPolygon:
		for _, pg := range gg {
			for _, p := range pg[0] {
				if !fn(p) {
					return
				}
			}
		}
	}
}
