package tiles

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/internal/testseed"
	"github.com/citytwin/citytwin/twin"
)

// TestDemoCityTiles decodes a seeded sample of demo city tiles of every
// layer at z8-z18 (random tiles over the city and tiles on region and grid
// boundaries, where clipping at the tile buffer bites) with
// @mapbox/vector-tile (Node), independently of this package's code.
//
// ValidGeometry checks MVT 2.1 geometry validity (§4.3.4: lines of
// two or more distinct points, polygons made of simple rings, exterior
// rings wound positive and followed by their holes, no ring crossing or
// touching another along an edge): every decoded geometry, in tile units,
// is judged by PostGIS's ST_IsValid (GEOS).
//
// FieldsAdvertised checks that TileJSON's vector_layers[].fields list
// every attribute key seen in the tiles, with the type it has.
func TestDemoCityTiles(t *testing.T) {
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	seed := testseed.Seed(t, "TWIN_TILES_SEED")
	rng := rand.New(rand.NewPCG(seed, 1))

	city, err := demo.Generate(demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tw := twin.New(twin.Options{FeedSize: 1 << 10})
	tw.Load(city.All())
	s := New(tw, Options{})

	// Boundary vertices of polygon layers, and the city's extent.
	var edges []orb.Point
	var ext orb.Bound
	first := true
	for _, l := range []twin.Layer{twin.Regions, twin.Grids, twin.Buildings} {
		tw.Search(l, world, func(f *twin.Feature) bool {
			if first {
				ext, first = f.Geometry.Bound(), false
			} else {
				ext = ext.Union(f.Geometry.Bound())
			}
			if l != twin.Buildings || rng.IntN(50) == 0 {
				var sh shape
				sh.flatten(f.Geometry)
				edges = append(edges, sh.pts...)
			}
			return true
		})
	}
	if len(edges) == 0 {
		t.Fatal("the demo city has no polygons")
	}
	// The demo starts with no incidents, alerts, tasks or directives: add
	// some, points and areas, so every layer is checked.
	for i := 0; i < 400; i++ {
		p := edges[rng.IntN(len(edges))]
		var g orb.Geometry = p
		if i%5 == 0 {
			d := 0.0005 + rng.Float64()*0.01
			g = orb.Polygon{{{p[0] - d, p[1] - d}, {p[0] + d, p[1] - d}, {p[0], p[1] + d}, {p[0] - d, p[1] - d}}}
		}
		l := twin.Incidents
		props := map[string]any{"type": "pothole", "state": "open", "reports": 1}
		switch i % 4 {
		case 1:
			l = twin.Alerts
			props = map[string]any{"rule": "r", "severity": "red", "state": "open", "tier": "city", "subject": "x"}
		case 2:
			l = twin.Tasks
			props = map[string]any{"kind": "rectification", "state": "issued", "tier": "street", "overdue": i%3 == 0,
				"subject": "buildings/x", "assignee": "500105001", "title": "t", "due": "2026-12-01T10:00:00Z"}
		case 3:
			l = twin.Directives
			props = map[string]any{"title": "t", "issuer": "500000", "due": "2026-12-01T10:00:00Z", "total": 3, "acked": 1,
				"reported": 0, "overdue": 1}
		}
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(l, fmt.Sprint("v", i)), Geometry: g, Props: twin.NewProps(props)}); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	var files []string
	var names []string
	for z := maptile.Zoom(8); z <= 18; z++ {
		seen := map[maptile.Tile]bool{}
		for i := 0; i < 24; i++ {
			var p orb.Point
			if i%3 == 0 {
				p = orb.Point{ext.Min[0] + rng.Float64()*(ext.Max[0]-ext.Min[0]),
					ext.Min[1] + rng.Float64()*(ext.Max[1]-ext.Min[1])}
			} else {
				p = edges[rng.IntN(len(edges))]
			}
			tile := maptile.At(p, z)
			if seen[tile] {
				continue
			}
			seen[tile] = true
			req := Request{Kind: KindTile, Z: uint8(z), X: tile.X, Y: tile.Y, Layers: twin.Layers}
			b, _, err := s.build(context.Background(), req)
			if err != nil {
				t.Fatalf("%d/%d/%d: %v", z, tile.X, tile.Y, err)
			}
			f := filepath.Join(dir, fmt.Sprintf("%d-%d-%d.mvt", z, tile.X, tile.Y))
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			names = append(names, fmt.Sprintf("%d/%d/%d", z, tile.X, tile.Y))
		}
	}
	out := runNode(t, "decode.js", files...)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(files) {
		t.Fatalf("decode.js printed %d tiles, want %d", len(lines), len(files))
	}

	tiles := make([]decoded, len(lines))
	for i, line := range lines {
		if err := json.Unmarshal([]byte(line), &tiles[i]); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}
	t.Run("ValidGeometry", func(t *testing.T) { checkValidGeometry(t, tiles, names) })
	t.Run("FieldsAdvertised", func(t *testing.T) {
		layers := make([]string, len(twin.Layers))
		for i, l := range twin.Layers {
			layers[i] = string(l)
		}
		w := get(t, s.Handler(), "/tiles/"+strings.Join(layers, ",")+".json", nil)
		var tj struct {
			VectorLayers []struct {
				ID     string            `json:"id"`
				Fields map[string]string `json:"fields"`
			} `json:"vector_layers"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &tj); err != nil || len(tj.VectorLayers) != len(layers) {
			t.Fatalf("tilejson %d: %v %s", w.Code, err, w.Body)
		}
		fields := map[string]map[string]string{}
		for _, vl := range tj.VectorLayers {
			fields[vl.ID] = vl.Fields
		}
		missing := map[string]bool{}
		for i, d := range tiles {
			for _, l := range d.Layers {
				for _, f := range l.Features {
					for k, v := range f.Properties {
						typ := map[bool]string{true: "Boolean"}[v == true || v == false]
						switch v.(type) {
						case string:
							typ = "String"
						case float64:
							typ = "Number"
						}
						adv, ok := fields[l.Name][k]
						if key := l.Name + "." + k; (!ok || !strings.Contains(adv, typ)) && !missing[key] {
							missing[key] = true
							t.Errorf("%s: %s %s = %v (%s) is advertised as %q", names[i], l.Name, k, v, typ, adv)
						}
					}
				}
			}
		}
		for _, k := range []string{"regions.name_zh", "alerts.severity", "incidents.reports"} {
			l, f, _ := strings.Cut(k, ".")
			if _, ok := fields[l][f]; !ok {
				t.Errorf("%s is not advertised: %v", k, fields[l])
			}
		}
	})
}

// checkValidGeometry judges every decoded geometry with PostGIS.
func checkValidGeometry(t *testing.T, tiles []decoded, names []string) {
	type geom struct {
		where string
		wkt   string
	}
	var geoms []geom
	perLayer := map[string]int{}
	for i, d := range tiles {
		for _, l := range d.Layers {
			if l.Version != 2 || l.Extent != Extent {
				t.Errorf("%s %s: version %d extent %d", names[i], l.Name, l.Version, l.Extent)
			}
			for _, f := range l.Features {
				where := fmt.Sprintf("%s %s %v", names[i], l.Name, f.Properties["id"])
				wkt, err := mvtWKT(f)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				perLayer[l.Name]++
				geoms = append(geoms, geom{where, wkt})
			}
		}
	}
	t.Logf("%d tiles, features per layer: %v", len(tiles), perLayer)
	for _, l := range twin.Layers {
		if perLayer[string(l)] == 0 {
			t.Errorf("no %s features in the sample: it does not test that layer", l)
		}
	}

	db, err := sql.Open("pgx", pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wkts := make([]string, len(geoms))
	for i, g := range geoms {
		wkts[i] = g.wkt
	}
	rows, err := db.Query(`SELECT i, ST_IsValidReason(g) FROM (
		SELECT i, ST_GeomFromText(w) AS g FROM unnest($1::text[]) WITH ORDINALITY AS t(w, i)) s
		WHERE NOT ST_IsValid(g) ORDER BY i`, wkts)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	bad := 0
	for rows.Next() {
		var i int
		var reason string
		if err := rows.Scan(&i, &reason); err != nil {
			t.Fatal(err)
		}
		bad++
		if bad <= 20 {
			g := geoms[i-1]
			w := g.wkt
			if len(w) > 400 {
				w = w[:400] + "..."
			}
			t.Errorf("%s: invalid: %s\n%s", g.where, reason, w)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d of %d geometries invalid", bad, len(geoms))
	}
}

// mvtWKT turns a decoded feature (loadGeometry's parts in tile units) into
// WKT by the MVT 2.1 rules: points are a MultiPoint, lines a
// MultiLineString, and polygon rings are classified by the sign of their
// surveyor's-formula area (positive: an exterior ring starting a polygon;
// negative: a hole of the current one).
func mvtWKT(f decodedFeature) (string, error) {
	if len(f.Geometry) == 0 {
		return "", fmt.Errorf("%s with no geometry", f.Type)
	}
	coords := func(part [][2]float64) string {
		var b strings.Builder
		b.WriteByte('(')
		for i, p := range part {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%g %g", p[0], p[1])
		}
		b.WriteByte(')')
		return b.String()
	}
	var parts []string
	switch f.Type {
	case "Point":
		for _, part := range f.Geometry {
			for _, p := range part {
				parts = append(parts, fmt.Sprintf("(%g %g)", p[0], p[1]))
			}
		}
		return "MULTIPOINT(" + strings.Join(parts, ",") + ")", nil
	case "LineString":
		for _, part := range f.Geometry {
			parts = append(parts, coords(part))
		}
		return "MULTILINESTRING(" + strings.Join(parts, ",") + ")", nil
	case "Polygon":
		var polys [][]string
		for i, ring := range f.Geometry {
			if len(ring) < 4 || ring[0] != ring[len(ring)-1] {
				return "", fmt.Errorf("ring %d: %d points, not closed", i, len(ring))
			}
			var a float64
			for j := 0; j+1 < len(ring); j++ {
				a += ring[j][0]*ring[j+1][1] - ring[j+1][0]*ring[j][1]
			}
			switch {
			case a > 0:
				polys = append(polys, []string{coords(ring)})
			case a < 0 && len(polys) > 0:
				polys[len(polys)-1] = append(polys[len(polys)-1], coords(ring))
			case a < 0:
				return "", fmt.Errorf("ring %d: a hole before any exterior ring", i)
			default:
				return "", fmt.Errorf("ring %d: zero area", i)
			}
		}
		for _, p := range polys {
			parts = append(parts, "("+strings.Join(p, ",")+")")
		}
		return "MULTIPOLYGON(" + strings.Join(parts, ",") + ")", nil
	}
	return "", fmt.Errorf("geometry type %q", f.Type)
}
