package twin

import (
	"math"
	"strings"
	"testing"

	"github.com/paulmach/orb"
)

func TestValidGeometry(t *testing.T) {
	square := orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29.1}, {106, 29}}}
	bowtie := orb.Polygon{{{106, 29}, {106.1, 29.1}, {106.1, 29}, {106, 29.1}, {106, 29}}}
	for _, c := range []struct {
		g    orb.Geometry
		want string // "" = valid
	}{
		{orb.Point{106.5, 29.5}, ""},
		{square, ""},
		{orb.LineString{{106, 29}, {106.1, 29}}, ""},
		{nil, "empty"},
		{orb.Point{200, 29}, "out of range"},
		{orb.Point{math.NaN(), 29}, "not finite"},
		{orb.LineString{{106, 29}}, "at least 2"},
		{bowtie, "self-intersecting"},
		{orb.MultiPolygon{}, "empty"},
		{orb.Collection{orb.Point{1, 2}}, "unsupported"},
	} {
		err := ValidGeometry(c.g)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.g, err, c.want)
		}
	}
}
