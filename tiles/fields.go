package tiles

import (
	"sort"
	"strings"

	"github.com/citytwin/citytwin/twin"
)

// TileJSON types of attribute values, as bits so a key seen with several
// types can say so.
const (
	typeString = 1 << iota
	typeNumber
	typeBoolean
)

// layerFields caches a layer's TileJSON fields: every attribute key its
// tiles carry, found by walking the layer's objects with walkAttrs (the
// code that writes the attributes), so the advertised list cannot drift
// from the tiles. gen counts changes to the layer; a scan is kept only if
// no change came in while it ran.
type layerFields struct {
	fields map[string]string
	gen    uint64
	clean  bool
}

// fieldsDirty forgets the fields of layer l (all layers when l is "").
// Called with the layer's changes.
func (s *Server) fieldsDirty(l twin.Layer) {
	s.fieldsMu.Lock()
	defer s.fieldsMu.Unlock()
	ls := []twin.Layer{l}
	if l == "" {
		ls = twin.Layers
	}
	for _, k := range ls {
		lf := s.fields[k]
		lf.clean = false
		lf.gen++
		s.fields[k] = lf
	}
}

// layerFieldTypes returns l's fields: key -> "String", "Number" or
// "Boolean" (or several joined with " or " when objects differ). The
// layer's declared fields are always listed. The map is shared: do not
// modify it.
func (s *Server) layerFieldTypes(l twin.Layer) map[string]string {
	s.fieldsMu.Lock()
	lf := s.fields[l]
	s.fieldsMu.Unlock()
	if lf.clean {
		return lf.fields
	}
	types := map[string]uint8{}
	for k, v := range specs[l].fields {
		switch v {
		case "Number":
			types[k] |= typeNumber
		case "Boolean":
			types[k] |= typeBoolean
		default:
			types[k] |= typeString
		}
	}
	s.tw.Search(l, world, func(f *twin.Feature) bool {
		walkAttrs(f, func(k string, v any) {
			switch v.(type) {
			case string, jsonAttr:
				types[k] |= typeString
			case bool:
				types[k] |= typeBoolean
			default:
				types[k] |= typeNumber
			}
		})
		return true
	})
	fields := make(map[string]string, len(types))
	for k, t := range types {
		var names []string
		for _, n := range []struct {
			bit  uint8
			name string
		}{{typeBoolean, "Boolean"}, {typeNumber, "Number"}, {typeString, "String"}} {
			if t&n.bit != 0 {
				names = append(names, n.name)
			}
		}
		sort.Strings(names)
		fields[k] = strings.Join(names, " or ")
	}
	s.fieldsMu.Lock()
	if cur := s.fields[l]; cur.gen == lf.gen {
		s.fields[l] = layerFields{fields: fields, gen: lf.gen, clean: true}
	}
	s.fieldsMu.Unlock()
	return fields
}
