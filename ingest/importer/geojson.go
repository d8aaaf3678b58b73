package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb/geojson"
)

// geojson streams a FeatureCollection: one feature in memory at a time, so
// a file of any size imports in bounded memory. Each feature's line is
// found from Decoder.InputOffset and the newline positions seen so far.
func (r *run) geojson(ctx context.Context, src io.Reader) error {
	li := &lineIndex{r: src}
	dec := json.NewDecoder(li)
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a GeoJSON FeatureCollection (top level is not an object)")
	}
	found := false
	others := map[string]json.RawMessage{} // top-level members kept in case this is a single Feature
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("line %d: not JSON: %w", li.lineAt(dec.InputOffset()), err)
		}
		key, _ := tok.(string)
		switch key {
		case "type":
			var typ string
			if err := dec.Decode(&typ); err != nil {
				return fmt.Errorf("not a GeoJSON FeatureCollection or Feature: %w", err)
			}
			if typ == "Feature" { // RFC 7946 §3.2: a file may hold one Feature
				return r.geojsonSingle(ctx, dec, li, others)
			}
			if typ != "FeatureCollection" {
				return fmt.Errorf("not a GeoJSON FeatureCollection or Feature (type %q)", typ)
			}
		case "features":
			found = true
			if err := r.geojsonFeatures(ctx, dec, li); err != nil {
				return err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fmt.Errorf("line %d: not JSON: %w", li.lineAt(dec.InputOffset()), err)
			}
			if !found {
				others[key] = skip
			}
		}
	}
	if !found {
		return errors.New("not a GeoJSON FeatureCollection (no features array)")
	}
	return nil
}

func (r *run) geojsonFeatures(ctx context.Context, dec *json.Decoder, li *lineIndex) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return errors.New("features is not an array")
	}
	for index := 0; dec.More(); index++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("line %d (feature %d): not JSON: %w", li.lineAt(dec.InputOffset()), index, err)
		}
		line := li.lineAt(dec.InputOffset() - int64(len(raw)))
		r.sum.Read++
		f, reason := r.fromGeoJSON(raw, index)
		if reason != "" {
			r.problem(line, index, "%s", reason)
			continue
		}
		if err := r.add(ctx, f, line, index); err != nil {
			return err
		}
	}
	_, err = dec.Token() // ']'
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return nil
}

// geojsonSingle imports a file whose top level is one Feature: the members
// read before "type" are in others, the rest follow in dec.
func (r *run) geojsonSingle(ctx context.Context, dec *json.Decoder, li *lineIndex, others map[string]json.RawMessage) error {
	others["type"] = json.RawMessage(`"Feature"`)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("line %d: not JSON: %w", li.lineAt(dec.InputOffset()), err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("line %d: not JSON: %w", li.lineAt(dec.InputOffset()), err)
		}
		others[key] = v
	}
	raw, err := json.Marshal(others)
	if err != nil {
		return err
	}
	r.sum.Read++
	f, reason := r.fromGeoJSON(raw, 0)
	if reason != "" {
		r.problem(1, 0, "%s", reason)
		return nil
	}
	return r.add(ctx, f, 1, 0)
}

// fromGeoJSON maps one GeoJSON feature to a twin object, or gives the
// reason it is skipped.
func (r *run) fromGeoJSON(raw json.RawMessage, index int) (*twin.Feature, string) {
	gf, err := geojson.UnmarshalFeature(raw)
	if err != nil {
		return nil, "invalid GeoJSON: " + err.Error()
	}
	if gf.Type != "Feature" {
		return nil, fmt.Sprintf("invalid GeoJSON: type %q, want Feature", gf.Type)
	}
	if gf.Geometry == nil {
		return nil, "empty geometry (null)"
	}
	props := make(map[string]any, len(gf.Properties))
	for k, v := range gf.Properties {
		if to, ok := r.opts.Props[k]; ok {
			k = to
		}
		props[k] = v
	}
	layer, reason := r.layerOf(props)
	if reason != "" {
		return nil, reason
	}
	rawID, idProp := r.sourceID(gf.ID, props)
	var name string
	switch {
	case r.opts.NameProp != "":
		if rawID == "" {
			return nil, fmt.Sprintf("no %q property for the name", r.opts.NameProp)
		}
		name = rawID
	case rawID == "":
		// No id anywhere: the position in the file, stable while the
		// file is.
		name = fmt.Sprintf("%s-%d", fileStem(r.sum.File), index)
	case idProp == "ROADID":
		name = "road-" + rawID
	default:
		name = rawID
	}
	name = cleanName(name)
	var out map[string]any
	switch {
	case layer == twin.Regions && isDataV(props):
		out = dataVRegion(props)
	case layer == twin.Roads:
		out = roadProps(props)
	case layer == twin.Buildings:
		out = buildingProps(props, func(k string) string { return propString(props[k]) })
	default:
		out = props
	}
	f := &twin.Feature{
		ID:       twin.NewID(layer, name),
		Geometry: gf.Geometry,
		Props:    twin.NewProps(out),
	}
	f.SetSource(fileStem(r.sum.File) + ":" + name)
	return f, ""
}

