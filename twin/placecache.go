package twin

import "encoding/binary"

// PlaceCache hands out one *Place per place to the objects of a store's
// load, found by the store's own bytes for it (the grid and the store's
// encoding of the region path): an object whose place was seen before
// costs no allocation, where decoding its codes into strings and a
// []string first (then dropped for the shared place) left tens of bytes
// of garbage an object between the objects kept (issue 16 goal 4). The
// region codes of the places it makes are shared too. Unlike Places it is
// keyed by bytes and not safe for concurrent use: each decoding goroutine
// has its own. A nil *PlaceCache makes a new place each call.
type PlaceCache struct {
	places map[string]*Place // by grid's and region's bytes
	codes  map[string]string // region codes of the places made: paths share their heads
	key    []byte
}

// maxCached bounds a PlaceCache: a city has a few thousand places.
const maxCached = 1 << 16

// NewPlaceCache returns an empty PlaceCache.
func NewPlaceCache() *PlaceCache {
	return &PlaceCache{places: make(map[string]*Place), codes: make(map[string]string)}
}

// Get returns the place of grid and region, a store's bytes for them,
// shared by every call with the same bytes; on a miss decode turns region
// into the path's codes (nil or empty for none).
func (c *PlaceCache) Get(grid, region []byte, decode func(region []byte) ([]string, error)) (*Place, error) {
	if c != nil {
		c.key = append(binary.AppendUvarint(c.key[:0], uint64(len(grid))), grid...)
		c.key = append(c.key, region...)
		if p, ok := c.places[string(c.key)]; ok { // no allocation for the lookup
			return p, nil
		}
	}
	codes, err := decode(region)
	if err != nil {
		return nil, err
	}
	if len(codes) == 0 {
		codes = nil
	}
	if c == nil {
		return NewPlace(codes, string(grid)), nil
	}
	for i, s := range codes {
		if k, ok := c.codes[s]; ok {
			codes[i] = k
		} else if len(c.codes) < maxCached {
			c.codes[s] = s
		}
	}
	p := NewPlace(codes, string(grid))
	if len(c.places) < maxCached {
		c.places[string(c.key)] = p
	}
	return p, nil
}
