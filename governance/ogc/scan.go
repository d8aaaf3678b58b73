package ogc

import (
	"context"
	"fmt"
	"strings"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// MatchBBox reports whether a feature geometry passes a bbox= query: the
// exact geometry intersects the closed box (not just its envelope), and a
// feature without geometry matches every box (OGC API Features Part 1,
// /req/core/fc-bbox-response). A box whose west edge is greater than its
// east edge crosses the antimeridian.
func MatchBBox(g orb.Geometry, b orb.Bound) bool {
	if g == nil {
		return true
	}
	if b.Min[0] > b.Max[0] {
		return planar.Intersects(g, orb.Bound{Min: b.Min, Max: orb.Point{180, b.Max[1]}}) ||
			planar.Intersects(g, orb.Bound{Min: orb.Point{-180, b.Min[1]}, Max: b.Max})
	}
	return planar.Intersects(g, b)
}

// ParseItemsBBox parses the bbox parameter of the items endpoint (Part 1,
// /req/core/fc-bbox-definition): "w,s,e,n" or "w,s,zmin,e,n,zmax" (heights
// ignored) in CRS84. A west edge greater than the east one crosses the
// antimeridian; the Bound then has Min[0] > Max[0], which MatchBBox and
// scan understand (orb's own Bound methods do not: use those two).
func ParseItemsBBox(s string) (orb.Bound, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 && len(parts) != 6 {
		return orb.Bound{}, fmt.Errorf("bbox %q: want 4 numbers (minLon,minLat,maxLon,maxLat) or 6 (with heights)", s)
	}
	v := make([]float64, len(parts))
	for i, p := range parts {
		n, err := parseNumber(strings.TrimSpace(p))
		if err != nil {
			return orb.Bound{}, fmt.Errorf("bbox %q: %q is not a number", s, p)
		}
		v[i] = n
	}
	if len(v) == 6 {
		v = []float64{v[0], v[1], v[3], v[4]}
	}
	if _, err := BoxGeometry(v[0], v[1], v[2], v[3]); err != nil {
		return orb.Bound{}, fmt.Errorf("bbox %q: %w", s, err)
	}
	return orb.Bound{Min: orb.Point{v[0], v[1]}, Max: orb.Point{v[2], v[3]}}, nil
}

// checkEvery is how many features scan visits between looks at the request
// context.
const checkEvery = 256

// scan calls fn for each feature of layer l that may pass bbox and filter;
// fn then decides exactly (MatchBBox, Filter.Match). Candidates come from the
// spatial index when the filter implies a box (features without geometry
// cannot satisfy a spatial predicate) or when bbox is set (plus the
// features without geometry, which match every bbox); otherwise every
// feature of the layer is visited. It stops and returns ctx.Err() as soon
// as the request is cancelled (the client left), so an expensive filter
// does not run on for nobody, and returns ErrFilterTooCostly once the
// filter's cost times the features visited passes MaxFilterWork.
func (a *API) scan(ctx context.Context, l twin.Layer, bbox *orb.Bound, filter *Filter, fn func(*twin.Feature) bool) error {
	n := 0
	var err error
	visit := func(f *twin.Feature) bool {
		if err != nil {
			return false
		}
		if n++; n%checkEvery == 0 {
			if err = ctx.Err(); err != nil {
				return false
			}
			if filter != nil && int64(n)*int64(filter.cost) > MaxFilterWork {
				err = fmt.Errorf("%w: %d predicates and literal vertices over more than %d features; narrow it with bbox= or S_INTERSECTS",
					ErrFilterTooCostly, filter.cost, n)
				return false
			}
		}
		return fn(f)
	}
	var boxes []orb.Bound
	withUnlocated := false
	if fb, ok := filter.candidateBox(); ok {
		boxes = []orb.Bound{fb}
	} else if bbox != nil {
		boxes = splitAntimeridian(*bbox)
		withUnlocated = a.tw.Unlocated(l) > 0
	} else {
		a.tw.Range(l, visit)
		return err
	}
	if len(boxes) == 1 {
		a.tw.Search(l, boxes[0], visit)
	} else {
		seen := map[twin.ID]bool{}
		for _, b := range boxes {
			a.tw.Search(l, b, func(f *twin.Feature) bool {
				if seen[f.ID] {
					return true
				}
				seen[f.ID] = true
				return visit(f)
			})
		}
	}
	if err == nil && withUnlocated {
		a.tw.Range(l, func(f *twin.Feature) bool { return f.Geometry != nil || visit(f) })
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// candidateBox is Bound on a possibly nil filter.
func (x *Filter) candidateBox() (orb.Bound, bool) {
	if x == nil {
		return orb.Bound{}, false
	}
	return x.Bound()
}

func splitAntimeridian(b orb.Bound) []orb.Bound {
	if b.Min[0] <= b.Max[0] {
		return []orb.Bound{b}
	}
	return []orb.Bound{
		{Min: b.Min, Max: orb.Point{180, b.Max[1]}},
		{Min: orb.Point{-180, b.Min[1]}, Max: b.Max},
	}
}
