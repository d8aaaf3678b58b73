package tiles

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/internal/httpx"
)

// StaticLayers and LiveLayers are the layer lists of the style's two
// sources: the city (cached for an hour) and moving objects (2 s).
const (
	StaticLayers = "regions,grids,rivers,roads,bridges,buildings"
	LiveLayers   = "devices,vehicles,workers,incidents,alerts,tasks"
)

// Risk colours of CONTRACT §2, by risk_color name.
var riskColors = []any{
	"match", []any{"get", "risk_color"},
	"red", "#e53935", "orange", "#fb8c00", "yellow", "#fdd835", "blue", "#1e88e5", "green", "#43a047",
	"#607d8b",
}

// Style answers GET /styles/command.json: a MapLibre style v8 for the
// command centre (dark), drawing only this server's tiles. Glyphs point to
// this server's empty glyph ranges: labels in CJK render with the client's
// localIdeographFontFamily, and no external font or sprite is needed.
func (s *Server) Style(w http.ResponseWriter, r *http.Request) {
	base := s.baseURL(r)
	style := map[string]any{
		"version": 8,
		"name":    "CityTwin command centre",
		"center":  []float64{106.55, 29.56},
		"zoom":    11,
		"pitch":   45,
		"glyphs":  base + "/fonts/{fontstack}/{range}.pbf",
		"sources": map[string]any{
			"twin": map[string]any{"type": "vector", "url": base + "/tiles/" + StaticLayers + ".json"},
			"live": map[string]any{"type": "vector", "url": base + "/tiles/" + LiveLayers + ".json"},
		},
		"layers": styleLayers(),
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpx.JSON(w, http.StatusOK, style)
}

func eq(prop string, v any) []any { return []any{"==", []any{"get", prop}, v} }

func geomIs(t string) []any { return []any{"==", []any{"geometry-type"}, t} }

// label draws names, Chinese first (name_zh), with the local ideograph
// font of the client; glyphs for other scripts are empty on this server.
func label(id, layer string, filter []any, size float64, minZoom, maxZoom int) map[string]any {
	l := map[string]any{"id": id, "type": "symbol", "source": "twin", "source-layer": layer, "minzoom": minZoom,
		"layout": map[string]any{"text-field": []any{"coalesce", []any{"get", "name_zh"}, []any{"get", "name"}},
			"text-font": []string{"Noto Sans Regular"}, "text-size": size},
		"paint": map[string]any{"text-color": "#cfd8dc", "text-halo-color": "#0b1020", "text-halo-width": 1.5}}
	if filter != nil {
		l["filter"] = filter
	}
	if maxZoom > 0 {
		l["maxzoom"] = maxZoom
	}
	if layer == "bridges" {
		l["layout"].(map[string]any)["symbol-placement"] = "line"
	}
	return l
}

func styleLayers() []any {
	circle := func(id, layer, color string, radius float64, minZoom int) map[string]any {
		return map[string]any{"id": id, "type": "circle", "source": "live", "source-layer": layer, "minzoom": minZoom,
			"paint": map[string]any{"circle-color": color, "circle-radius": radius,
				"circle-stroke-color": "#0b1020", "circle-stroke-width": 1}}
	}
	alertColor := []any{"match", []any{"get", "severity"},
		"red", "#e53935", "orange", "#fb8c00", "yellow", "#fdd835", "blue", "#1e88e5", "green", "#43a047", "#ffffff"}
	regionLine := func(level string, width float64, color string) map[string]any {
		return map[string]any{"id": "regions-" + level, "type": "line", "source": "twin", "source-layer": "regions",
			"filter": eq("level", level),
			"paint":  map[string]any{"line-color": color, "line-width": width, "line-opacity": 0.9}}
	}
	return []any{
		map[string]any{"id": "background", "type": "background", "paint": map[string]any{"background-color": "#0b1020"}},
		map[string]any{"id": "regions-fill", "type": "fill", "source": "twin", "source-layer": "regions",
			"filter": eq("level", "district"), "paint": map[string]any{"fill-color": "#141b2d", "fill-opacity": 0.6}},
		map[string]any{"id": "rivers-fill", "type": "fill", "source": "twin", "source-layer": "rivers",
			"filter": geomIs("Polygon"), "paint": map[string]any{"fill-color": "#0d47a1", "fill-opacity": 0.8}},
		map[string]any{"id": "rivers-line", "type": "line", "source": "twin", "source-layer": "rivers",
			"filter": geomIs("LineString"), "paint": map[string]any{"line-color": "#1e88e5",
				"line-width": []any{"interpolate", []any{"linear"}, []any{"zoom"}, 8, 2, 14, 12}}},
		map[string]any{"id": "grids-line", "type": "line", "source": "twin", "source-layer": "grids", "minzoom": 14,
			"paint": map[string]any{"line-color": "#37474f", "line-width": 0.6, "line-dasharray": []float64{2, 2}}},
		map[string]any{"id": "roads", "type": "line", "source": "twin", "source-layer": "roads",
			"layout": map[string]any{"line-cap": "round", "line-join": "round"},
			"paint": map[string]any{"line-color": []any{"match", []any{"get", "class"},
				[]any{"motorway", "trunk", "primary"}, "#90a4ae", "#546e7a"},
				"line-width": []any{"interpolate", []any{"linear"}, []any{"zoom"}, 8, 0.5, 16, 6}}},
		map[string]any{"id": "bridges-glow", "type": "line", "source": "twin", "source-layer": "bridges",
			"paint": map[string]any{"line-color": "#ffca28", "line-width": 10, "line-opacity": 0.25, "line-blur": 4}},
		map[string]any{"id": "bridges", "type": "line", "source": "twin", "source-layer": "bridges",
			"paint": map[string]any{"line-color": "#ffca28", "line-width": 3}},
		regionLine("street", 0.8, "#3949ab"),
		regionLine("district", 2, "#5c6bc0"),
		regionLine("city", 3.5, "#9fa8da"),
		map[string]any{"id": "buildings-3d", "type": "fill-extrusion", "source": "twin", "source-layer": "buildings",
			"paint": map[string]any{"fill-extrusion-color": riskColors,
				"fill-extrusion-height":  []any{"coalesce", []any{"get", "height_m"}, 10},
				"fill-extrusion-opacity": 0.85}},
		label("district-labels", "regions", eq("level", "district"), 14, 8, 13),
		label("bridge-labels", "bridges", nil, 12, 12, 0),
		circle("devices", "devices", "#26c6da", 3, 14),
		circle("workers", "workers", "#66bb6a", 4, 8),
		circle("vehicles", "vehicles", "#ffa726", 4.5, 8),
		map[string]any{"id": "incidents", "type": "circle", "source": "live", "source-layer": "incidents",
			"paint": map[string]any{"circle-color": "#ab47bc", "circle-radius": 6,
				"circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5}},
		// Open work (rectification on a building, an enforcement case at a
		// bridge): a ring, red when overdue.
		map[string]any{"id": "tasks", "type": "circle", "source": "live", "source-layer": "tasks",
			"filter": []any{"!=", []any{"get", "state"}, "closed"},
			"paint": map[string]any{"circle-color": "rgba(0,0,0,0)", "circle-radius": 11,
				"circle-stroke-color": []any{"case", []any{"==", []any{"get", "overdue"}, true}, "#e53935", "#29b6f6"},
				"circle-stroke-width": 2.5}},
		map[string]any{"id": "alerts", "type": "circle", "source": "live", "source-layer": "alerts",
			"paint": map[string]any{"circle-color": alertColor, "circle-radius": 8, "circle-opacity": 0.9,
				"circle-stroke-color": "#ffffff", "circle-stroke-width": 2}},
	}
}

// Glyphs answers GET /fonts/{fontstack}/{range}.pbf with a valid glyphs
// protobuf holding the font stack and range but no glyphs. MapLibre then
// draws CJK text with localIdeographFontFamily and simply omits Latin
// labels, with no request leaving this server.
func (s *Server) Glyphs(w http.ResponseWriter, r *http.Request) {
	stack := r.PathValue("fontstack")
	rng, ok := strings.CutSuffix(r.PathValue("range"), ".pbf")
	lo, hi, ok2 := strings.Cut(rng, "-")
	start, err1 := strconv.Atoi(lo)
	end, err2 := strconv.Atoi(hi)
	if !ok || !ok2 || err1 != nil || err2 != nil || start < 0 || start%256 != 0 || end != start+255 || end > 65535 ||
		stack == "" || len(stack) > 200 {
		httpx.Error(w, http.StatusBadRequest, "bad glyph range", "want /fonts/{fontstack}/{start}-{start+255}.pbf")
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(EmptyGlyphs(stack, rng))
}

// EmptyGlyphs encodes glyphs.proto's message glyphs { fontstack stacks = 1 }
// with one fontstack { name = 1; range = 2 } and no glyph entries.
func EmptyGlyphs(name, rng string) []byte {
	fs := appendString(appendString(nil, 1, name), 2, rng)
	out := []byte{1<<3 | 2}
	out = appendVarint(out, uint64(len(fs)))
	return append(out, fs...)
}

func appendString(b []byte, field int, s string) []byte {
	b = append(b, byte(field<<3|2))
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
