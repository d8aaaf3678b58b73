package boltstore

import (
	"hash/maphash"

	"github.com/citytwin/citytwin/twin"
)

// interner shares the strings that repeat across stored objects (grid and
// region codes), so a million loaded objects hold one copy of each instead
// of a million (props need none: twin.PackJSON copies their values into
// the packed form's one string and interns the key set). It is a
// direct-mapped cache (a slot per hash, the newest value wins), not a map:
// a lookup is one hash and one compare in 64 KB that stay in cache, unique
// values (names) only evict, and its size never grows. Places (region path
// and grid), few and all repeated, are in a bounded map. Not safe for
// concurrent use: each decoding goroutine has its own.
type interner struct {
	seed   maphash.Seed
	strs   [internSlots]string
	places twin.Places
}

// internSlots is the cache size (a power of two).
const internSlots = 1 << 12

func newInterner() *interner {
	return &interner{seed: maphash.MakeSeed()}
}

// str returns b as a string, shared when it was seen before.
func (in *interner) str(b []byte) string {
	if in == nil || len(b) > 40 {
		return string(b)
	}
	slot := &in.strs[maphash.Bytes(in.seed, b)&(internSlots-1)]
	if *slot == string(b) { // no allocation for the compare
		return *slot
	}
	s := string(b)
	*slot = s
	return s
}

// place returns the place of region and grid, shared by every object of
// the load with the same codes (twin.Places).
func (in *interner) place(region []string, grid string) *twin.Place {
	if in == nil {
		return twin.NewPlace(region, grid)
	}
	return in.places.Get(region, grid)
}
