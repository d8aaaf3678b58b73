package demo

import (
	"fmt"
	"math"
	"sort"

	"github.com/paulmach/orb"
)

// The layout is a hand-drawn planar map of central Chongqing (see
// shared/data/facts/central-chongqing.md): a lon/lat box cut by the Jialing
// and Yangtze centrelines and a few straight land borders into eight
// districts. Every district is a ring of named nodes; two districts that
// share a border list the same nodes, and densifyEdge computes each border's
// intermediate points in one canonical direction, so shared borders are
// bit-identical and the districts tile the box exactly.

// Box is the demo city's extent (the city region 500000), lon/lat degrees.
var box = orb.Bound{Min: orb.Point{106.36, 29.42}, Max: orb.Point{106.76, 29.90}}

// Box returns the demo city's extent in lon/lat degrees.
func Box() orb.Bound { return box }

// Chaotianmen is the confluence of the Jialing and the Yangtze.
var chaotianmen = orb.Point{106.589, 29.564}

// nodes of the planar map, lon/lat degrees. J* lie on the Jialing
// centreline (upstream first), Y* on the Yangtze centreline (upstream first);
// C is the confluence.
var nodes = map[string]orb.Point{
	"SW": {106.36, 29.42}, "SE": {106.76, 29.42}, "NE": {106.76, 29.90}, "NW": {106.36, 29.90},
	"J0": {106.42, 29.90}, "J1": {106.44, 29.80}, "J2": {106.46, 29.74}, "J3": {106.465, 29.70},
	"J4": {106.47, 29.64}, "J5": {106.475, 29.60}, "J6": {106.49, 29.582}, "J7": {106.52, 29.576},
	"J8": {106.555, 29.572}, "C": chaotianmen,
	"Y0": {106.36, 29.44}, "Y1": {106.42, 29.455}, "Y2": {106.47, 29.475}, "Y3": {106.50, 29.50},
	"Y4": {106.53, 29.527}, "Y5": {106.56, 29.548}, "Y6": {106.615, 29.578}, "Y7": {106.645, 29.60},
	"Y8": {106.69, 29.618}, "Y9": {106.76, 29.63},
	"K1": {106.62, 29.66},   // Jiangbei / Yubei border
	"P1": {106.51, 29.5545}, // Yuzhong / Shapingba / Jiulongpo
	"D0": {106.36, 29.49},   // Dadukou / Jiulongpo on the west edge
	"W1": {106.36, 29.56},   // Jiulongpo / Shapingba
	"W2": {106.36, 29.70},   // Shapingba / Beibei
}

// river centrelines, upstream first.
var (
	jialingLine = []string{"J0", "J1", "J2", "J3", "J4", "J5", "J6", "J7", "J8", "C"}
	yangtzeLine = []string{"Y0", "Y1", "Y2", "Y3", "Y4", "Y5", "C", "Y6", "Y7", "Y8", "Y9"}
)

// districtDef is one district: its adcode, names, ring of nodes, a kernel
// point from which the whole ring is visible (the polygon is star-shaped
// around it, which makes the street subdivision exact), and a weight for
// how densely it is built up.
type districtDef struct {
	code, name, nameZH string
	ring               []string
	kernel             orb.Point
	density            float64
}

var districtDefs = []districtDef{
	{"500103", "Yuzhong", "渝中区", []string{"J6", "J7", "J8", "C", "Y5", "Y4", "P1"}, orb.Point{106.53, 29.558}, 6},
	{"500104", "Dadukou", "大渡口区", []string{"Y0", "Y1", "Y2", "Y3", "D0"}, orb.Point{106.42, 29.475}, 1},
	{"500105", "Jiangbei", "江北区", []string{"J4", "J5", "J6", "J7", "J8", "C", "Y6", "Y7", "K1"}, orb.Point{106.54, 29.61}, 2.5},
	{"500106", "Shapingba", "沙坪坝区", []string{"W1", "P1", "J6", "J5", "J4", "J3", "W2"}, orb.Point{106.42, 29.63}, 1.2},
	{"500107", "Jiulongpo", "九龙坡区", []string{"D0", "Y3", "Y4", "P1", "W1"}, orb.Point{106.43, 29.52}, 1.5},
	{"500108", "Nan'an", "南岸区", []string{"Y0", "SW", "SE", "Y9", "Y8", "Y7", "Y6", "C", "Y5", "Y4", "Y3", "Y2", "Y1"}, orb.Point{106.60, 29.49}, 0.8},
	{"500109", "Beibei", "北碚区", []string{"W2", "J3", "J2", "J1", "J0", "NW"}, orb.Point{106.41, 29.80}, 0.3},
	{"500112", "Yubei", "渝北区", []string{"J4", "K1", "Y7", "Y8", "Y9", "NE", "J0", "J1", "J2", "J3"}, orb.Point{106.58, 29.76}, 0.4},
}

// maxEdgeDeg is the longest border segment after densification (about
// 500 m): enough vertices to cut every district into its streets.
const maxEdgeDeg = 0.005

