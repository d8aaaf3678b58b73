package twin

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestNamesAgainstMap: random puts, replacements and deletes (on a table
// small enough that runs wrap around its end; grown by doubling from the
// smallest, or sized first by Grow to no power of two) answer as a map
// does, and All yields each object once.
func TestNamesAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, keys := range []int{3, 40, 2000, -3, -40, -2000} {
		var s names
		if keys < 0 {
			keys = -keys
			s.Grow(keys)
		}
		want := map[string]*Feature{}
		for op := range 20000 {
			name := fmt.Sprintf("n%d", rng.IntN(keys))
			switch rng.IntN(3) {
			case 0, 1:
				f := &Feature{ID: NewID(Vehicles, name), Version: uint64(op)}
				s.Put(f)
				want[name] = f
			case 2:
				s.Delete(name)
				delete(want, name)
			}
			if s.Len() != len(want) {
				t.Fatalf("keys %d op %d: Len %d, want %d", keys, op, s.Len(), len(want))
			}
			probe := fmt.Sprintf("n%d", rng.IntN(keys+5))
			if got := s.Get(probe); got != want[probe] {
				t.Fatalf("keys %d op %d: Get(%s) = %v, want %v", keys, op, probe, got, want[probe])
			}
		}
		for name, f := range want {
			if s.Get(name) != f {
				t.Fatalf("keys %d: %s lost", keys, name)
			}
		}
		seen := map[string]bool{}
		for f := range s.All() {
			if seen[f.ID.Name] || want[f.ID.Name] != f {
				t.Fatalf("keys %d: All yields %s twice or stale", keys, f.ID.Name)
			}
			seen[f.ID.Name] = true
		}
		if len(seen) != len(want) {
			t.Fatalf("keys %d: All yields %d, want %d", keys, len(seen), len(want))
		}
	}
}

// TestNamesGrow: Grow keeps every object and a grown table takes n puts
// without growing again.
func TestNamesGrow(t *testing.T) {
	var s names
	s.Put(&Feature{ID: NewID(Vehicles, "a")})
	s.Grow(1000)
	slots := len(s.slots)
	for i := range 999 {
		s.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint(i))})
	}
	if len(s.slots) != slots || s.Len() != 1000 || s.Get("a") == nil {
		t.Fatalf("slots %d -> %d, len %d", slots, len(s.slots), s.Len())
	}
	if (&names{}).Get("x") != nil {
		t.Fatal("zero names finds x")
	}
	(&names{}).Delete("x")
}
