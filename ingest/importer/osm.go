package importer

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	"github.com/paulmach/osm"
	"github.com/paulmach/osm/osmpbf"
	"github.com/paulmach/osm/osmxml"
)

// highRiseMetres is the height from which a civil building counts as
// high-rise in China (GB 50352-2019 "Uniform standard for design of civil
// buildings", §3.1.2: over 24 m; residential buildings from 27 m under
// GB 50016, which this importer does not distinguish).
const highRiseMetres = 24.0

// metresPerLevel estimates height from building:levels when height is absent.
const metresPerLevel = 3.0

// osmScanner is what osmxml and osmpbf scanners share.
type osmScanner interface {
	Scan() bool
	Object() osm.Object
	Err() error
	Close() error
}

// osmState keeps what later elements refer to: node positions for ways and
// way node lists for relations. Memory grows with the extract (a city
// extract of a few million nodes needs a few hundred MB).
type osmState struct {
	nodes map[osm.NodeID]orb.Point
	ways  map[osm.WayID][]osm.NodeID
}

// osm reads OpenStreetMap XML or PBF. Standard files list nodes, then ways,
// then relations, which is what this single pass assumes:
//   - highway=* ways -> roads {name, class, oneway} (oneway=-1 reverses the line)
//   - bridge=* ways (not "no") -> bridges {name, class}, in addition to roads
//   - waterway=* ways, natural=water areas -> rivers {name}
//   - building=* closed ways and multipolygons -> buildings {name, height_m, levels, high_rise}
//   - boundary=administrative relations -> regions {code, name, level, admin_level}
//
// Names are osm-n/w/r{id} (regions: their adcode when tagged).
func (r *run) osm(ctx context.Context, src io.Reader, pbf bool) error {
	var sc osmScanner
	if pbf {
		sc = osmpbf.New(ctx, src, 2)
	} else {
		sc = osmxml.New(ctx, src)
	}
	defer sc.Close()
	st := &osmState{nodes: map[osm.NodeID]orb.Point{}, ways: map[osm.WayID][]osm.NodeID{}}
	for index := 0; sc.Scan(); index++ {
		var err error
		switch o := sc.Object().(type) {
		case *osm.Node:
			st.nodes[o.ID] = orb.Point{o.Lon, o.Lat}
		case *osm.Way:
			err = r.osmWay(ctx, st, o, index)
		case *osm.Relation:
			err = r.osmRelation(ctx, st, o, index)
		}
		if err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read OSM: %w", err)
	}
	return nil
}

func (r *run) osmWay(ctx context.Context, st *osmState, w *osm.Way, index int) error {
	ids := make([]osm.NodeID, len(w.Nodes))
	for i, n := range w.Nodes {
		ids[i] = n.ID
	}
	st.ways[w.ID] = ids
	tags := w.Tags
	layers := wayLayers(tags)
	if r.opts.Layer != "" {
		layers = slices.DeleteFunc(layers, func(l twin.Layer) bool { return l != r.opts.Layer })
	}
	if len(layers) == 0 {
		return nil
	}
	r.sum.Read++
	pts, missing := st.line(ids)
	if missing > 0 {
		r.problem(0, index, "way %d references %d missing nodes", w.ID, missing)
		return nil
	}
	name := fmt.Sprintf("osm-w%d", w.ID)
	for _, l := range layers {
		var g orb.Geometry = pts
		props := map[string]any{}
		if n := tags.Find("name"); n != "" {
			props["name"] = n
		}
		switch l {
		case twin.Roads, twin.Bridges:
			props["class"] = tags.Find("highway")
			ow, reverse := oneway(tags)
			if l == twin.Roads {
				props["oneway"] = ow
			}
			if reverse {
				rev := slices.Clone(pts)
				slices.Reverse(rev)
				g = rev
			}
		case twin.Buildings:
			if !closedLine(pts) {
				r.problem(0, index, "building way %d is not closed", w.ID)
				continue
			}
			g = orb.Polygon{orb.Ring(pts)}
			props = buildingProps(props, tags.Find)
		case twin.Rivers:
			if tags.Find("waterway") == "" && closedLine(pts) {
				g = orb.Polygon{orb.Ring(pts)}
			}
		}
		f := &twin.Feature{ID: twin.NewID(l, name), Geometry: g, Props: twin.NewProps(props)}
		f.SetSource(fmt.Sprintf("osm:w%d", w.ID))
		if err := r.add(ctx, f, 0, index); err != nil {
			return err
		}
	}
	return nil
}

// wayLayers lists the layers a way belongs to (a bridge is also a road).
func wayLayers(t osm.Tags) []twin.Layer {
	var ls []twin.Layer
	if t.Find("highway") != "" {
		ls = append(ls, twin.Roads)
	}
	if b := t.Find("bridge"); b != "" && b != "no" {
		ls = append(ls, twin.Bridges)
	}
	if t.Find("waterway") != "" || t.Find("natural") == "water" {
		ls = append(ls, twin.Rivers)
	}
	if b := t.Find("building"); b != "" && b != "no" {
		ls = append(ls, twin.Buildings)
	}
	return ls
}

// oneway interprets OSM oneway tags; reverse means the way is drawn against
// the direction of travel (oneway=-1) and the line should be flipped.
func oneway(t osm.Tags) (ow, reverse bool) {
	switch t.Find("oneway") {
	case "yes", "true", "1":
		return true, false
	case "-1", "reverse":
		return true, true
	case "no", "false", "0":
		return false, false
	}
	j := t.Find("junction")
	return j == "roundabout" || j == "circular" || t.Find("highway") == "motorway", false
}

