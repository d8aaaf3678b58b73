package tiles

import (
	"math"
	"math/rand/v2"
	"strings"
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

// TestNamePrefixOrder: where two names' prefixes differ, they order the
// names as strings.Compare does (short names, zero bytes, high bytes);
// equal prefixes leave the order to the names. Seeded.
func TestNamePrefixOrder(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	alphabet := []byte{0, 1, 'a', 'b', 'z', 0x7f, 0x80, 0xff}
	name := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 200000; i++ {
		a, b := name(), name()
		pa, pb := namePrefix(a), namePrefix(b)
		if pa == pb {
			continue
		}
		if got, want := pa < pb, strings.Compare(a, b) < 0; got != want {
			t.Fatalf("%q %q: prefixes %x %x order %v, names %v", a, b, pa, pb, got, want)
		}
	}
}
