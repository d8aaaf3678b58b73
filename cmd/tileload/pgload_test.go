package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/tiles"
	"github.com/citytwin/citytwin/twin"
)

// TestLoadPostGIS loads the demo city into a real PostGIS and checks
// that each table holds the layer's features under their MVT feature ids
// with the props as typed columns, and that ST_AsMVT writes a tile of it.
func TestLoadPostGIS(t *testing.T) {
	if testing.Short() {
		t.Skip("generates the demo city")
	}
	ctx := context.Background()
	dsn := pgtest.New(t)
	if err := LoadPostGIS(ctx, dsn, 1, 2016); err != nil {
		t.Fatal(err)
	}
	city, err := demo.Generate(demo.Options{Seed: 2016, Scale: 1, NoGrids: true})
	if err != nil {
		t.Fatal(err)
	}
	tw := twin.New(twin.Options{})
	tw.Load(city.All())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, l := range []twin.Layer{twin.Buildings, twin.Roads, twin.Bridges} {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+string(l)+` WHERE ST_SRID(geom) = 3857`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := tw.Count(l); n != want || n == 0 {
			t.Errorf("%s: %d rows, want %d", l, n, want)
		}
	}
	var f *twin.Feature
	tw.Range(twin.Buildings, func(x *twin.Feature) bool { f = x; return false })
	var name string
	var height float64
	if err := conn.QueryRow(ctx, `SELECT name, height_m FROM buildings WHERE fid = $1`, int64(tiles.FeatureID(f.ID))).Scan(&name, &height); err != nil {
		t.Fatal(err)
	}
	if name != f.Prop("name") || height != f.Props.Get("height_m") {
		t.Errorf("%s: row %q %v, props %v", f.ID, name, height, f.Props.All())
	}
	var mvt []byte
	if err := conn.QueryRow(ctx, `SELECT ST_AsMVT(q, 'buildings', 4096, 'geom', 'fid') FROM (SELECT fid, name,
		ST_AsMVTGeom(geom, ST_TileEnvelope(13, 6521, 3391), 4096, 64) AS geom FROM buildings
		WHERE geom && ST_TileEnvelope(13, 6521, 3391)) q`).Scan(&mvt); err != nil {
		t.Fatal(err)
	}
	if len(mvt) < 1000 {
		t.Errorf("z13 centre tile of %d bytes", len(mvt))
	}
}
