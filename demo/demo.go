// Package demo generates the bundled demo city: a synthetic, deterministic
// city laid out like central Chongqing (the Yuzhong peninsula between the
// Jialing and the Yangtze, eight districts with their real codes and
// relative positions, streets, rivers, seven named bridges, roads,
// buildings, sensors, cameras, vehicles and grid workers).
//
// The same Options give the same city, byte for byte: every random choice
// comes from PCG streams seeded by Options.Seed, one stream per kind of
// object, so the layout (regions, rivers, bridges, roads) does not depend on
// Scale. Nothing here is survey data; see shared/data/facts.
//
// Sub-package sim drives the generated city with live telemetry.
package demo

import (
	"fmt"
	"math/rand/v2"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
)

// CityCode is the adcode of Chongqing municipality, the root region.
const CityCode = "500000"

// Options choose the city. Zero values take defaults.
type Options struct {
	// Seed selects the random city; default 2016.
	Seed int64
	// Scale multiplies buildings, devices, vehicles and workers (not the
	// layout); default 1 (about 50,000 buildings).
	Scale int
	// Grids builds the grids layer from the street regions; default
	// locate.MakeGrids (the H3 res-9 cells of each street). Workers start
	// inside a grid of their street and carry its code.
	Grids func(streets []*twin.Feature) []*twin.Feature
	// NoGrids leaves the grids layer empty and workers' grid "".
	NoGrids bool
}

func (o Options) withDefaults() Options {
	if o.Seed == 0 {
		o.Seed = 2016
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Grids == nil && !o.NoGrids {
		o.Grids = locate.MakeGrids
	}
	if o.NoGrids {
		o.Grids = nil
	}
	return o
}

// Base counts at scale 1, from the facts sheet where it has them.
const (
	baseBuildings   = 50000
	baseGasSensors  = 2083 // Jiangbei's septic tanks
	baseCamPoints   = 181  // Jiangbei muck-truck watch: 181 points ...
	baseCameras     = 326  // ... with 326 cameras
	baseMuckTrucks  = 120
	basePatrolCars  = 40
	baseWorkers     = 600
	hydrantShare    = 0.25 // share of high-rise buildings with a pressure gauge
	personsPerScale = 30000
)

// City is a generated demo city. It is not modified after Generate returns
// and may be shared between goroutines.
type City struct {
	Options   Options
	Features  map[twin.Layer][]*twin.Feature
	Districts []*District
	Rivers    []*River
	Bridges   []*Bridge
	// Routes are the closed polylines (lon/lat) that each vehicle drives,
	// keyed by vehicle name; every muck truck's route crosses a bridge.
	Routes map[string]orb.LineString
	// WorkerStreet maps each worker's name to the street it walks in.
	WorkerStreet map[string]*Street
	streets      map[string]*Street
	sites        []buildingSite
	workerUV     map[string][2]float64
}

// WorkerStart returns the street coordinates (see Street.PointAt) of a
// worker's starting point, so a simulation can walk on from there.
func (c *City) WorkerStart(name string) (u, v float64, ok bool) {
	uv, ok := c.workerUV[name]
	return uv[0], uv[1], ok
}

// Street returns the street with the given 9-digit code.
func (c *City) Street(code string) (*Street, bool) {
	s, ok := c.streets[code]
	return s, ok
}

// All returns every feature in load order: layers in twin.Layers order
// (regions first, city then districts then streets), each layer in
// generation order.
func (c *City) All() []*twin.Feature {
	n := 0
	for _, fs := range c.Features {
		n += len(fs)
	}
	out := make([]*twin.Feature, 0, n)
	for _, l := range twin.Layers {
		out = append(out, c.Features[l]...)
	}
	return out
}

// Counts returns the number of features per layer, and per `kind` prop for
// devices and vehicles (keys like "devices/camera").
func (c *City) Counts() map[string]int {
	m := map[string]int{}
	for l, fs := range c.Features {
		m[string(l)] = len(fs)
		if l == twin.Devices || l == twin.Vehicles {
			for _, f := range fs {
				m[string(l)+"/"+f.Prop("kind")]++
			}
		}
	}
	return m
}

// stream numbers: one PCG stream per kind of object keeps each kind's
// choices independent of the counts of the others.
const (
	streamStreets = iota + 1
	streamRoads
	streamBuildings
	streamDevices
	streamVehicles
	streamWorkers
)

func (o Options) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(o.Seed), stream*0x9e3779b97f4a7c15))
}

