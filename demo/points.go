package demo

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// PointKinds are the kinds Points draws from.
var pointKinds = [...]string{"muck_truck", "patrol", "taxi", "bus"}

// Points returns n point objects of layer l named p0000001..., spread
// uniformly over the demo city's box, each with the five props a fleet
// tracker carries: kind, plate, status, speed_kmh and heading. The same n
// and seed give the same points. The memory and query benchmarks load
// them into the twin and, with the same fields, into a peer (Tile38):
// cmd/twinbench -points, cmd/geobench.
func Points(l twin.Layer, n int, seed uint64) []*twin.Feature {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	out := make([]*twin.Feature, n)
	for i := range out {
		name := fmt.Sprintf("p%07d", i+1)
		p := orb.Point{box.Min[0] + r.Float64()*(box.Max[0]-box.Min[0]), box.Min[1] + r.Float64()*(box.Max[1]-box.Min[1])}
		out[i] = &twin.Feature{ID: twin.NewID(l, name), Geometry: round(p), Props: twin.NewProps(map[string]any{
			"kind":      pointKinds[r.IntN(len(pointKinds))],
			"plate":     fmt.Sprintf("渝A%05d", r.IntN(100000)),
			"status":    "online",
			"speed_kmh": math.Round(r.Float64()*600) / 10,
			"heading":   math.Round(r.Float64() * 360),
		})}
	}
	return out
}
