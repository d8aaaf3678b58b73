package sphere

import (
	"math"
	"testing"

	"github.com/paulmach/orb"
)

// Jiefangbei (Chongqing CBD) and Chaotianmen, about 1.6 km apart.
var (
	jiefangbei  = orb.Point{106.5775, 29.5577}
	chaotianmen = orb.Point{106.5863, 29.5647}
)

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %v, want %v ± %v", name, got, want, tol)
	}
}

func TestDistance(t *testing.T) {
	// One degree of latitude on this sphere: R*pi/180.
	near(t, "1 deg lat", Distance(orb.Point{106, 29}, orb.Point{106, 30}), EarthRadius*math.Pi/180, 1e-6)
	near(t, "same point", Distance(jiefangbei, jiefangbei), 0, 0)
	// One degree of longitude at 29.5N: R*cos(lat)*pi/180 (≈ 96.8 km); the
	// great circle is slightly shorter than the parallel.
	want := EarthRadius * math.Cos(29.5*deg2rad) * math.Pi / 180
	near(t, "1 deg lon", Distance(orb.Point{106, 29.5}, orb.Point{107, 29.5}), want, 5)
	d := Distance(jiefangbei, chaotianmen)
	near(t, "jiefangbei-chaotianmen", d, 1150, 50)
	near(t, "symmetric", Distance(chaotianmen, jiefangbei), d, 1e-9)
}

func TestPointSegmentDistance(t *testing.T) {
	a, b := orb.Point{106.50, 29.50}, orb.Point{106.52, 29.50}
	// 0.001 deg north of the middle of an east-west segment.
	p := orb.Point{106.51, 29.501}
	near(t, "perpendicular", PointSegmentDistance(p, a, b), Distance(p, orb.Point{106.51, 29.50}), 0.01)
	// Beyond the end: distance to the endpoint.
	q := orb.Point{106.53, 29.50}
	near(t, "past end", PointSegmentDistance(q, a, b), Distance(q, b), 0.5)
	near(t, "on segment", PointSegmentDistance(orb.Point{106.505, 29.5}, a, b), 0, 1e-6)
	near(t, "degenerate", PointSegmentDistance(p, a, a), Distance(p, a), 0.5)
}

func TestPointLineAndPolygonDistance(t *testing.T) {
	ls := orb.LineString{{106.50, 29.50}, {106.51, 29.50}, {106.51, 29.51}}
	p := orb.Point{106.512, 29.505}
	near(t, "line", PointLineDistance(p, ls), Distance(p, orb.Point{106.51, 29.505}), 0.05)
	if !math.IsInf(PointLineDistance(p, nil), 1) {
		t.Error("empty line should be +Inf")
	}
	sq := orb.Polygon{
		{{106.50, 29.50}, {106.52, 29.50}, {106.52, 29.52}, {106.50, 29.52}, {106.50, 29.50}},
		{{106.505, 29.505}, {106.515, 29.505}, {106.515, 29.515}, {106.505, 29.515}, {106.505, 29.505}},
	}
	near(t, "inside", PointPolygonDistance(orb.Point{106.502, 29.502}, sq), 0, 0)
	// In the hole, 0.001 deg from the hole's west edge.
	inHole := orb.Point{106.506, 29.51}
	near(t, "in hole", PointPolygonDistance(inHole, sq), Distance(inHole, orb.Point{106.505, 29.51}), 0.05)
	out := orb.Point{106.51, 29.53}
	near(t, "outside", PointPolygonDistance(out, sq), Distance(out, orb.Point{106.51, 29.52}), 0.05)
	near(t, "geometry", PointGeometryDistance(out, orb.MultiPolygon{sq}), Distance(out, orb.Point{106.51, 29.52}), 0.05)
}

func TestBearingDestination(t *testing.T) {
	o := orb.Point{106.55, 29.56}
	for _, brg := range []float64{0, 45, 90, 135, 180, 270, 359} {
		for _, m := range []float64{10, 1000, 20000} {
			d := Destination(o, brg, m)
			near(t, "distance back", Distance(o, d), m, m*1e-9+1e-6)
			got := Bearing(o, d)
			diff := math.Mod(got-brg+540, 360) - 180
			near(t, "bearing back", diff, 0, 1e-6)
		}
	}
	near(t, "north", Bearing(o, orb.Point{106.55, 29.6}), 0, 1e-9)
	near(t, "east", Bearing(o, orb.Point{106.56, 29.56}), 90, 0.01)
	near(t, "west", Bearing(o, orb.Point{106.54, 29.56}), 270, 0.01)
}

func TestExpandBound(t *testing.T) {
	b := orb.Bound{Min: orb.Point{106.5, 29.5}, Max: orb.Point{106.6, 29.6}}
	e := ExpandBound(b, 500)
	// Every point 500 m out from the box's corners and edges must be inside.
	for _, c := range []orb.Point{b.Min, b.Max, {b.Min[0], b.Max[1]}, {b.Max[0], b.Min[1]}} {
		for brg := 0.0; brg < 360; brg += 15 {
			if q := Destination(c, brg, 499.9); !e.Contains(q) {
				t.Fatalf("expanded %v misses %v", e, q)
			}
		}
	}
	dLat, dLon := MetresToDegrees(29.5, 1000)
	near(t, "dLat", dLat, 1000/(EarthRadius*deg2rad), 1e-12)
	near(t, "dLon", dLon, dLat/math.Cos(29.5*deg2rad), 1e-12)
	if _, dl := MetresToDegrees(90, 1); dl != 360 {
		t.Errorf("pole dLon = %v, want 360", dl)
	}
}

func BenchmarkDistance(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = Distance(jiefangbei, chaotianmen)
	}
}

func BenchmarkPointLineDistance(b *testing.B) {
	ls := make(orb.LineString, 0, 100)
	for i := 0; i < 100; i++ {
		ls = append(ls, orb.Point{106.5 + float64(i)*0.0002, 29.5 + float64(i%7)*0.0001})
	}
	p := orb.Point{106.51, 29.52}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = PointLineDistance(p, ls)
	}
}
