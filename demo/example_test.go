package demo_test

import (
	"fmt"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/twin"
)

// Generate the default city and look at its bridges; load c.All() into a
// twin (regions first) to serve it.
func ExampleGenerate() {
	c, err := demo.Generate(demo.Options{Seed: 2016, Scale: 1, NoGrids: true})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(c.Features[twin.Buildings]), "buildings;", c.All()[0].ID)
	for _, b := range c.Bridges[:3] {
		fmt.Printf("%s over the %s: %s - %s\n", b.Name, b.River, b.Connects[0].Name, b.Connects[1].Name)
	}
	// Output:
	// 50000 buildings; regions/500000
	// Qiansimen over the Jialing: Yuzhong - Jiangbei
	// Huanghuayuan over the Jialing: Yuzhong - Jiangbei
	// Jiahua over the Jialing: Yuzhong - Jiangbei
}
