package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// Bridge is one generated bridge across a river.
type Bridge struct {
	Name, NameZH, River string
	Line                orb.LineString // two points, From on Connects[0]'s bank
	Connects            [2]*District
	LengthM             float64
}

// ForbiddenMuckHours returns the local (Asia/Shanghai) hours during which
// muck trucks may not use the bridges, as carried in each bridge's
// restrictions.
func ForbiddenMuckHours() []string { return []string{"07:00-09:00", "17:00-19:30"} }

// bridgeDef places a bridge at fraction t of a centreline segment; length
// from the facts sheet (metres), widened when the river is wider.
type bridgeDef struct {
	name, nameZH string
	river        int // index in City.Rivers: 0 Yangtze, 1 Jialing
	seg          int
	t            float64
	lengthM      float64
	from, to     string // expected district codes of the two ends
}

var bridgeDefs = []bridgeDef{
	{"Qiansimen", "千厮门嘉陵江大桥", 1, 8, 0.5, 878, "500103", "500105"},
	{"Huanghuayuan", "黄花园大桥", 1, 7, 0.75, 1208, "500103", "500105"},
	{"Jiahua", "嘉华嘉陵江大桥", 1, 6, 0.5, 528, "500103", "500105"},
	{"Dongshuimen", "东水门长江大桥", 0, 5, 0.55, 1125, "500103", "500108"},
	{"Chaotianmen", "朝天门长江大桥", 0, 6, 0.6, 1741, "500105", "500108"},
	{"Niujiaotuo", "牛角沱嘉陵江大桥", 1, 7, 0.3, 626, "500103", "500105"},
	{"Shibanpo", "石板坡长江大桥", 0, 4, 0.6, 1100, "500103", "500108"},
}

// addBridges places the bridges and checks each end lies in its expected
// district and out of the water.
func (c *City) addBridges() error {
	byCode := map[string]*District{}
	for _, d := range c.Districts {
		byCode[d.Code] = d
	}
	for _, def := range bridgeDefs {
		rv := c.Rivers[def.river]
		p, nx, ny := rv.pointAlong(def.seg, def.t)
		w := 2 * math.Max(rv.HalfWidth[def.seg], rv.HalfWidth[def.seg+1])
		length := math.Max(def.lengthM, w+300)
		half := length / 2
		a := round(offsetMetres(p, nx*half, ny*half))
		b := round(offsetMetres(p, -nx*half, -ny*half))
		da, db := c.district(a), c.district(b)
		if da != nil && da.Code == def.to {
			a, b, da, db = b, a, db, da
		}
		if da == nil || db == nil || da.Code != def.from || db.Code != def.to {
			return fmt.Errorf("bridge %s: ends %v %v not in %s and %s", def.name, a, b, def.from, def.to)
		}
		if c.InWater(a, 0) || c.InWater(b, 0) {
			return fmt.Errorf("bridge %s: an end is in the water", def.name)
		}
		br := &Bridge{Name: def.name, NameZH: def.nameZH, River: rv.Name, Line: orb.LineString{a, b},
			Connects: [2]*District{da, db}, LengthM: math.Round(distMetres(a, b))}
		c.Bridges = append(c.Bridges, br)
		c.add(feature(twin.Bridges, lower(def.name), br.Line, map[string]any{
			"name": def.name + " Bridge", "name_zh": def.nameZH, "river": rv.Name,
			"connects": []any{da.Code, db.Code}, "length_m": br.LengthM,
			"restrictions": map[string]any{"muck_truck": map[string]any{"forbidden": anys(ForbiddenMuckHours())}},
		}))
	}
	return nil
}

// landLinks are primary roads between district kernels on the same bank,
// through waypoints that keep them out of the rivers.
var landLinks = []struct {
	a, b         string
	via          []orb.Point
	name, nameZH string
}{
	{"500103", "500106", []orb.Point{{106.505, 29.560}, {106.47, 29.585}}, "Shapingba Ave", "沙坪坝大道"},
	{"500103", "500107", []orb.Point{{106.50, 29.545}}, "Jiulongpo Ave", "九龙坡大道"},
	{"500106", "500107", nil, "Xiejiawan Rd", "谢家湾路"},
	{"500107", "500104", []orb.Point{{106.43, 29.50}}, "Dadukou Ave", "大渡口大道"},
	{"500106", "500109", []orb.Point{{106.41, 29.70}}, "Beibei Expressway", "北碚快速路"},
	{"500105", "500112", []orb.Point{{106.58, 29.66}}, "Yubei Ave", "渝北大道"},
}

