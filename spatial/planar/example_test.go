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
