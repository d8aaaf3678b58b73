package tiles

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/citytwin/citytwin/twin"
)

// ErrBadAttrs is returned by ParseAttrs for a malformed ?attrs= list
// (the handlers answer 400).
var ErrBadAttrs = errors.New("bad attrs")

// Limits of an ?attrs= list: it is part of the cache key.
const (
	maxAttrKeys   = 32
	maxAttrKeyLen = 64
)

// Attrs selects which attributes a tile's features carry. The zero value
// is the default: every attribute, including the string id
// ("layer/name") and version, except on the layers in Options.OmitID.
// The integer MVT feature id is always written: it is the contract's key
// (FeatureID), so a client that only needs it (MapLibre feature-state, a
// click looked up through the entity API) can ask for lighter tiles.
type Attrs struct {
	// Only, when true, keeps exactly Keys (sorted, no duplicates), which
	// may be empty (geometry and the integer id alone, as a pg_tileserv
	// table with no other columns).
	Only bool
	Keys []string
}

// ParseAttrs reads the tile request's ?attrs= parameter: absent is the
// default; present, a comma-separated list of attribute keys to keep
// (empty: none). Keys a layer does not carry are simply absent.
func ParseAttrs(q url.Values) (Attrs, error) {
	vs, ok := q["attrs"]
	if !ok {
		return Attrs{}, nil
	}
	if len(vs) != 1 {
		return Attrs{}, fmt.Errorf("%w: give attrs once", ErrBadAttrs)
	}
	a := Attrs{Only: true}
	if vs[0] == "" {
		return a, nil
	}
	for _, k := range strings.Split(vs[0], ",") {
		if k == "" || len(k) > maxAttrKeyLen {
			return Attrs{}, fmt.Errorf("%w: key %q must be 1..%d bytes", ErrBadAttrs, k, maxAttrKeyLen)
		}
		a.Keys = append(a.Keys, k)
	}
	slices.Sort(a.Keys)
	a.Keys = slices.Compact(a.Keys)
	if len(a.Keys) > maxAttrKeys {
		return Attrs{}, fmt.Errorf("%w: at most %d keys", ErrBadAttrs, maxAttrKeys)
	}
	return a, nil
}

// key is the selection's part of the cache key: "" for the default.
func (a Attrs) key() string {
	if !a.Only {
		return ""
	}
	return "=" + strings.Join(a.Keys, ",")
}

// query is the selection as a URL query ("" for the default), for the
// TileJSON tile URL.
func (a Attrs) query() string {
	if !a.Only {
		return ""
	}
	return "?attrs=" + url.QueryEscape(strings.Join(a.Keys, ","))
}

// attrFilter is the selection in force for one layer of one tile.
type attrFilter struct {
	all    bool     // write every memoised attribute
	noID   bool     // every attribute but id and version
	keys   []string // else only these (sorted)
	hashes []uint32 // kv.keyHash of keys, compared before the strings
	// bits says, for the keys numbered below n in the memo table's
	// keyTable when the filter was made, whether each is kept; a key
	// numbered later (or never) takes the string path.
	bits []uint64
	n    uint16
}

// filterFor resolves a request's selection for layer l.
func (s *Server) filterFor(a Attrs, l twin.Layer) attrFilter {
	var kt *keyTable
	if s.memo != nil {
		kt = &s.memo.keys
	}
	if a.Only {
		f := attrFilter{keys: a.Keys, hashes: make([]uint32, len(a.Keys))}
		for i, k := range a.Keys {
			f.hashes[i] = uint32(fnv64(fnvOffset, k))
		}
		ids, n := kt.lookup(a.Keys)
		f.n, f.bits = n, make([]uint64, int(n)/64+1)
		for _, id := range ids {
			if id != 0 {
				f.bits[id/64] |= 1 << (id % 64)
			}
		}
		return f
	}
	if s.opts.OmitID[l] {
		f := attrFilter{noID: true}
		ids, n := kt.lookup([]string{"id", "version"})
		f.n, f.bits = n, make([]uint64, int(n)/64+1)
		for i := range f.bits {
			f.bits[i] = ^uint64(0)
		}
		for _, id := range ids {
			if id != 0 {
				f.bits[id/64] &^= 1 << (id % 64)
			}
		}
		return f
	}
	return attrFilter{all: true}
}

// keepRef is keep for the attribute at at with key number kid, reading
// it only for a key numbered after the filter was made.
func (f *attrFilter) keepRef(kid uint16, at attrAt) bool {
	switch {
	case f.all:
		return true
	case kid < f.n:
		return f.bits[kid/64]&(1<<(kid%64)) != 0
	}
	return f.keep(at.kv())
}

// keep reports whether attribute a is written under the filter.
func (f *attrFilter) keep(a *kv) bool {
	switch {
	case f.all:
		return true
	case a.kid != 0 && a.kid < f.n:
		return f.bits[a.kid/64]&(1<<(a.kid%64)) != 0
	case f.noID:
		return a.key != "id" && a.key != "version"
	}
	for i, h := range f.hashes {
		if h == a.keyHash && f.keys[i] == a.key {
			return true
		}
	}
	return false
}

// keepField reports whether a TileJSON field is advertised under the filter.
func (f *attrFilter) keepField(k string) bool {
	return f.keep(&kv{key: k, keyHash: uint32(fnv64(fnvOffset, k))})
}
