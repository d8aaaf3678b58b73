package planar

import (
	"math"
	"testing"

	"github.com/paulmach/orb"
)

// A 20 m building's centroid in absolute lon/lat must not lose precision
// to cancellation in the cross products.
func TestCentroidSmallPolygonPrecision(t *testing.T) {
	x, y := 106.5612345, 29.5612345
	d := 0.0002 // about 20 m
	poly := orb.Polygon{{{x, y}, {x + d, y}, {x + d, y + d/2}, {x, y + d/2}, {x, y}}}
	c, ok := Centroid(poly)
	want := orb.Point{x + d/2, y + d/4}
	if !ok || math.Abs(c[0]-want[0]) > 1e-9 || math.Abs(c[1]-want[1]) > 1e-9 {
		t.Fatalf("centroid %v, want %v", c, want)
	}
}
