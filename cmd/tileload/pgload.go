package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/paulmach/orb/encoding/wkt"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/tiles"
	"github.com/citytwin/citytwin/twin"
)

// pgColumn is one attribute column of a pg_tileserv table: the prop it
// holds and its SQL type, chosen so ST_AsMVT writes the value kind
// CityTwin's tiles carry (float8: double, int8: int, bool, text: string).
type pgColumn struct{ name, typ string }

// pgLayers are the tables LoadPostGIS writes, with the attributes a
// CityTwin tile of the layer carries under ?attrs= (ATTRS in
// scripts/bench-tiles.sh).
var pgLayers = []struct {
	layer twin.Layer
	cols  []pgColumn
}{
	{twin.Buildings, []pgColumn{{"name", "text"}, {"height_m", "float8"}, {"levels", "int8"}, {"high_rise", "bool"},
		{"risk_level", "int8"}, {"risk_color", "text"}}},
	{twin.Roads, []pgColumn{{"name", "text"}, {"class", "text"}, {"oneway", "bool"}}},
	{twin.Bridges, []pgColumn{{"name", "text"}}},
}

// LoadPostGIS writes the demo city (the one `twin serve --demo --scale
// scale --seed seed` generates) into PostGIS tables as pg_tileserv serves
// them at its best: one table per layer with an integer primary key (the
// MVT feature id, tiles.FeatureID, so ids match CityTwin's), the
// attribute columns of pgLayers and the geometry already in EPSG:3857
// under a GiST index, so no tile query transforms a row. Existing tables
// of those names are replaced.
func LoadPostGIS(ctx context.Context, dsn string, scale int, seed int64) error {
	city, err := demo.Generate(demo.Options{Seed: seed, Scale: scale, NoGrids: true})
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	tw := twin.New(twin.Options{})
	tw.Load(city.All())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS postgis`); err != nil {
		return fmt.Errorf("postgis: %w", err)
	}
	esc := strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)
	for _, pl := range pgLayers {
		var defs, names []string
		for _, c := range pl.cols {
			defs = append(defs, fmt.Sprintf("%q %s", c.name, c.typ))
			names = append(names, fmt.Sprintf("%q", c.name))
		}
		var sb strings.Builder
		n := 0
		tw.Range(pl.layer, func(f *twin.Feature) bool {
			if f.Geometry == nil {
				return true
			}
			fmt.Fprintf(&sb, "%d", tiles.FeatureID(f.ID))
			for _, c := range pl.cols {
				v, ok := f.Props.Lookup(c.name)
				sb.WriteByte('\t')
				if !ok || v == nil {
					sb.WriteString(`\N`)
					continue
				}
				sb.WriteString(esc.Replace(fmt.Sprint(v)))
			}
			fmt.Fprintf(&sb, "\tSRID=4326;%s\n", wkt.MarshalString(f.Geometry))
			n++
			return true
		})
		t := string(pl.layer)
		for _, q := range []string{
			fmt.Sprintf(`DROP TABLE IF EXISTS %q, %q`, t, t+"_in"),
			fmt.Sprintf(`CREATE TABLE %q (fid bigint PRIMARY KEY, %s, geom geometry(Geometry, 3857))`, t, strings.Join(defs, ", ")),
			fmt.Sprintf(`CREATE TEMP TABLE %q (fid bigint, %s, geom geometry)`, t+"_in", strings.Join(defs, ", ")),
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(sb.String()), fmt.Sprintf("COPY %q FROM STDIN", t+"_in")); err != nil {
			return fmt.Errorf("copy %s: %w", t, err)
		}
		cols := strings.Join(names, ", ")
		for _, q := range []string{
			fmt.Sprintf(`INSERT INTO %q SELECT fid, %s, ST_Transform(geom, 3857) FROM %q`, t, cols, t+"_in"),
			fmt.Sprintf(`CREATE INDEX ON %q USING gist (geom)`, t),
			fmt.Sprintf(`ANALYZE %q`, t),
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		fmt.Printf("%s: %d rows\n", t, n)
	}
	return nil
}
