package importer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

const testOSM = `<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
 <node id="1" lat="29.50" lon="106.50"/>
 <node id="2" lat="29.50" lon="106.51"/>
 <node id="3" lat="29.51" lon="106.51"/>
 <node id="4" lat="29.51" lon="106.50"/>
 <node id="5" lat="29.52" lon="106.52"/>
 <node id="6" lat="29.505" lon="106.505"/>
 <way id="10">
  <nd ref="1"/><nd ref="2"/>
  <tag k="highway" v="primary"/><tag k="name" v="嘉陵江滨江路"/><tag k="oneway" v="-1"/>
 </way>
 <way id="11">
  <nd ref="2"/><nd ref="5"/>
  <tag k="highway" v="trunk"/><tag k="bridge" v="yes"/><tag k="name" v="千厮门大桥"/>
 </way>
 <way id="12">
  <nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>
  <tag k="building" v="residential"/><tag k="building:levels" v="9"/>
 </way>
 <way id="13">
  <nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="1"/>
  <tag k="building" v="yes"/><tag k="height" v="12 m"/><tag k="name" v="仓库"/>
 </way>
 <way id="14">
  <nd ref="4"/><nd ref="5"/>
  <tag k="waterway" v="river"/><tag k="name" v="嘉陵江"/>
 </way>
 <way id="15">
  <nd ref="1"/><nd ref="99"/>
  <tag k="highway" v="service"/>
 </way>
 <way id="16"><nd ref="1"/><nd ref="2"/><nd ref="3"/></way>
 <way id="17"><nd ref="3"/><nd ref="4"/><nd ref="1"/></way>
 <way id="18"><nd ref="1"/><nd ref="2"/><nd ref="3"/><tag k="highway" v="residential"/><tag k="junction" v="roundabout"/></way>
 <relation id="20">
  <member type="way" ref="16" role="outer"/><member type="way" ref="17" role="outer"/>
  <tag k="type" v="boundary"/><tag k="boundary" v="administrative"/><tag k="admin_level" v="6"/>
  <tag k="name" v="渝中区"/><tag k="ref:adcode" v="500103"/>
 </relation>
 <relation id="21">
  <member type="way" ref="16" role="outer"/>
  <tag k="type" v="boundary"/><tag k="boundary" v="administrative"/><tag k="admin_level" v="8"/>
 </relation>
</osm>`

func TestOSMXML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.osm")
	if err := os.WriteFile(path, []byte(testOSM), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newMemStore()
	sum := mustImport(t, path, opts(s))
	// Ways 10 (road), 11 (road + bridge), 12, 13 (buildings), 14 (river),
	// 15 (missing node), 18 (road); relations 20 and 21 (unclosed).
	if sum.Read != 9 || sum.Imported != 8 || sum.Skipped != 2 {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(sum.Problems[0].String(), "city.osm (feature 11): way 15 references 1 missing nodes") {
		t.Errorf("problem %s", sum.Problems[0])
	}
	if !strings.Contains(sum.Problems[1].Reason, "relation 21: unclosed ring") {
		t.Errorf("problem %s", sum.Problems[1])
	}
	get := func(l twin.Layer, name string) *twin.Feature {
		t.Helper()
		f, err := s.Get(context.Background(), twin.NewID(l, name))
		if err != nil {
			t.Fatalf("%s/%s: %v", l, name, err)
		}
		return f
	}
	road := get(twin.Roads, "osm-w10")
	if road.Props.Get("name") != "嘉陵江滨江路" || road.Props.Get("class") != "primary" || road.Props.Get("oneway") != true {
		t.Errorf("road props %v", road.Props)
	}
	if ls := road.Geometry.(orb.LineString); ls[0] != (orb.Point{106.51, 29.50}) {
		t.Errorf("oneway=-1 not reversed: %v", ls)
	}
	if get(twin.Roads, "osm-w18").Props.Get("oneway") != true {
		t.Error("roundabout not one-way")
	}
	if get(twin.Roads, "osm-w11").Props.Get("oneway") != false {
		t.Error("bridge road one-way")
	}
	if b := get(twin.Bridges, "osm-w11"); b.Props.Get("name") != "千厮门大桥" || b.Props.Get("class") != "trunk" {
		t.Errorf("bridge props %v", b.Props)
	}
	tall := get(twin.Buildings, "osm-w12")
	if tall.Props.Get("height_m") != 27.0 || tall.Props.Get("levels") != 9.0 || tall.Props.Get("high_rise") != true {
		t.Errorf("building props %v", tall.Props)
	}
	if _, ok := tall.Geometry.(orb.Polygon); !ok {
		t.Errorf("building geometry %T", tall.Geometry)
	}
	low := get(twin.Buildings, "osm-w13")
	if low.Props.Get("height_m") != 12.0 || low.Props.Get("high_rise") != false || low.Props.Get("name") != "仓库" {
		t.Errorf("building props %v", low.Props)
	}
	if r := get(twin.Rivers, "osm-w14"); r.Props.Get("name") != "嘉陵江" {
		t.Errorf("river props %v", r.Props)
	}
	reg := get(twin.Regions, "500103")
	if reg.Props.Get("code") != "500103" || reg.Props.Get("level") != "district" || reg.Props.Get("admin_level") != "6" {
		t.Errorf("region props %v", reg.Props)
	}
	if p, ok := reg.Geometry.(orb.Polygon); !ok || len(p[0]) != 5 {
		t.Errorf("region geometry %v", reg.Geometry)
	}

	sum2 := mustImport(t, path, opts(s))
	if sum2.Imported != 0 || sum2.Unchanged != 8 {
		t.Errorf("re-import %+v", sum2)
	}
	// Layer filter: only buildings.
	o := opts(newMemStore())
	o.Layer = twin.Buildings
	if sum := mustImport(t, path, o); sum.Imported != 2 || sum.Read != 2 {
		t.Errorf("buildings only: %+v", sum)
	}
}

func TestAssembleInnerRing(t *testing.T) {
	outer := []orb.LineString{{{0, 0}, {10, 0}, {10, 10}}, {{0, 0}, {0, 10}, {10, 10}}}
	inner := []orb.LineString{{{4, 4}, {6, 4}, {6, 6}, {4, 4}}}
	g, err := assemble(outer, inner)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := g.(orb.Polygon)
	if !ok || len(p) != 2 || len(p[0]) != 5 {
		t.Fatalf("assembled %v", g)
	}
}