// Generate builds the city. It is deterministic in opts. Measured by
// BenchmarkGenerate on the shared 2-core dev machine: scale 1 in 0.13-0.8 s
// with 77 MB live heap; scale 20 (1M buildings) in 3.3-5.7 s with 1.2 GB.
func Generate(opts Options) (*City, error) {
	opts = opts.withDefaults()
	c := &City{Options: opts, Features: map[twin.Layer][]*twin.Feature{},
		Routes: map[string]orb.LineString{}, WorkerStreet: map[string]*Street{}, streets: map[string]*Street{},
		workerUV: map[string][2]float64{}}
	ds, err := buildDistricts(opts.rng(streamStreets))
	if err != nil {
		return nil, fmt.Errorf("demo: districts: %w", err)
	}
	c.Districts = ds
	c.Rivers = []*River{
		buildRiver("Yangtze", "长江", yangtzeLine, 600, 900),
		buildRiver("Jialing", "嘉陵江", jialingLine, 300, 480),
	}
	c.addRegions()
	if err := c.addBridges(); err != nil {
		return nil, fmt.Errorf("demo: bridges: %w", err)
	}
	c.addRoads(opts.rng(streamRoads))
	c.addBuildings(opts.rng(streamBuildings))
	c.addDevices(opts.rng(streamDevices))
	c.addVehicles(opts.rng(streamVehicles))
	if opts.Grids != nil {
		c.Features[twin.Grids] = opts.Grids(c.streetFeatures())
	}
	c.addWorkers(opts.rng(streamWorkers))
	return c, nil
}

func feature(l twin.Layer, name string, g orb.Geometry, props map[string]any) *twin.Feature {
	f := &twin.Feature{ID: twin.NewID(l, name), Geometry: g, Props: twin.NewProps(props)}
	f.SetSource("demo:" + name)
	return f
}

func (c *City) add(f *twin.Feature) { c.Features[f.ID.Layer] = append(c.Features[f.ID.Layer], f) }

// addRegions adds the city, district and street regions and the rivers.
func (c *City) addRegions() {
	c.add(feature(twin.Regions, CityCode, box.ToPolygon(), map[string]any{
		"level": "city", "code": CityCode, "name": "Chongqing", "name_zh": "重庆市", "parent": ""}))
	for _, d := range c.Districts {
		c.add(feature(twin.Regions, d.Code, d.Polygon, map[string]any{
			"level": "district", "code": d.Code, "name": d.Name, "name_zh": d.NameZH, "parent": CityCode}))
	}
	for _, d := range c.Districts {
		for _, s := range d.Streets {
			c.streets[s.Code] = s
			c.add(feature(twin.Regions, s.Code, s.Polygon, map[string]any{
				"level": "street", "code": s.Code, "name": s.Name, "name_zh": s.NameZH, "parent": d.Code}))
		}
	}
	for _, rv := range c.Rivers {
		c.add(feature(twin.Rivers, lower(rv.Name), rv.Polygon, map[string]any{"name": rv.Name, "name_zh": rv.NameZH}))
	}
}

func (c *City) streetFeatures() []*twin.Feature {
	var out []*twin.Feature
	for _, f := range c.Features[twin.Regions] {
		if f.Prop("level") == "street" {
			out = append(out, f)
		}
	}
	return out
}

// district returns the district containing p, or nil.
func (c *City) district(p orb.Point) *District {
	for _, d := range c.Districts {
		if planar.PointInPolygon(p, d.Polygon) {
			return d
		}
	}
	return nil
}

// street returns the street containing p, or nil.
func (c *City) street(p orb.Point) *Street {
	d := c.district(p)
	if d == nil {
		return nil
	}
	for _, s := range d.Streets {
		if planar.PointInPolygon(p, s.Polygon) {
			return s
		}
	}
	return nil
}

// InWater reports whether p is within margin metres of any river (a
// conservative test: it may also say so a few tens of metres further out).
func (c *City) InWater(p orb.Point, margin float64) bool {
	for _, rv := range c.Rivers {
		if rv.wet(p, margin) {
			return true
		}
	}
	return false
}

func lower(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch >= 'A' && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}
