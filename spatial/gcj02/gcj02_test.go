package gcj02

import (
	"math"
	"testing"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geo"
)

func TestFromWGS84KnownOffset(t *testing.T) {
	// SOURCES.md: around (106.55E, 29.56N) the WGS84->GCJ-02 offset is about
	// +0.00372° lon and -0.00285° lat (360 m east, 315 m south).
	w := orb.Point{106.55, 29.56}
	g := FromWGS84(w)
	dLon, dLat := g[0]-w[0], g[1]-w[1]
	if math.Abs(dLon-0.00372) > 0.00005 || math.Abs(dLat+0.00285) > 0.00005 {
		t.Fatalf("offset at %v = (%.5f, %.5f), want about (+0.00372, -0.00285)", w, dLon, dLat)
	}
	if d := geo.Distance(w, g); d < 400 || d > 550 {
		t.Fatalf("shift distance %.0f m, want ~475 m", d)
	}
}

func TestOutOfChinaUnchanged(t *testing.T) {
	for _, p := range []orb.Point{{2.35, 48.85}, {-74, 40.7}, {151.2, -33.9}, {0, 0}} {
		if !OutOfChina(p) {
			t.Fatalf("%v should be out of China", p)
		}
		if FromWGS84(p) != p || ToWGS84(p) != p {
			t.Fatalf("%v shifted outside China", p)
		}
	}
	for _, p := range []orb.Point{{106.55, 29.56}, {116.39, 39.9}, {121.47, 31.23}} {
		if OutOfChina(p) {
			t.Fatalf("%v should be in China", p)
		}
	}
	nan := orb.Point{math.NaN(), 29}
	if r := ToWGS84(nan); !math.IsNaN(r[0]) || r[1] != 29 {
		t.Fatalf("NaN input: %v", r)
	}
}

func TestRoundTripUnderHalfMetre(t *testing.T) {
	worst := 0.0
	for lon := 73.0; lon <= 135; lon += 0.77 {
		for lat := 18.0; lat <= 53; lat += 0.53 {
			w := orb.Point{lon, lat}
			back := ToWGS84(FromWGS84(w))
			if d := geo.Distance(w, back); d > worst {
				worst = d
			}
			g := orb.Point{lon, lat}
			if d := geo.Distance(g, FromWGS84(ToWGS84(g))); d > worst {
				worst = d
			}
		}
	}
	if worst > 0.5 {
		t.Fatalf("worst round-trip error %.4f m, want < 0.5 m", worst)
	}
	if worst > 0.001 {
		t.Logf("worst round-trip error %.6f m", worst)
	}
}

func TestToWGS84ChongqingCentre(t *testing.T) {
	// 渝中区 centre as DataV publishes it (GCJ-02): the WGS84 point lies
	// ~0.0037° west and ~0.0029° north of it.
	g := orb.Point{106.56288, 29.556742}
	w := ToWGS84(g)
	if w[0] >= g[0] || w[1] <= g[1] {
		t.Fatalf("ToWGS84(%v) = %v, want west and north", g, w)
	}
	if d := geo.Distance(FromWGS84(w), g); d > 0.01 {
		t.Fatalf("inverse misses by %.4f m", d)
	}
}

func TestToWGS84GeometryNewCopy(t *testing.T) {
	poly := orb.Polygon{{{106.5, 29.5}, {106.6, 29.5}, {106.6, 29.6}, {106.5, 29.5}}}
	geoms := []orb.Geometry{
		orb.Point{106.5, 29.5},
		orb.MultiPoint{{106.5, 29.5}},
		orb.LineString{{106.5, 29.5}, {106.6, 29.6}},
		orb.MultiLineString{{{106.5, 29.5}, {106.6, 29.6}}},
		poly,
		orb.MultiPolygon{poly},
		orb.Collection{orb.Point{106.5, 29.5}, poly},
	}
	for _, g := range geoms {
		before := orb.Clone(g)
		out := ToWGS84Geometry(g)
		if !orb.Equal(g, before) {
			t.Fatalf("%s: input modified", g.GeoJSONType())
		}
		if out.GeoJSONType() != g.GeoJSONType() {
			t.Fatalf("type %s -> %s", g.GeoJSONType(), out.GeoJSONType())
		}
		back := FromWGS84Geometry(out)
		if d := geo.Distance(back.Bound().Min, g.Bound().Min); d > 0.01 {
			t.Fatalf("%s: round trip off by %.4f m", g.GeoJSONType(), d)
		}
		if orb.Equal(out, g) {
			t.Fatalf("%s: not converted", g.GeoJSONType())
		}
	}
	if ToWGS84Geometry(nil) != nil {
		t.Fatal("nil geometry")
	}
}

func BenchmarkFromWGS84(b *testing.B) {
	p := orb.Point{106.55, 29.56}
	for b.Loop() {
		_ = FromWGS84(p)
	}
}

func BenchmarkToWGS84(b *testing.B) {
	p := orb.Point{106.55372, 29.55715}
	for b.Loop() {
		_ = ToWGS84(p)
	}
}

func TestPublishedVector(t *testing.T) {
	// The reference pair published with the widely used implementations
	// (wandergis/coordtransform README, eviltransform tests): Tiananmen.
	w := orb.Point{116.404, 39.915}
	want := orb.Point{116.41024449916938, 39.91640428150164}
	if g := FromWGS84(w); math.Abs(g[0]-want[0]) > 1e-9 || math.Abs(g[1]-want[1]) > 1e-9 {
		t.Fatalf("FromWGS84(%v) = %v, want %v", w, g, want)
	}
	// Their inverse is one step (metres off); the iterative inverse
	// recovers the WGS84 point to a millimetre.
	if back := ToWGS84(want); geo.Distance(back, w) > 0.001 {
		t.Fatalf("ToWGS84(%v) = %v, %.4f m from %v", want, back, geo.Distance(back, w), w)
	}
}
