package sphere_test

import (
	"fmt"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/sphere"
)

func ExampleDistance() {
	jiefangbei := orb.Point{106.5775, 29.5577}
	ne1km := sphere.Destination(jiefangbei, 45, 1000)
	fmt.Printf("%.1f m, bearing %.1f°\n", sphere.Distance(jiefangbei, ne1km), sphere.Bearing(jiefangbei, ne1km))
	// Output: 1000.0 m, bearing 45.0°
}

func ExampleExpandBound() {
	// A bbox prefilter for "within 500 m of this point".
	p := orb.Point{106.5775, 29.5577}
	b := sphere.ExpandBound(p.Bound(), 500)
	fmt.Printf("%.5f %.5f\n", b.Max[0]-p[0], b.Max[1]-p[1])
	// Output: 0.00517 0.00450
}
