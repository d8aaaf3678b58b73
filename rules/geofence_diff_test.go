package rules

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin"
)

// TestFenceEventsMatchBruteForce is a differential test of the geofence
// state: vehicles walk at random among square fences that are moved,
// removed and added back meanwhile; each vehicle's alert must count
// exactly the enters and exits a brute-force check of every fence finds
// (a fence's state survives its removal and counts again once it is
// back, as the engine keeps it). The seed is printed;
// RULES_FENCE_SEED=N replays one.
func TestFenceEventsMatchBruteForce(t *testing.T) {
	seed := testseed.Seed(t, "RULES_FENCE_SEED")
	r := rand.New(rand.NewPCG(seed, 11))
	f := newFixture(t, `
rules:
  - name: sq
    kind: geofence
    severity: yellow
    subjects: {layer: vehicles}
    target: {layer: grids}
    detect: [enter, exit]
`)
	const (
		nFences   = 30
		nVehicles = 12
		lon0      = 106.50
		lat0      = 29.50
		span      = 0.02 // degrees of the box everything is in
	)
	type square struct{ minX, minY, maxX, maxY float64 }
	sq := make([]*square, nFences) // nil: removed
	place := func(i int) {
		w := 0.001 + r.Float64()*0.004
		x, y := lon0+r.Float64()*span, lat0+r.Float64()*span
		sq[i] = &square{x, y, x + w, y + w}
		f.put(twin.Grids, fmt.Sprintf("g%d", i), orb.Polygon{{{x, y}, {x + w, y}, {x + w, y + w}, {x, y + w}, {x, y}}}, nil)
	}
	for i := range sq {
		place(i)
	}
	pos := make([]orb.Point, nVehicles)
	for v := range pos {
		pos[v] = orb.Point{lon0 + r.Float64()*span, lat0 + r.Float64()*span}
		f.put(twin.Vehicles, fmt.Sprintf("v%d", v), pos[v], map[string]any{"kind": "muck_truck"})
	}
	f.e.Drain()
	// The reference: each (vehicle, fence) inside or not, as last judged
	// while the fence was there; every flip is one firing.
	in := make([][]bool, nVehicles)
	want := make([]int, nVehicles)
	judge := func(v int) {
		for i, s := range sq {
			if s == nil {
				continue
			}
			p := pos[v]
			now := p[0] > s.minX && p[0] < s.maxX && p[1] > s.minY && p[1] < s.maxY
			if now != in[v][i] {
				in[v][i] = now
				want[v]++
			}
		}
	}
	for v := range in {
		in[v] = make([]bool, nFences)
		judge(v) // placed inside a fence is an enter
	}
	t0 := f.clk.Now()
	for step := range 600 {
		if r.IntN(10) == 0 { // a fence moves, goes or comes back
			i := r.IntN(nFences)
			switch {
			case sq[i] == nil || r.IntN(2) == 0:
				place(i)
			default:
				if _, err := f.tw.Delete(twin.NewID(twin.Grids, fmt.Sprintf("g%d", i))); err != nil {
					t.Fatal(err)
				}
				sq[i] = nil
			}
			f.e.Drain()
		}
		v := r.IntN(nVehicles)
		if r.IntN(4) == 0 { // a jump across the box, else a short drive
			pos[v] = orb.Point{lon0 + r.Float64()*span, lat0 + r.Float64()*span}
		} else {
			pos[v] = orb.Point{pos[v][0] + (r.Float64()-0.5)*0.003, pos[v][1] + (r.Float64()-0.5)*0.003}
		}
		f.fix(t, fmt.Sprintf("v%d", v), t0.Add(time.Duration(step+1)*time.Second), pos[v])
		judge(v)
	}
	got := make([]int, nVehicles)
	for _, a := range f.alerts("sq") {
		var v int
		if _, err := fmt.Sscanf(a.Prop("subject"), "vehicles/v%d", &v); err != nil {
			t.Fatal(err)
		}
		n, _ := a.Number("count")
		got[v] += int(n)
	}
	for v := range want {
		if got[v] != want[v] {
			t.Errorf("vehicle v%d: %d firings, brute force finds %d enters and exits", v, got[v], want[v])
		}
	}
}
