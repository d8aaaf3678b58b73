package demo

import (
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
)

// TestLocatorAgrees checks the city against the twin's own locator: every
// worker's region path ends in its street and its grid is the one the
// locator finds; a sample of buildings lies in the street they name.
func TestLocatorAgrees(t *testing.T) {
	c := defaultCity(t)
	loc := locate.New()
	loc.Reset(c.Features[twin.Regions], c.Features[twin.Grids])
	for _, w := range c.Features[twin.Workers] {
		_, place := loc.Locate(w.Geometry)
		region, grid := place.Region, place.Grid
		if len(region) != 3 || region[0] != CityCode || region[2] != w.Prop("street") || region[1] != w.Prop("street")[:6] {
			t.Fatalf("%s: region %v, street %s", w.ID, region, w.Prop("street"))
		}
		if grid == "" || grid != w.Prop("grid") {
			t.Fatalf("%s: locator grid %q, props grid %q", w.ID, grid, w.Prop("grid"))
		}
	}
	for i, b := range c.Features[twin.Buildings] {
		if i%25 != 0 {
			continue
		}
		// Buildings carry no street prop (the region path has it); the
		// generator's own record of the street must agree with the locator.
		_, place := loc.Locate(b.Geometry)
		region := place.Region
		if site := c.sites[i]; site.name != b.ID.Name || len(region) != 3 || region[2] != site.street {
			t.Fatalf("%s: region %v, generated in street %s (%s)", b.ID, region, site.street, site.name)
		}
	}
	for _, f := range c.Features[twin.Vehicles] {
		if _, place := loc.Locate(f.Geometry); place == nil || len(place.Region) != 3 {
			t.Fatalf("%s: place %v", f.ID, place)
		}
	}
}