// layerOf picks the layer: Options.Layer, a "layer" property, or one
// inferred from well-known properties.
func (r *run) layerOf(props map[string]any) (twin.Layer, string) {
	if r.opts.Layer != "" {
		return r.opts.Layer, ""
	}
	if v, ok := props["layer"]; ok {
		delete(props, "layer")
		s := propString(v)
		l, err := twin.ParseLayer(s)
		if err != nil {
			return "", fmt.Sprintf("unknown layer %q", s)
		}
		return l, ""
	}
	switch {
	case isDataV(props):
		return twin.Regions, ""
	case props["ROADLEVEL"] != nil || props["highway"] != nil:
		if propString(props["bridge"]) == "yes" {
			return twin.Bridges, ""
		}
		return twin.Roads, ""
	case props["building"] != nil:
		return twin.Buildings, ""
	case props["waterway"] != nil || propString(props["natural"]) == "water":
		return twin.Rivers, ""
	}
	return "", "unknown layer (none given with --layer and none inferred from the properties)"
}

// sourceID finds the feature's stable id and the property it came from
// ("" for the GeoJSON id member).
func (r *run) sourceID(id any, props map[string]any) (string, string) {
	if r.opts.NameProp != "" {
		return propString(props[r.opts.NameProp]), r.opts.NameProp
	}
	if s := propString(id); s != "" {
		return s, ""
	}
	for _, k := range []string{"adcode", "ROADID", "id", "osm_id", "@id"} {
		if s := propString(props[k]); s != "" {
			return s, k
		}
	}
	return "", ""
}

// isDataV recognises DataV.GeoAtlas boundary properties.
func isDataV(props map[string]any) bool {
	return props["adcode"] != nil && props["level"] != nil
}

// dataVLevels maps DataV levels onto the twin's region tiers: Chongqing is
// a province-level municipality, so its "province" is the city tier.
var dataVLevels = map[string]string{"province": "city", "city": "city", "district": "district", "street": "street"}

// dataVRegion keeps the region props of a DataV boundary: code, name,
// level and parent code.
func dataVRegion(props map[string]any) map[string]any {
	level := propString(props["level"])
	if l, ok := dataVLevels[level]; ok {
		level = l
	}
	out := map[string]any{"code": propString(props["adcode"]), "name": propString(props["name"]), "level": level}
	switch p := props["parent"].(type) {
	case map[string]any:
		if s := propString(p["adcode"]); s != "" {
			out["parent"] = s
		}
	case nil:
	default:
		if s := propString(p); s != "" {
			out["parent"] = s
		}
	}
	return out
}

// roadLevels maps Chinese urban road grades (CJJ 37) to OSM highway classes.
var roadLevels = map[string]string{
	"快速路": "motorway", "主干路": "primary", "次干路": "secondary", "支路": "tertiary", "匝道": "motorway_link",
}

// roadProps sets class (an OSM highway value) from highway or ROADLEVEL.
func roadProps(props map[string]any) map[string]any {
	if _, ok := props["class"]; !ok {
		if h := propString(props["highway"]); h != "" {
			props["class"] = h
		} else if c, ok := roadLevels[propString(props["ROADLEVEL"])]; ok {
			props["class"] = c
		}
	}
	return props
}

// propString renders a scalar property as a string: numbers without
// exponent or trailing zeros (adcode 500103 -> "500103"); "" for others.
func propString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// cleanName makes a source id usable as an object name (no '/', '+', '#',
// control characters; at most 200 bytes).
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func fileStem(path string) string {
	b := filepath.Base(path)
	for _, ext := range []string{".gz", ".pbf", ".osm", ".xml", ".geojson", ".json"} {
		b = strings.TrimSuffix(b, ext)
	}
	return b
}

// lineIndex passes reads through and remembers where newlines are, so the
// line of a decoder offset can be found. Queries must not go backwards;
// newlines before the last query are forgotten, so memory stays bounded by
// the decoder's read-ahead.
type lineIndex struct {
	r     io.Reader
	off   int64   // bytes read so far
	nl    []int64 // offsets of newlines not yet counted
	lines int     // newlines counted
}

func (l *lineIndex) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		l.nl = append(l.nl, l.off+int64(i+j))
		i += j + 1
	}
	l.off += int64(n)
	return n, err
}

// lineAt returns the 1-based line holding byte offset off.
func (l *lineIndex) lineAt(off int64) int {
	k := 0
	for k < len(l.nl) && l.nl[k] < off {
		k++
	}
	l.lines += k
	l.nl = l.nl[k:]
	return l.lines + 1
}
