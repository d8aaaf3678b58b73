package hex_test

import (
	"fmt"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
)

func ExamplePointCell() {
	c := hex.PointCell(orb.Point{106.5775, 29.5577}, hex.PointRes)
	fmt.Println(hex.CellString(c), hex.Res(c), len(hex.Disk(c, 1)))
	// Output: 89401971807ffff 9 7
}
