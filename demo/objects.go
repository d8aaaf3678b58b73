package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// jiefangbei is the city-centre reference: building density falls off
// with distance from it.
var jiefangbei = orb.Point{106.577, 29.558}

// buildingSite is what devices need to know about a building.
type buildingSite struct {
	name     string
	centre   orb.Point
	highRise bool
	street   string // code of the street the building stands in
}

// addBuildings places Scale*50,000 small rotated rectangles in the streets,
// denser near Jiefangbei and in the central districts, never within 15 m
// of a river. Heights: most 9..30 m; about 45% are high-rise (>= 24 m,
// the Chinese fire code's threshold) and get a fire code.
func (c *City) addBuildings(r *rand.Rand) {
	var streets []*Street
	var cum []float64
	total := 0.0
	for _, d := range c.Districts {
		for _, s := range d.Streets {
			km := distMetres(s.Center, jiefangbei) / 1000
			area := math.Abs(signedArea(s.Polygon[0][:len(s.Polygon[0])-1]))
			total += d.density * area / (1 + km*km/16)
			streets = append(streets, s)
			cum = append(cum, total)
		}
	}
	n := baseBuildings * c.Options.Scale
	fires := map[string]int{}
	persons := personsPerScale * c.Options.Scale
	fs := make([]*twin.Feature, 0, n)
	names := newBuildingNamer(c.Options.Seed)
	c.sites = make([]buildingSite, 0, n)
	for i := 1; i <= n; i++ {
		s := streets[sort.SearchFloat64s(cum, r.Float64()*total)]
		levels, high := drawLevels(r)
		w, dp := 12+r.Float64()*18, 10+r.Float64()*12
		if high {
			w, dp = 18+r.Float64()*22, 15+r.Float64()*15
		}
		half := math.Hypot(w, dp) / 2
		var p orb.Point
		for {
			p = s.RandomPoint(r)
			if !c.InWater(p, half+15) {
				break
			}
		}
		poly := rect(p, w, dp, r.Float64()*math.Pi)
		// The twin places a polygon by planar.Centroid; name the street that
		// holds that point, so props and region path agree.
		if cen, ok := planar.Centroid(poly); ok && !planar.PointInPolygon(cen, s.Polygon) {
			if s2 := c.street(cen); s2 != nil {
				s = s2
			}
		}
		height := math.Round((float64(levels)*3.0+r.Float64()*2.5)*10) / 10
		name := fmt.Sprintf("b%06d", i)
		own := owners(r, persons)
		props := map[string]any{
			"name": name, "name_zh": names.name(s, i, levels), "height_m": height, "levels": levels, "high_rise": height >= 24,
			"risk_level": 5, "risk_color": "green",
			"owners": own, "owners_zh": ownerNamesZH(own),
		}
		if height >= 24 {
			fires[s.District.Code]++
			props["fire_code"] = fmt.Sprintf("FC-%s-%06d", s.District.Code, fires[s.District.Code])
		}
		fs = append(fs, feature(twin.Buildings, name, poly, props))
		c.sites = append(c.sites, buildingSite{name: name, centre: round(p), highRise: height >= 24, street: s.Code})
	}
	c.Features[twin.Buildings] = fs
}

// drawLevels draws a storey count: 55% 3..7, 25% 8..10, 15% 11..33, 5% 34..60.
func drawLevels(r *rand.Rand) (int, bool) {
	u := r.Float64()
	switch {
	case u < 0.55:
		return 3 + r.IntN(5), false
	case u < 0.80:
		return 8 + r.IntN(3), true
	case u < 0.95:
		return 11 + r.IntN(23), true
	default:
		return 34 + r.IntN(27), true
	}
}

// ownerNamesZH are the Chinese names of owners (person-NNNNN), index for
// index: the inspector shows names, notifications go to the ids.
func ownerNamesZH(owners []any) []any {
	out := make([]any, len(owners))
	for i, o := range owners {
		var n int
		if _, err := fmt.Sscanf(o.(string), "person-%d", &n); err != nil {
			out[i] = o
			continue
		}
		out[i] = personNameZH(n)
	}
	return out
}

func owners(r *rand.Rand, persons int) []any {
	k := 1
	if r.Float64() < 0.3 {
		k = 2
	}
	out := make([]any, k)
	for i := range out {
		out[i] = fmt.Sprintf("person-%05d", 1+r.IntN(persons))
	}
	return out
}

// rect is a w x d metre rectangle centred on p, rotated by angle radians.
func rect(p orb.Point, w, d, angle float64) orb.Polygon {
	cs, sn := math.Cos(angle), math.Sin(angle)
	ring := make(orb.Ring, 0, 5)
	for _, k := range [][2]float64{{-1, -1}, {1, -1}, {1, 1}, {-1, 1}} {
		x, y := k[0]*w/2, k[1]*d/2
		ring = append(ring, round(offsetMetres(p, x*cs-y*sn, x*sn+y*cs)))
	}
	return orb.Polygon{append(ring, ring[0])}
}

