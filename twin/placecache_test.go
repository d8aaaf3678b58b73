package twin

import (
	"errors"
	"fmt"
	"testing"
)

// TestPlaceCacheBound: past maxCached places and codes the cache keeps no
// more, and a decode error comes back without a place.
func TestPlaceCacheBound(t *testing.T) {
	c := NewPlaceCache()
	for i := 0; i < maxCached+10; i++ {
		g := fmt.Sprint(i)
		p, err := c.Get([]byte(g), []byte(g), func(r []byte) ([]string, error) { return []string{string(r)}, nil })
		if err != nil || p.Grid != g || p.Region[0] != g {
			t.Fatalf("place %d: %+v, %v", i, p, err)
		}
	}
	if len(c.places) > maxCached || len(c.codes) > maxCached {
		t.Fatalf("%d places, %d codes kept", len(c.places), len(c.codes))
	}
	bad := errors.New("bad region")
	if p, err := c.Get([]byte("x"), []byte("y"), func([]byte) ([]string, error) { return nil, bad }); p != nil || !errors.Is(err, bad) {
		t.Fatalf("decode error: %+v, %v", p, err)
	}
}
