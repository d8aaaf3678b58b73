package tiles

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/twin"
)

// MaxZoom is the highest zoom served; clients overzoom beyond it.
const MaxZoom = 22

// Errors of ParseTilePath; the handlers map ErrUnknownLayer to 404 and the
// others to 400.
var (
	ErrBadPath      = errors.New("malformed tile path")
	ErrBadZoom      = errors.New("zoom out of range")
	ErrBadTile      = errors.New("tile x/y out of range for zoom")
	ErrUnknownLayer = errors.New("unknown layer")
)

// Kind says what a /tiles/ path asks for.
type Kind uint8

const (
	// KindTile is /tiles/{layers}/{z}/{x}/{y}.mvt.
	KindTile Kind = iota + 1
	// KindTileJSON is /tiles/{layers}.json.
	KindTileJSON
)

// Request is a parsed /tiles/ path.
type Request struct {
	Kind   Kind
	Layers []twin.Layer // in request order, no duplicates
	Z      uint8        // zoom (KindTile only)
	X, Y   uint32       // tile column and row, XYZ scheme (KindTile only)
	// Attrs is the ?attrs= selection (ParseAttrs); ParseTilePath leaves
	// the default.
	Attrs Attrs
}

// LayerKey is the request's layer list as written in the path, used as part
// of the cache key.
func (r Request) LayerKey() string {
	var b strings.Builder
	for i, l := range r.Layers {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(l))
	}
	return b.String()
}

// ParseTilePath parses the part of a URL path after "/tiles/":
// "{layers}/{z}/{x}/{y}.mvt" or "{layers}.json", where layers is one layer
// name or several separated by commas. It never panics; errors wrap one of
// the sentinel errors above.
func ParseTilePath(p string) (Request, error) {
	if len(p) > 512 {
		return Request{}, fmt.Errorf("%w: path too long", ErrBadPath)
	}
	if rest, ok := strings.CutSuffix(p, ".json"); ok && !strings.Contains(rest, "/") {
		ls, err := parseLayers(rest)
		if err != nil {
			return Request{}, err
		}
		return Request{Kind: KindTileJSON, Layers: ls}, nil
	}
	parts := strings.Split(p, "/")
	if len(parts) != 4 {
		return Request{}, fmt.Errorf("%w: want {layers}/{z}/{x}/{y}.mvt or {layers}.json", ErrBadPath)
	}
	ys, ok := strings.CutSuffix(parts[3], ".mvt")
	if !ok {
		if ys, ok = strings.CutSuffix(parts[3], ".pbf"); !ok {
			return Request{}, fmt.Errorf("%w: tile must end in .mvt", ErrBadPath)
		}
	}
	ls, err := parseLayers(parts[0])
	if err != nil {
		return Request{}, err
	}
	z, err := parseUint(parts[1], MaxZoom)
	if err != nil {
		return Request{}, fmt.Errorf("%w: z %q must be 0..%d", ErrBadZoom, parts[1], MaxZoom)
	}
	n := uint64(1) << z
	x, err := parseUint(parts[2], n-1)
	if err != nil {
		return Request{}, fmt.Errorf("%w: x %q must be 0..%d at z%d", ErrBadTile, parts[2], n-1, z)
	}
	y, err := parseUint(ys, n-1)
	if err != nil {
		return Request{}, fmt.Errorf("%w: y %q must be 0..%d at z%d", ErrBadTile, ys, n-1, z)
	}
	return Request{Kind: KindTile, Layers: ls, Z: uint8(z), X: uint32(x), Y: uint32(y)}, nil
}

// parseUint accepts only plain decimal digits (no sign, no spaces) up to max.
func parseUint(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 10 {
		return 0, ErrBadPath
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadPath
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, ErrBadPath
	}
	return v, nil
}

func parseLayers(s string) ([]twin.Layer, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no layer named", ErrBadPath)
	}
	names := strings.Split(s, ",")
	if len(names) > len(twin.Layers) {
		return nil, fmt.Errorf("%w: too many layers", ErrBadPath)
	}
	out := make([]twin.Layer, 0, len(names))
	for _, n := range names {
		l, err := twin.ParseLayer(n)
		if err != nil {
			return nil, fmt.Errorf("%w %q", ErrUnknownLayer, n)
		}
		for _, have := range out {
			if have == l {
				return nil, fmt.Errorf("%w: layer %q named twice", ErrBadPath, n)
			}
		}
		out = append(out, l)
	}
	return out, nil
}