// densifyEdge returns the points of the border from node a to node b,
// including a and excluding b. Points are computed from the
// lexicographically smaller node so both districts get identical floats.
func densifyEdge(a, b string) []orb.Point {
	from, to, rev := a, b, false
	if b < a {
		from, to, rev = b, a, true
	}
	p, q := nodes[from], nodes[to]
	n := int(math.Ceil(math.Hypot(q[0]-p[0], q[1]-p[1]) / maxEdgeDeg))
	if n < 1 {
		n = 1
	}
	pts := make([]orb.Point, 0, n+1)
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		pts = append(pts, round(orb.Point{p[0] + t*(q[0]-p[0]), p[1] + t*(q[1]-p[1])}))
	}
	if rev {
		for i, j := 0, len(pts)-1; i < j; i, j = i+1, j-1 {
			pts[i], pts[j] = pts[j], pts[i]
		}
	}
	return pts[:len(pts)-1]
}

// densifyRing turns a ring of node names into an open list of points.
func densifyRing(ring []string) []orb.Point {
	var pts []orb.Point
	for i, a := range ring {
		pts = append(pts, densifyEdge(a, ring[(i+1)%len(ring)])...)
	}
	return pts
}

// round keeps 7 decimals (about 1 cm): smaller output, stable bytes.
func round(p orb.Point) orb.Point {
	return orb.Point{math.Round(p[0]*1e7) / 1e7, math.Round(p[1]*1e7) / 1e7}
}

// angles returns each point's polar angle around k, unwrapped so that it
// increases along the list, and an error when the list is not strictly
// monotonic around k (the polygon would not be star-shaped around k).
// Points are made counter-clockwise first.
func starAngles(k orb.Point, pts []orb.Point) ([]orb.Point, []float64, error) {
	if signedArea(pts) < 0 {
		rev := make([]orb.Point, len(pts))
		for i, p := range pts {
			rev[len(pts)-1-i] = p
		}
		pts = rev
	}
	as := make([]float64, len(pts))
	for i, p := range pts {
		a := math.Atan2(p[1]-k[1], p[0]-k[0])
		if i > 0 {
			for a <= as[i-1] {
				a += 2 * math.Pi
			}
		}
		as[i] = a
	}
	if as[len(as)-1]-as[0] >= 2*math.Pi {
		return nil, nil, fmt.Errorf("ring is not star-shaped around %v", k)
	}
	return pts, as, nil
}

// signedArea is the shoelace area of an open ring in square degrees,
// positive when counter-clockwise.
func signedArea(pts []orb.Point) float64 {
	var s float64
	for i, p := range pts {
		q := pts[(i+1)%len(pts)]
		s += p[0]*q[1] - q[0]*p[1]
	}
	return s / 2
}

// closed returns the ring closed (first point repeated at the end).
func closed(pts []orb.Point) orb.Ring {
	r := make(orb.Ring, 0, len(pts)+1)
	r = append(r, pts...)
	return append(r, pts[0])
}

// scaleToward moves p toward k so that its distance is s times the original.
func scaleToward(k, p orb.Point, s float64) orb.Point {
	return orb.Point{k[0] + s*(p[0]-k[0]), k[1] + s*(p[1]-k[1])}
}

// splitIndices picks n vertex indices whose angles are closest to n evenly
// spaced angles, strictly increasing, starting at an offset angle.
func splitIndices(as []float64, n int, offset float64) []int {
	total := 2 * math.Pi
	idx := make([]int, 0, n)
	for j := 0; j < n; j++ {
		want := as[0] + math.Mod(offset+total*float64(j)/float64(n), total)
		i := sort.SearchFloat64s(as, want)
		if i >= len(as) {
			i = len(as) - 1
		}
		if i > 0 && want-as[i-1] < as[i]-want {
			i--
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	// Deduplicate: force strict increase, leaving room at the end.
	out := idx[:0]
	for _, i := range idx {
		if len(out) > 0 && i <= out[len(out)-1] {
			i = out[len(out)-1] + 1
		}
		if i >= len(as) {
			break
		}
		out = append(out, i)
	}
	return out
}

// metresPerDegree returns the size of one degree of longitude and latitude
// in metres at latitude lat (spherical Earth, radius 6,371,008.8 m).
func metresPerDegree(lat float64) (lon, latM float64) {
	const r = 6371008.8
	m := r * math.Pi / 180
	return m * math.Cos(lat*math.Pi/180), m
}

// offsetMetres moves p by (east, north) metres.
func offsetMetres(p orb.Point, east, north float64) orb.Point {
	mx, my := metresPerDegree(p[1])
	return orb.Point{p[0] + east/mx, p[1] + north/my}
}

// distMetres is the local planar distance in metres between two nearby points.
func distMetres(a, b orb.Point) float64 {
	mx, my := metresPerDegree((a[1] + b[1]) / 2)
	return math.Hypot((a[0]-b[0])*mx, (a[1]-b[1])*my)
}

// segDistMetres is the local planar distance from p to segment ab in metres.
func segDistMetres(p, a, b orb.Point) float64 {
	mx, my := metresPerDegree(p[1])
	px, py := (p[0]-a[0])*mx, (p[1]-a[1])*my
	bx, by := (b[0]-a[0])*mx, (b[1]-a[1])*my
	l2 := bx*bx + by*by
	t := 0.0
	if l2 > 0 {
		t = math.Max(0, math.Min(1, (px*bx+py*by)/l2))
	}
	return math.Hypot(px-t*bx, py-t*by)
}
