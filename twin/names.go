package twin

import (
	"hash/maphash"
	"iter"
)

// names holds one layer's objects by name: an open-addressing hash table
// (linear probing, deletion by backward shift) of the features themselves,
// the key being each one's ID.Name. A map[string]*Feature cost ~57 B per
// object at a million vehicles (a 16-byte key copy and the value in 8-slot
// groups, sized to a power of two); this costs 9 B per slot at 3/8 to 3/4
// full, 12-24 B per object (issue 16 goal 4).
//
// The zero names is empty and ready; it is not safe for concurrent
// writes (the twin's lock guards it, as it did the map).
type names struct {
	slots []*Feature
	// tags holds 7 bits of each slot's hash with the top bit set (0: the
	// slot is empty), so that a probe rarely reads a feature it does not
	// want (a cache miss each).
	tags []uint8
	n    int
	seed maphash.Seed
}

// minNames is the smallest table, in slots (a power of two).
const minNames = 8

func (s *names) hash(name string) uint64 { return maphash.String(s.seed, name) }

func tagOf(h uint64) uint8 { return uint8(h>>57) | 0x80 }

// Len is the number of objects held.
func (s *names) Len() int { return s.n }

// Get returns the object named name (nil when absent).
func (s *names) Get(name string) *Feature {
	if s.n == 0 {
		return nil
	}
	h := s.hash(name)
	tag, mask := tagOf(h), uint64(len(s.slots)-1)
	for i := h & mask; ; i = (i + 1) & mask {
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
		s.Grow(s.n + 1)
	}
	h := s.hash(f.ID.Name)
	tag, mask := tagOf(h), uint64(len(s.slots)-1)
	for i := h & mask; ; i = (i + 1) & mask {
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
	tag, mask := tagOf(h), uint64(len(s.slots)-1)
	i := h & mask
	for ; ; i = (i + 1) & mask {
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
	for j := (i + 1) & mask; s.tags[j] != 0; j = (j + 1) & mask {
		home := s.hash(s.slots[j].ID.Name) & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i], s.tags[i] = s.slots[j], s.tags[j]
			i = j
		}
	}
	s.slots[i], s.tags[i] = nil, 0
	s.n--
}

// Grow makes room for n objects without growing again.
func (s *names) Grow(n int) {
	size := minNames
	for size*3 < n*4 {
		size *= 2
	}
	if size <= len(s.slots) {
		return
	}
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
