package boltstore

import (
	"encoding/binary"

	"github.com/citytwin/citytwin/twin"
)

// interner hands out one *twin.Place per region path and grid to the
// objects of a load, found by the record's own bytes: an object whose
// place was seen before costs no allocation. Decoding the codes as strings
// and a []string per object first (then dropped for the shared place) left
// ~70 B of garbage an object between the objects kept, in the 16- and
// 48-B size classes (issue 16 goal 4). Props need no interning:
// twin.PackJSON copies their values into the packed form's one string and
// interns the key set. Not safe for concurrent use: each decoding
// goroutine has its own.
type interner struct {
	places map[string]*twin.Place // by grid's and region's bytes (place)
	codes  map[string]string      // region codes of the places made: paths share their heads
	key    []byte
}

// maxInterned bounds an interner: a city has a few thousand places.
const maxInterned = 1 << 16

func newInterner() *interner {
	return &interner{places: make(map[string]*twin.Place), codes: make(map[string]string)}
}

// place returns the place of grid and region, the record's bytes: region
// is the count then each code (a uvarint length then its bytes), checked
// by the caller. Shared by every object of the load with the same bytes.
func (in *interner) place(grid, region []byte) *twin.Place {
	if in == nil {
		return newPlace(grid, region, nil)
	}
	in.key = append(binary.AppendUvarint(in.key[:0], uint64(len(grid))), grid...)
	in.key = append(in.key, region...)
	if p, ok := in.places[string(in.key)]; ok { // no allocation for the lookup
		return p
	}
	p := newPlace(grid, region, in)
	if len(in.places) < maxInterned {
		in.places[string(in.key)] = p
	}
	return p
}

// newPlace decodes a place from a record's bytes (see place), its region
// codes shared through in when not nil.
func newPlace(grid, region []byte, in *interner) *twin.Place {
	r := &reader{b: region}
	var codes []string
	if n := r.uvarint(); n > 0 && n <= uint64(len(r.b)) {
		codes = make([]string, n)
		for i := range codes {
			codes[i] = in.code(r.bytes())
		}
	}
	return twin.NewPlace(codes, string(grid))
}

// code returns b as a string, the same one for the same bytes (nil in: a
// new one).
func (in *interner) code(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.codes[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.codes) < maxInterned {
		in.codes[s] = s
	}
	return s
}