// addRoads lays the road network: bridge decks and their approaches to the
// district kernels (primary), primary links between neighbouring districts
// on one bank, a ring road and spokes to every street (secondary) in each
// district, and a few residential lanes in every street. Muck-truck and
// patrol routes follow these roads.
func (c *City) addRoads(r *rand.Rand) {
	n := 0
	road := func(class, name, nameZH string, ls orb.LineString) {
		n++
		c.add(feature(twin.Roads, fmt.Sprintf("r%05d", n), ls, map[string]any{
			"name": name, "name_zh": nameZH, "class": class, "oneway": false}))
	}
	short := func(d *District) string { return strings.TrimSuffix(d.NameZH, "区") }
	for _, b := range c.Bridges {
		road("primary", b.Name+" Bridge", b.NameZH, b.Line)
		road("primary", b.Name+" Bridge Rd ("+b.Connects[0].Name+")", b.NameZH+"引道（"+short(b.Connects[0])+"）", orb.LineString{b.Connects[0].Kernel, b.Line[0]})
		road("primary", b.Name+" Bridge Rd ("+b.Connects[1].Name+")", b.NameZH+"引道（"+short(b.Connects[1])+"）", orb.LineString{b.Line[1], b.Connects[1].Kernel})
	}
	byCode := map[string]*District{}
	for _, d := range c.Districts {
		byCode[d.Code] = d
	}
	for _, l := range landLinks {
		ls := orb.LineString{byCode[l.a].Kernel}
		ls = append(ls, l.via...)
		ls = append(ls, byCode[l.b].Kernel)
		road("primary", l.name, l.nameZH, ls)
	}
	for _, d := range c.Districts {
		for _, s := range d.Streets[1:] {
			c.placeCenter(s)
		}
	}
	for _, d := range c.Districts {
		// Ring road along the core street's outer edge (scaled up a little).
		ring := d.Streets[0].Polygon[0]
		rr := make(orb.LineString, 0, len(ring)/4+2)
		for i := 0; i < len(ring)-1; i += 4 {
			rr = append(rr, round(scaleToward(d.Kernel, ring[i], (coreScale+0.03)/coreScale)))
		}
		rr = append(rr, rr[0])
		road("secondary", d.Name+" Ring Rd", short(d)+"环道", rr)
		for _, s := range d.Streets[1:] {
			if s.reachable {
				road("secondary", s.Name+" Rd", s.PlaceZH+"路", orb.LineString{d.Kernel, s.Center})
			}
		}
		for _, s := range d.Streets {
			lanes := 2 + r.IntN(3)
			for k := 1; k <= lanes; k++ {
				// Up to ten tries for a lane that stays dry; else none.
				for try := 0; try < 10; try++ {
					end := round(s.RandomPoint(r))
					if !c.InWater(end, 20) && !c.crossesWater(s.Center, end) {
						road("residential", fmt.Sprintf("%s Lane %d", s.Name, k), fmt.Sprintf("%s%d巷", s.PlaceZH, k), orb.LineString{s.Center, end})
						break
					}
				}
			}
		}
	}
}

// placeCenter moves a street's centre, where its roads meet, to a dry
// point that a straight spoke from the district kernel reaches without
// crossing water, searching along a few rays from the middle of the street
// inwards. A street with no such point keeps its centre and gets no spoke
// (reachable false): vehicles are not routed through it.
func (c *City) placeCenter(s *Street) {
	k := s.District.Kernel
	for _, u := range []float64{0.5, 0.35, 0.65, 0.2, 0.8} {
		for v := 0.5; v >= 0.05; v -= 0.075 {
			p := round(s.PointAt(u, v))
			if !c.InWater(p, 30) && !c.crossesWater(k, p) {
				s.Center, s.reachable = p, true
				return
			}
		}
	}
}

// crossesWater reports whether segment a-b meets any river polygon.
func (c *City) crossesWater(a, b orb.Point) bool {
	for _, rv := range c.Rivers {
		if planar.SegmentIntersectsPolygon(a, b, rv.Polygon) {
			return true
		}
	}
	return false
}

// anys converts to []any, the type JSON decoding gives lists, so props look
// the same whether they come from here or from a store.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
