package planar_test

import (
	"fmt"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/planar"
)

// A muck truck's last two fixes against a bridge drawn west to east.
func ExampleSegmentCrossesLine() {
	bridge := orb.LineString{{106.570, 29.560}, {106.580, 29.560}}
	prev, cur := orb.Point{106.575, 29.565}, orb.Point{106.575, 29.555}
	for _, c := range planar.SegmentCrossesLine(prev, cur, bridge) {
		dir := map[int]string{planar.LeftToRight: "southbound (left to right)", planar.RightToLeft: "northbound", planar.Touch: "touch"}[c.Side]
		fmt.Printf("crossed segment %d at %.3f,%.3f: %s\n", c.Index, c.Point[0], c.Point[1], dir)
	}
	// Output: crossed segment 0 at 106.575,29.560: southbound (left to right)
}

// A road drawn as one long segment crosses a viewport with both ends
// outside it: the envelope test and the vertex test disagree, the exact
// predicate decides.
func ExampleIntersects() {
	road := orb.LineString{{106.58, 29.76}, {106.7285, 29.7785625}}
	box := orb.Bound{Min: orb.Point{106.594412, 29.744461}, Max: orb.Point{106.624412, 29.794461}}
	fmt.Println(planar.Intersects(road, box))
	// Its envelope overlaps the box, but the line passes the north-east corner.
	corner := orb.LineString{{106.58, 29.83}, {106.64, 29.79}}
	fmt.Println(corner.Bound().Intersects(box), planar.Intersects(corner, box))
	// Output:
	// true
	// true false
}