func (st *osmState) line(ids []osm.NodeID) (orb.LineString, int) {
	pts := make(orb.LineString, 0, len(ids))
	missing := 0
	for _, id := range ids {
		p, ok := st.nodes[id]
		if !ok {
			missing++
			continue
		}
		pts = append(pts, p)
	}
	return pts, missing
}

func closedLine(ls orb.LineString) bool { return len(ls) >= 4 && ls[0] == ls[len(ls)-1] }

// buildingProps derives height_m (height, else levels x 3 m), levels and
// high_rise (height >= 24 m) from source tags; base keeps other props.
func buildingProps(base map[string]any, get func(string) string) map[string]any {
	out := base
	if out == nil {
		out = map[string]any{}
	}
	if n := get("name"); n != "" {
		out["name"] = n
	}
	levels, hasLevels := parseNumber(get("building:levels"))
	if !hasLevels {
		levels, hasLevels = parseNumber(get("levels"))
	}
	if hasLevels {
		out["levels"] = levels
	}
	height, hasHeight := parseNumber(get("height"))
	if !hasHeight {
		height, hasHeight = parseNumber(get("height_m"))
	}
	if !hasHeight && hasLevels {
		height, hasHeight = levels*metresPerLevel, true
	}
	if hasHeight {
		out["height_m"] = height
		out["high_rise"] = height >= highRiseMetres
	}
	return out
}

// parseNumber reads "24", "24.5", "24 m", "24m".
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "m"))
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil && v >= 0
}

// adminLevels maps OSM admin_level in China onto the twin's tiers: 4 is
// the province-level municipality (the city tier), 6 districts/counties,
// 8 streets and towns.
var adminLevels = map[string]string{"4": "city", "5": "city", "6": "district", "7": "street", "8": "street"}

func (r *run) osmRelation(ctx context.Context, st *osmState, rel *osm.Relation, index int) error {
	t := rel.Tags
	var layer twin.Layer
	props := map[string]any{}
	if n := t.Find("name"); n != "" {
		props["name"] = n
	}
	name := fmt.Sprintf("osm-r%d", rel.ID)
	switch {
	case t.Find("boundary") == "administrative":
		layer = twin.Regions
		al := t.Find("admin_level")
		props["admin_level"] = al
		if lv, ok := adminLevels[al]; ok {
			props["level"] = lv
		}
		for _, k := range []string{"ref:adcode", "gb:adcode", "ref:gb", "ref"} {
			if c := t.Find(k); isAdcode(c) {
				props["code"] = c
				name = c
				break
			}
		}
	case t.Find("type") == "multipolygon" && t.Find("building") != "" && t.Find("building") != "no":
		layer = twin.Buildings
		props = buildingProps(props, t.Find)
	case t.Find("type") == "multipolygon" && (t.Find("natural") == "water" || t.Find("waterway") != ""):
		layer = twin.Rivers
	default:
		return nil
	}
	if r.opts.Layer != "" && r.opts.Layer != layer {
		return nil
	}
	r.sum.Read++
	var outer, inner []orb.LineString
	for _, m := range rel.Members {
		if m.Type != osm.TypeWay {
			continue
		}
		ids, ok := st.ways[osm.WayID(m.Ref)]
		if !ok {
			continue
		}
		pts, missing := st.line(ids)
		if missing > 0 || len(pts) < 2 {
			continue
		}
		if m.Role == "inner" {
			inner = append(inner, pts)
		} else {
			outer = append(outer, pts)
		}
	}
	g, err := assemble(outer, inner)
	if err != nil {
		r.problem(0, index, "relation %d: %v", rel.ID, err)
		return nil
	}
	f := &twin.Feature{ID: twin.NewID(layer, name), Geometry: g, Props: twin.NewProps(props)}
	f.SetSource(fmt.Sprintf("osm:r%d", rel.ID))
	return r.add(ctx, f, 0, index)
}

func isAdcode(s string) bool {
	if len(s) != 6 && len(s) != 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// assemble joins member ways end to end into closed rings and puts each
// inner ring into the outer ring that contains it.
func assemble(outerWays, innerWays []orb.LineString) (orb.Geometry, error) {
	outers, err := joinRings(outerWays)
	if err != nil {
		return nil, err
	}
	if len(outers) == 0 {
		return nil, fmt.Errorf("empty geometry (no complete outer ring among the members present)")
	}
	inners, err := joinRings(innerWays)
	if err != nil {
		return nil, err
	}
	mp := make(orb.MultiPolygon, len(outers))
	for i, o := range outers {
		mp[i] = orb.Polygon{o}
	}
	for _, in := range inners {
		for i, o := range outers {
			if planar.PointInRing(in[0], o) {
				mp[i] = append(mp[i], in)
				break
			}
		}
	}
	if len(mp) == 1 {
		return mp[0], nil
	}
	return mp, nil
}

// joinRings greedily chains lines sharing end points into closed rings.
func joinRings(ways []orb.LineString) ([]orb.Ring, error) {
	used := make([]bool, len(ways))
	var rings []orb.Ring
	for i := range ways {
		if used[i] {
			continue
		}
		used[i] = true
		cur := slices.Clone(ways[i])
		for cur[0] != cur[len(cur)-1] {
			end := cur[len(cur)-1]
			found := false
			for j := range ways {
				if used[j] {
					continue
				}
				w := ways[j]
				switch {
				case w[0] == end:
					cur = append(cur, w[1:]...)
				case w[len(w)-1] == end:
					rev := slices.Clone(w)
					slices.Reverse(rev)
					cur = append(cur, rev[1:]...)
				default:
					continue
				}
				used[j], found = true, true
				break
			}
			if !found {
				return nil, fmt.Errorf("unclosed ring (members missing or not joined end to end)")
			}
		}
		rings = append(rings, orb.Ring(cur))
	}
	return rings, nil
}
