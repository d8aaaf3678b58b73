package tiles

import (
	"math"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// TestSizeAtMatchesSizeOf: the memo's cached extent gives exactly
// sizeOf's answer at every zoom (the culling and ranking must not move).
func TestSizeAtMatchesSizeOf(t *testing.T) {
	tw := testTwin(t)
	for _, l := range twin.Layers {
		tw.Range(l, func(f *twin.Feature) bool {
			if f.Geometry == nil {
				return true
			}
			m := newMemo(f, nil)
			for z := 0; z <= MaxZoom; z++ {
				scale := math.Ldexp(Extent, z)
				s1, k1 := sizeOf(f.Geometry.Bound(), f.Geometry.Dimensions(), scale)
				s2, k2 := m.sizeAt(scale)
				if s1 != s2 || k1 != k2 {
					t.Fatalf("%s z%d: sizeOf %v %v, sizeAt %v %v", f.ID, z, s1, k1, s2, k2)
				}
			}
			return true
		})
	}
}
