package twin

import (
	"hash/maphash"
	"iter"
	"math/bits"
)

// names holds one layer's objects by name: an open-addressing hash table
// (linear probing, deletion by backward shift) of the features themselves,
// the key being each one's ID.Name. A map[string]*Feature cost ~57 B per
// object at a million vehicles (a 16-byte key copy and the value in 8-slot
// groups, sized to a power of two); this costs 9 B per slot at up to 3/4
// full. A slot's home is the hash scaled to the table (Lemire's
// fastrange), not masked, so the table need not be a power of two: Grow
// (a load of n objects) makes it 4n/3 slots, 12 B per object, where a
// power of two held a million in 2^21, 19 B each (issue 16 goal 4).
//
// The zero names is empty and ready; it is not safe for concurrent
// writes (the twin's lock guards it, as it did the map).
type names struct {
	slots []*Feature
	// tags holds 7 low bits of each slot's hash (its home comes from the
	// high ones) with the top bit set (0: the slot is empty), so that a
	// probe rarely reads a feature it does not want (a cache miss each).
	tags []uint8
	n    int
	seed maphash.Seed
}

// minNames is the smallest table, in slots.
const minNames = 8

func (s *names) hash(name string) uint64 { return maphash.String(s.seed, name) }

func tagOf(h uint64) uint8 { return uint8(h) | 0x80 }

// home is the slot a hash starts its probe at: h scaled to the table.
func (s *names) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(s.slots)))
	return int(hi)
}

// next is the slot after i, wrapping at the end.
func (s *names) next(i int) int {
	if i++; i == len(s.slots) {
		return 0
	}
	return i
}

// gap is how many slots a probe from i walks to reach j.
func (s *names) gap(j, i int) int {
	if j >= i {
		return j - i
	}
	return j + len(s.slots) - i
}

// Len is the number of objects held.
func (s *names) Len() int { return s.n }

// Get returns the object named name (nil when absent).
func (s *names) Get(name string) *Feature {
	if s.n == 0 {
		return nil
	}
	h := s.hash(name)
	tag := tagOf(h)
	for i := s.home(h); ; i = s.next(i) {
		switch s.tags[i] {
		case 0:
			return nil
		case tag:
			if f := s.slots[i]; f.ID.Name == name {
				return f
			}
		}
	}
}

// Put stores f under f.ID.Name, replacing the object of that name.
func (s *names) Put(f *Feature) {
	if (s.n+1)*4 > len(s.slots)*3 {
		s.resize(max(minNames, 2*len(s.slots)))
	}
	h := s.hash(f.ID.Name)
	tag := tagOf(h)
	for i := s.home(h); ; i = s.next(i) {
		switch s.tags[i] {
		case 0:
			s.slots[i], s.tags[i] = f, tag
			s.n++
			return
		case tag:
			if s.slots[i].ID.Name == f.ID.Name {
				s.slots[i] = f
				return
			}
		}
	}
}

// Delete removes the object named name, if any.
func (s *names) Delete(name string) {
	if s.n == 0 {
		return
	}
	h := s.hash(name)
	tag := tagOf(h)
	i := s.home(h)
	for ; ; i = s.next(i) {
		if s.tags[i] == 0 {
			return
		}
		if s.tags[i] == tag && s.slots[i].ID.Name == name {
			break
		}
	}
	// Backward shift: move each following entry of the run into the hole
	// when the hole lies between its home slot and it, so that every
	// entry stays reachable from its home without tombstones.
	for j := s.next(i); s.tags[j] != 0; j = s.next(j) {
		if s.gap(j, s.home(s.hash(s.slots[j].ID.Name))) >= s.gap(j, i) {
			s.slots[i], s.tags[i] = s.slots[j], s.tags[j]
			i = j
		}
	}
	s.slots[i], s.tags[i] = nil, 0
	s.n--
}

// Grow makes room for n objects without growing again: a table of 4n/3
// slots (Put, when full, doubles it).
func (s *names) Grow(n int) {
	if size := max(minNames, (n*4+2)/3); size > len(s.slots) {
		s.resize(size)
	}
}

// resize moves the objects to a table of size slots (3/4 of it at least
// as many as held).
func (s *names) resize(size int) {
	if s.slots == nil {
		s.seed = maphash.MakeSeed()
	}
	old := s.slots
	s.slots, s.tags, s.n = make([]*Feature, size), make([]uint8, size), 0
	for _, f := range old {
		if f != nil {
			s.Put(f)
		}
	}
}

// All yields every object, in no particular order.
func (s *names) All() iter.Seq[*Feature] {
	return func(yield func(*Feature) bool) {
		for _, f := range s.slots {
			if f != nil && !yield(f) {
				return
			}
		}
	}
}
