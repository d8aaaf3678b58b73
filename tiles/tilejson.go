package tiles

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// layerBounds caches a layer's data extent for TileJSON; dirty after any
// change to the layer.
type layerBounds struct {
	b     orb.Bound
	ok    bool // the layer has placed objects
	clean bool
}

// markDirty forgets the data extent and fields of layer l. Called for
// every change of the layer (each vehicle fix).
func (s *Server) markDirty(l twin.Layer) {
	s.boundsMu.Lock()
	// Only a clean extent needs a write: a missing one reads as dirty.
	if lb, ok := s.bounds[l]; ok && lb.clean {
		lb.clean = false
		s.bounds[l] = lb
	}
	s.boundsMu.Unlock()
	s.fieldsDirty(l)
}

func (s *Server) markAllDirty() {
	s.boundsMu.Lock()
	s.bounds = map[twin.Layer]layerBounds{}
	s.boundsMu.Unlock()
	s.fieldsDirty("")
}

var world = orb.Bound{Min: orb.Point{-180, -85.05112877980659}, Max: orb.Point{180, 85.05112877980659}}

// dataBounds is the union of the layers' extents, recomputed from the
// layer's R-tree only after it changed. ok is false when all are empty.
func (s *Server) dataBounds(ls []twin.Layer) (orb.Bound, bool) {
	var out orb.Bound
	any := false
	for _, l := range ls {
		s.boundsMu.Lock()
		lb := s.bounds[l]
		s.boundsMu.Unlock()
		if !lb.clean {
			lb = layerBounds{clean: true}
			s.tw.Search(l, world, func(f *twin.Feature) bool {
				b := f.Geometry.Bound()
				if !lb.ok {
					lb.b, lb.ok = b, true
				} else {
					lb.b = lb.b.Union(b)
				}
				return true
			})
			s.boundsMu.Lock()
			s.bounds[l] = lb
			s.boundsMu.Unlock()
		}
		if lb.ok {
			if !any {
				out, any = lb.b, true
			} else {
				out = out.Union(lb.b)
			}
		}
	}
	return out, any
}

// TileJSON answers GET /tiles/{layers}.json with a TileJSON 3.0.0 document:
// absolute tile URL, zoom range, data bounds and centre, and one
// vector_layers entry per layer with its fields: every attribute key the
// layer's tiles carry (layerFieldTypes). maxzoom is the
// highest cached zoom; clients overzoom beyond it (tiles up to z22 are
// served too).
func (s *Server) TileJSON(w http.ResponseWriter, r *http.Request) {
	req, err := ParseTilePath(tilePath(r))
	if err == nil && req.Kind != KindTileJSON {
		err = fmt.Errorf("%w: want {layers}.json", ErrBadPath)
	}
	if err == nil {
		req.Attrs, err = ParseAttrs(r.URL.Query())
	}
	if err != nil {
		writeParseError(w, err)
		return
	}
	s.Sync()
	minZoom := uint8(MaxZoom)
	vls := make([]map[string]any, 0, len(req.Layers))
	for _, l := range req.Layers {
		sp := specs[l]
		minZoom = min(minZoom, sp.minZoom)
		fields := s.layerFieldTypes(l)
		if filt := s.filterFor(req.Attrs, l); !filt.all {
			kept := make(map[string]string, len(fields))
			for k, t := range fields {
				if filt.keepField(k) {
					kept[k] = t
				}
			}
			fields = kept
		}
		vls = append(vls, map[string]any{"id": string(l), "fields": fields,
			"minzoom": sp.minZoom, "maxzoom": s.opts.MaxCachedZoom,
			"description": describe(l)})
	}
	b, ok := s.dataBounds(req.Layers)
	cc := cacheControl(req.Layers)
	if s.opts.ScopeBounds != nil {
		if sb, scoped := s.opts.ScopeBounds(r.Context()); scoped {
			b, ok = sb, true
			cc = strings.Replace(cc, "public", "private", 1) // per-token document
		}
	}
	if !ok {
		b = world
	}
	c := b.Center()
	cz := centreZoom(b)
	doc := map[string]any{
		"tilejson":      "3.0.0",
		"name":          "citytwin " + req.LayerKey(),
		"scheme":        "xyz",
		"tiles":         []string{s.baseURL(r) + "/tiles/" + req.LayerKey() + "/{z}/{x}/{y}.mvt" + req.Attrs.query()},
		"minzoom":       minZoom,
		"maxzoom":       s.opts.MaxCachedZoom,
		"bounds":        []float64{round6(b.Min[0]), round6(b.Min[1]), round6(b.Max[0]), round6(b.Max[1])},
		"center":        []float64{round6(c[0]), round6(c[1]), float64(max(cz, minZoom))},
		"vector_layers": vls,
		"attribution":   "CityTwin",
	}
	w.Header().Set("Cache-Control", cc)
	httpx.JSON(w, http.StatusOK, doc)
}

// centreZoom is the zoom at which b fits in about one 512-px tile.
func centreZoom(b orb.Bound) uint8 {
	span := math.Max(b.Max[0]-b.Min[0], b.Max[1]-b.Min[1])
	if span <= 0 {
		return 14
	}
	z := math.Floor(math.Log2(360 / span))
	return uint8(math.Max(0, math.Min(16, z)))
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// describe documents a vector layer for TileJSON clients.
func describe(l twin.Layer) string {
	d := fmt.Sprintf("CityTwin %s. MVT feature id = FNV-1a 64 of the id attribute, masked to 53 bits.", l)
	if lean := specs[l].lean; lean != nil {
		names := make([]string, 0, len(lean))
		for k := range lean {
			names = append(names, k)
		}
		sort.Strings(names)
		d += fmt.Sprintf(" Below z%d only id, version, %s.", DetailZoom, strings.Join(names, ", "))
	}
	return d
}
