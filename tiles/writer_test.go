package tiles

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/twin"
)

// TestWriterMatchesOrbEncoder builds tiles of the demo city (every layer,
// zooms 8 to 18, a block of tiles around the centre so features cross
// tile edges) with the direct writer and with the orb pipeline it
// replaced, and requires identical bytes: same features, order, ids,
// attributes and geometry. The memo table is shared across zooms, as in
// service, and a change in the middle must not leave stale memos.
func TestWriterMatchesOrbEncoder(t *testing.T) {
	tw := demoCityTwin(t)
	layers := []twin.Layer{twin.Regions, twin.Rivers, twin.Roads, twin.Bridges, twin.Buildings, twin.Devices,
		twin.Vehicles, twin.Workers, twin.Incidents, twin.Alerts}
	compare := func(t *testing.T, s *Server, small bool) {
		ctx := context.Background()
		total := 0
		defer func() {
			if total < 100000 {
				t.Errorf("tiles hold only %d bytes: the demo city is not under the centre", total)
			}
		}()
		for z := maptile.Zoom(8); z <= 18; z++ {
			c := maptile.At(benchCentre, z)
			for d := -1; d <= 1; d++ {
				if small && d != 0 {
					continue
				}
				req := Request{Kind: KindTile, Z: uint8(z), X: uint32(int(c.X) + d), Y: uint32(int(c.Y) - d), Layers: layers}
				got, _, err := s.build(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				want, _, err := refBuild(s, ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				total += len(got)
				if !bytes.Equal(got, want) {
					t.Errorf("%d/%d/%d: writer %d bytes, orb %d bytes: %s", req.Z, req.X, req.Y, len(got), len(want),
						firstDiff(t, got, want))
				}
			}
		}
	}
	s := New(tw, Options{})
	t.Run("memo", func(t *testing.T) { compare(t, s, false) })
	t.Run("nomemo", func(t *testing.T) { compare(t, New(tw, Options{MemoFeatures: -1}), true) })
	t.Run("afterChange", func(t *testing.T) {
		// Replace the buildings near the centre with taller, renamed ones.
		var near []*twin.Feature
		tw.Search(twin.Buildings, orb.Bound{Min: orb.Point{benchCentre[0] - 0.01, benchCentre[1] - 0.01},
			Max: orb.Point{benchCentre[0] + 0.01, benchCentre[1] + 0.01}}, func(f *twin.Feature) bool {
			near = append(near, f)
			return len(near) < 50
		})
		if len(near) == 0 {
			t.Fatal("no buildings near the centre")
		}
		for i, f := range near {
			g := f.Clone()
			g.Props.Set("name", fmt.Sprint("renamed ", i))
			g.Props.Set("height_m", 300.5)
			if _, err := tw.Put(g); err != nil {
				t.Fatal(err)
			}
		}
		s.Sync()
		for _, f := range near {
			set, _ := s.memo.set(f)
			for i := range set {
				if m := set[i].Load(); m != nil && m.f == f {
					t.Fatalf("memo of replaced %s kept after Sync", f.ID)
				}
			}
		}
		compare(t, s, true)
	})
}

// firstDiff describes the first differing layer of two tiles.
func firstDiff(t *testing.T, got, want []byte) string {
	g, err1 := mvt.Unmarshal(got)
	w, err2 := mvt.Unmarshal(want)
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("unmarshal: %v %v", err1, err2)
	}
	if len(g) != len(w) {
		return fmt.Sprintf("%d layers, want %d", len(g), len(w))
	}
	for i := range g {
		if len(g[i].Features) != len(w[i].Features) {
			return fmt.Sprintf("layer %s: %d features, want %d", g[i].Name, len(g[i].Features), len(w[i].Features))
		}
		for j := range g[i].Features {
			a, b := g[i].Features[j], w[i].Features[j]
			if fmt.Sprint(a.ID, a.Properties) != fmt.Sprint(b.ID, b.Properties) || !orb.Equal(a.Geometry, b.Geometry) {
				return fmt.Sprintf("layer %s feature %d: %v %v %v, want %v %v %v", g[i].Name, j, a.ID, a.Properties,
					a.Geometry, b.ID, b.Properties, b.Geometry)
			}
		}
	}
	return "same decoded content (encoding differs)"
}