// near returns a point about m metres from p in a random direction.
func near(r *rand.Rand, p orb.Point, m float64) orb.Point {
	a := r.Float64() * 2 * math.Pi
	return round(offsetMetres(p, m*math.Cos(a), m*math.Sin(a)))
}

// addDevices adds septic gas sensors on buildings, cameras at points near
// the bridge ends and along primary roads (two cameras at most points, as
// in Jiangbei's 326 cameras at 181 points), and hydrant pressure gauges on
// a quarter of the high-rise buildings.
func (c *City) addDevices(r *rand.Rand) {
	sc := c.Options.Scale
	for i := 1; i <= baseGasSensors*sc; i++ {
		b := c.sites[r.IntN(len(c.sites))]
		c.add(feature(twin.Devices, fmt.Sprintf("gas-%05d", i), near(r, b.centre, 3+r.Float64()*8), map[string]any{
			"kind": "septic_gas", "attached_to": "buildings/" + b.name, "status": "online",
			"values": map[string]any{"ch4": math.Round((0.1+0.8*r.Float64())*100) / 100, "h2s": math.Round((0.01+0.4*r.Float64())*1000) / 1000},
			"units":  map[string]any{"ch4": "%vol", "h2s": "ppm"},
		}))
	}
	var primaries []orb.LineString
	var primaryNames []string
	for _, f := range c.Features[twin.Roads] {
		if f.Prop("class") == "primary" {
			primaries = append(primaries, f.Geometry.(orb.LineString))
			primaryNames = append(primaryNames, f.Prop("name"))
		}
	}
	points := baseCamPoints * sc
	cams := baseCameras * sc
	doubles := cams - points // points with two cameras
	for pt := 1; pt <= points; pt++ {
		var p orb.Point
		var where string
		if k := pt - 1; k < 2*len(c.Bridges) {
			b := c.Bridges[k/2]
			p = near(r, b.Line[k%2], 20+r.Float64()*30)
			where = b.Name + " Bridge"
		} else {
			i := r.IntN(len(primaries))
			ls := primaries[i]
			j := r.IntN(len(ls) - 1)
			t := r.Float64()
			q := orb.Point{ls[j][0] + t*(ls[j+1][0]-ls[j][0]), ls[j][1] + t*(ls[j+1][1]-ls[j][1])}
			p = near(r, q, 8+r.Float64()*10)
			where = primaryNames[i]
		}
		n := 1
		if pt <= doubles {
			n = 2
		}
		for k := 1; k <= n; k++ {
			c.add(feature(twin.Devices, fmt.Sprintf("cam-%03d-%d", pt, k), near(r, p, 2), map[string]any{
				"kind": "camera", "status": "online", "point": fmt.Sprintf("cam-%03d", pt), "road": where,
				"heading": math.Round(r.Float64() * 360),
			}))
		}
	}
	h := 0
	for _, b := range c.sites {
		if !b.highRise || r.Float64() >= hydrantShare {
			continue
		}
		h++
		c.add(feature(twin.Devices, fmt.Sprintf("hyd-%05d", h), near(r, b.centre, 4), map[string]any{
			"kind": "hydrant_pressure", "attached_to": "buildings/" + b.name, "status": "online",
			"values": map[string]any{"pressure_mpa": math.Round((0.28+0.06*r.Float64())*100) / 100},
			"units":  map[string]any{"pressure_mpa": "MPa"},
		}))
	}
}

// addVehicles adds muck trucks, each driving a loop from a street on one
// bank across a bridge to a street on the other and back, and patrol cars
// touring their district's streets. Plates are unique.
func (c *City) addVehicles(r *rand.Rand) {
	sc := c.Options.Scale
	used := map[int]bool{}
	plate := func(suffix string) string {
		for {
			n := 10000 + r.IntN(90000)
			if !used[n] {
				used[n] = true
				if suffix != "" {
					return fmt.Sprintf("渝A·%04d%s", n%10000, suffix)
				}
				return fmt.Sprintf("渝A·%05d", n)
			}
		}
	}
	for i := 1; i <= baseMuckTrucks*sc; i++ {
		b := c.Bridges[r.IntN(len(c.Bridges))]
		sa, sb := reachableStreet(r, b.Connects[0]), reachableStreet(r, b.Connects[1])
		route := orb.LineString{sa.Center, b.Connects[0].Kernel, b.Line[0], b.Line[1], b.Connects[1].Kernel, sb.Center,
			b.Connects[1].Kernel, b.Line[1], b.Line[0], b.Connects[0].Kernel, sa.Center}
		route = dedupe(route)
		name := fmt.Sprintf("MT%04d", i)
		c.Routes[name] = route
		c.add(feature(twin.Vehicles, name, route[0], map[string]any{
			"kind": "muck_truck", "plate": plate(""), "name_zh": muckTruckNameZH(i), "speed_kmh": 0.0, "heading": 0.0, "bridge": b.Name + " Bridge",
			// The haulier's responsible person, told of an enforcement case.
			"owners": []any{fmt.Sprintf("haulier-%02d", 1+(i-1)%24)},
		}))
	}
	for i := 1; i <= basePatrolCars*sc; i++ {
		d := c.Districts[(i-1)%len(c.Districts)]
		route := orb.LineString{d.Kernel}
		for k := 0; k < 3; k++ {
			s := reachableStreet(r, d)
			route = append(route, s.Center, d.Kernel)
		}
		route = dedupe(route)
		for _, s := range d.Streets[1:] {
			if len(route) >= 2 {
				break
			}
			if s.reachable {
				route = append(route, s.Center, d.Kernel)
			}
		}
		name := fmt.Sprintf("PC%03d", i)
		c.Routes[name] = route
		c.add(feature(twin.Vehicles, name, route[0], map[string]any{
			"kind": "patrol", "plate": plate("警"), "name_zh": patrolNameZH(d, i, len(c.Districts)), "speed_kmh": 0.0, "heading": 0.0, "district": d.Code,
		}))
	}
}

// reachableStreet draws a street of d whose centre a dry road reaches
// (the core street always qualifies).
func reachableStreet(r *rand.Rand, d *District) *Street {
	for {
		if s := d.Streets[r.IntN(len(d.Streets))]; s.reachable {
			return s
		}
	}
}

// dedupe drops consecutive repeated points.
func dedupe(ls orb.LineString) orb.LineString {
	out := ls[:1]
	for _, p := range ls[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return out
}

// addWorkers spreads Scale*600 grid workers over the streets (round robin),
// each starting at a dry point of its street and, when grids exist, inside
// a grid of that street whose code it carries.
func (c *City) addWorkers(r *rand.Rand) {
	var streets []*Street
	for _, d := range c.Districts {
		streets = append(streets, d.Streets...)
	}
	grids := map[string][]*twin.Feature{}
	// cellGrid maps the H3 cell of a one-cell grid (locate.MakeGrids) to
	// it: the twin's locator assigns a point's grid by its res-9 cell, so
	// workers use the same rule rather than the planar cell outline.
	cellGrid := map[uint64]*twin.Feature{}
	for _, g := range c.Features[twin.Grids] {
		grids[g.Prop("street")] = append(grids[g.Prop("street")], g)
		if len(g.Cells()) == 1 {
			cellGrid[g.Cell()] = g
		}
	}
	for i := 1; i <= baseWorkers*c.Options.Scale; i++ {
		s := streets[(i-1)%len(streets)]
		var p orb.Point
		grid := ""
		for try := 0; ; try++ {
			u, v := s.RandomUV(r)
			c.workerUV[fmt.Sprintf("w%04d", i)] = [2]float64{u, v}
			p = round(s.PointAt(u, v))
			if c.InWater(p, 10) && try < 50 {
				continue
			}
			if g := cellGrid[hex.PointCell(p, hex.PointRes)]; g != nil {
				if g.Prop("street") == s.Code {
					grid = g.Prop("code")
				}
			} else {
				grid = gridAt(grids[s.Code], p)
			}
			if grid != "" || len(grids[s.Code]) == 0 || try >= 50 {
				break
			}
		}
		name := fmt.Sprintf("w%04d", i)
		c.WorkerStreet[name] = s
		c.add(feature(twin.Workers, name, p, map[string]any{
			"grid": grid, "street": s.Code, "status": "available", "name": fmt.Sprintf("Worker %d", i),
			"name_zh": workerNameZH(i),
		}))
	}
}

// gridAt returns the code of the grid containing p ("" if none).
func gridAt(gs []*twin.Feature, p orb.Point) string {
	for _, g := range gs {
		if g.Geometry != nil && g.Geometry.Bound().Contains(p) && planar.Contains(g.Geometry, p) {
			if code := g.Prop("code"); code != "" {
				return code
			}
			return g.ID.Name
		}
	}
	return ""
}

// Common surnames and given names for the demo's grid workers, so an operator
// reads 张伟 rather than "Worker 17". Drawn from the index, not from the
// generator, so adding them moved nothing else in the city.
var (
	surnamesZH = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "罗", "高", "林"}
	givenZH    = []string{"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "霞", "平", "刚", "桂英", "建华", "小红", "志强"}
)

// workerNameZH is grid worker i's Chinese name.
func workerNameZH(i int) string {
	return surnamesZH[i%len(surnamesZH)] + givenZH[(i*7+i/len(surnamesZH))%len(givenZH)]
}
