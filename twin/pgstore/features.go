package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/paulmach/orb/encoding/ewkb"
	"github.com/paulmach/orb/encoding/wkb"
)

// The staging table lives per connection and is emptied at commit, so a
// pooled connection reuses it without catalog churn.
const stageFeatures = `CREATE TEMP TABLE IF NOT EXISTS twin_stage_features (
	layer text, name text, geom bytea, props text, version bigint, updated timestamptz,
	observed timestamptz, region text[], grid text, h3 bigint, h3_cells bigint[], source text
) ON COMMIT DELETE ROWS`

var stageCols = []string{"layer", "name", "geom", "props", "version", "updated", "observed",
	"region", "grid", "h3", "h3_cells", "source"}

// releaseSQL frees source ids that staged rows claim from other objects: a
// source id moves to the newest object claiming it (the unique index would
// otherwise fail the whole batch, and the writer would retry it forever).
// It runs as its own statement because the unique check is immediate.
const releaseSQL = `
UPDATE %[1]s t SET source = NULL
FROM twin_stage_features s
WHERE s.layer = $1 AND s.source IS NOT NULL AND t.source = s.source AND t.name <> s.name`

// upsertSQL moves one layer's staged rows into its table; a stored object
// with a higher version is kept.
const upsertSQL = `
INSERT INTO %[1]s AS t (name, geom, props, version, updated, observed, region, grid, h3, h3_cells, source)
SELECT name, ST_GeomFromEWKB(geom), props::jsonb, version, updated, observed, region, grid, h3, h3_cells, source
FROM twin_stage_features WHERE layer = $1
ON CONFLICT (name) DO UPDATE SET
	geom = excluded.geom, props = excluded.props, version = excluded.version,
	updated = excluded.updated, observed = excluded.observed, region = excluded.region,
	grid = excluded.grid, h3 = excluded.h3, h3_cells = excluded.h3_cells, source = excluded.source
WHERE excluded.version >= t.version`

// Upsert writes the features' latest state in one transaction. Several
// states of one object in the batch collapse to the highest version.
func (s *Store) Upsert(ctx context.Context, fs []*twin.Feature) error {
	if len(fs) == 0 {
		return nil
	}
	latest := make(map[twin.ID]*twin.Feature, len(fs))
	sources := map[string]twin.ID{}
	layers := map[twin.Layer]bool{}
	for _, f := range fs {
		if _, err := table(f.ID.Layer); err != nil {
			return fmt.Errorf("pgstore: upsert %s: %w: %w", f.ID, twin.ErrBadData, err)
		}
		if cur := latest[f.ID]; cur == nil || f.Version >= cur.Version {
			latest[f.ID] = f
		}
		layers[f.ID.Layer] = true
	}
	rows := make([][]any, 0, len(latest))
	for _, f := range latest {
		row, err := featureRow(f, sources)
		if err != nil {
			return fmt.Errorf("pgstore: upsert %s: %w: %w", f.ID, twin.ErrBadData, err)
		}
		rows = append(rows, row)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, stageFeatures); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"twin_stage_features"}, stageCols, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		for l := range layers {
			if err := upsertLayer(ctx, tx, l); err != nil {
				return fmt.Errorf("%s: %w", l, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: upsert %d features: %w", len(rows), classify(err))
	}
	return nil
}

// upsertLayer runs upsertSQL under a savepoint; only when a source id is
// already held by another object (rare: an import renamed objects) does it
// roll back, release the source ids and try again, so the common path pays
// no extra join.
func upsertLayer(ctx context.Context, tx pgx.Tx, l twin.Layer) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = sp.Exec(ctx, fmt.Sprintf(upsertSQL, l), string(l))
	if err == nil {
		return sp.Commit(ctx)
	}
	_ = sp.Rollback(ctx)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(releaseSQL, l), string(l)); err != nil {
		return fmt.Errorf("release sources: %w", err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(upsertSQL, l), string(l))
	return err
}

// featureRow renders a feature as a staging row. sources tracks source ids
// already used in the batch: a second object with the same source id keeps
// the id only if it comes later (map order), matching the table's rule that
// one source maps to one object.
func featureRow(f *twin.Feature, sources map[string]twin.ID) ([]any, error) {
	var geom []byte
	if f.Geometry != nil {
		g, err := ewkb.Marshal(f.Geometry, 4326)
		if err != nil {
			return nil, fmt.Errorf("encode geometry: %w", err)
		}
		geom = g
	}
	props, err := mustJSON(f.Props)
	if err != nil {
		return nil, fmt.Errorf("encode props: %w", err)
	}
	var h3 any
	var cells []int64
	if fc := f.Cells(); len(fc) > 0 {
		h3 = int64(fc[0])
		cells = make([]int64, len(fc))
		for i, c := range fc {
			cells[i] = int64(c)
		}
	}
	region := f.Region()
	if region == nil {
		region = []string{}
	}
	var src, grid any
	if s := f.Source(); s != "" {
		key := string(f.ID.Layer) + "\x00" + s
		if other, dup := sources[key]; !dup || other == f.ID {
			sources[key] = f.ID
			src = s
		}
	}
	if f.Grid() != "" {
		grid = f.Grid()
	}
	return []any{string(f.ID.Layer), f.ID.Name, geom, props, int64(f.Version), tsOrNil(f.Updated.Time()),
		tsOrNil(f.Observed.Time()), region, grid, h3, cells, src}, nil
}

// Delete removes objects; absent ones are ignored.
func (s *Store) Delete(ctx context.Context, ids []twin.ID) error {
	byLayer := map[twin.Layer][]string{}
	for _, id := range ids {
		if _, err := table(id.Layer); err != nil {
			return fmt.Errorf("pgstore: delete %s: %w: %w", id, twin.ErrBadData, err)
		}
		byLayer[id.Layer] = append(byLayer[id.Layer], id.Name)
	}
	if len(byLayer) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for l, names := range byLayer {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE name = ANY($1)`, l), names); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: delete %d objects: %w", len(ids), classify(err))
	}
	return nil
}

// selectCols are what scanFeature reads. The region path comes as its
// array's text (with the grid, the key of a load's place cache: no []string
// and strings per row, dropped for the shared place), and the cells as the
// one cell of a point or the array of a cover, so a point's cell scans into
// an int64 instead of a new []int64 per row.
const selectCols = `name, ST_AsBinary(geom), props, version, updated, observed, region::text, grid,
	CASE WHEN cardinality(h3_cells) = 1 THEN h3_cells[1] END,
	CASE WHEN cardinality(h3_cells) > 1 THEN h3_cells END, source`

// Get reads one object; twin.ErrNotFound when absent.
func (s *Store) Get(ctx context.Context, id twin.ID) (*twin.Feature, error) {
	tbl, err := table(id.Layer)
	if err != nil {
		return nil, fmt.Errorf("pgstore: get %s: %w", id, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+selectCols+` FROM `+tbl+` WHERE name = $1`, id.Name)
	if err != nil {
		return nil, fmt.Errorf("pgstore: get %s: %w", id, classify(err))
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("pgstore: get %s: %w", id, classify(err))
		}
		return nil, fmt.Errorf("pgstore: get %s: %w", id, twin.ErrNotFound)
	}
	f, err := scanFeature(id.Layer, rows, nil)
	if err != nil {
		return nil, fmt.Errorf("pgstore: get %s: %w", id, err)
	}
	return f, nil
}

// Load streams every object, layer by layer; rows are decoded as they arrive
// from the server, so memory stays flat however large the city.
func (s *Store) Load(ctx context.Context, fn func(*twin.Feature) error) error {
	places := twin.NewPlaceCache() // objects in one place share it
	for _, l := range twin.StoredLayers {
		if err := s.loadLayer(ctx, l, places, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) loadLayer(ctx context.Context, l twin.Layer, places *twin.PlaceCache, fn func(*twin.Feature) error) error {
	rows, err := s.pool.Query(ctx, `SELECT `+selectCols+` FROM `+string(l))
	if err != nil {
		return fmt.Errorf("pgstore: load %s: %w", l, classify(err))
	}
	defer rows.Close()
	var bad []twin.Quarantined
	for rows.Next() {
		f, err := scanFeature(l, rows, places)
		if err != nil {
			return fmt.Errorf("pgstore: load %s: %w", l, err)
		}
		// PostGIS takes a NaN or a lon of 12,000,000 in an EPSG:4326
		// column (metres loaded without reprojecting are the usual way in):
		// the twin starts without that object rather than put it into the
		// spatial index, and says so. The row stays for its owner to fix.
		if err := twin.ValidCoords(f.Geometry); err != nil {
			bad = append(bad, twin.Quarantined{Kind: twin.QuarantineLoad, ID: f.ID, Version: f.Version,
				Err: "geometry is not a place on Earth: " + err.Error()})
			continue
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgstore: load %s: %w", l, classify(err))
	}
	rows.Close()
	if len(bad) == 0 {
		return nil
	}
	for _, q := range bad {
		s.log.Error("object in PostGIS with coordinates outside lon -180..180 / lat -90..90 (or not numbers): the twin starts without it; fix the row (is it in EPSG:4326?)",
			"id", q.ID.String(), "err", q.Err)
	}
	// The row stays, so every load (each server's start, the writer's
	// prune) finds it again: record it once, not once per load.
	fresh := bad[:0]
	for _, q := range bad {
		var seen bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM quarantine
			WHERE kind = $1 AND layer = $2 AND name_raw = $3 AND version = $4 AND error = $5)`,
			string(q.Kind), string(q.ID.Layer), []byte(q.ID.Name), int64(q.Version), twin.PrintableName(q.Err)).Scan(&seen)
		if err != nil {
			return fmt.Errorf("pgstore: load %s: quarantine: %w", l, classify(err))
		}
		if !seen {
			fresh = append(fresh, q)
		}
	}
	return s.Quarantine(ctx, fresh)
}

// scanFeature decodes one row (selectCols); places (nil for none) shares
// places. The geometry, the props, the region and the grid are read in the
// driver's memory (pgtype.DriverBytes) and only what the feature keeps is
// allocated: the name, the geometry, the packed props (twin.PackJSON, as
// the embedded store's load: no map, boxed numbers and strings per object)
// and the cells of a cover. Through maps and []string each row left ~0.5 KB
// of garbage between the objects kept (issue 16 goal 4).
func scanFeature(l twin.Layer, rows pgx.Rows, places *twin.PlaceCache) (*twin.Feature, error) {
	var (
		name                      string
		geom, props, region, grid pgtype.DriverBytes
		version                   int64
		updated, observed         pgtype.Timestamptz
		cell                      pgtype.Int8
		cells                     []int64
		source                    pgtype.Text
	)
	if err := rows.Scan(&name, &geom, &props, &version, &updated, &observed, &region, &grid, &cell, &cells, &source); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	f := &twin.Feature{ID: twin.NewID(l, name), Version: uint64(version)}
	f.SetSource(source.String)
	place, err := regionPlace(places, rows.Conn().TypeMap(), grid, region)
	if err != nil {
		return nil, fmt.Errorf("%s: decode region: %w", f.ID, err)
	}
	f.Place = place
	if updated.Valid {
		f.Updated = twin.StampOf(updated.Time)
	}
	if observed.Valid {
		f.Observed = twin.StampOf(observed.Time)
	}
	if geom != nil {
		g, err := wkb.Unmarshal(geom)
		if err != nil {
			return nil, fmt.Errorf("%s: decode geometry: %w", f.ID, err)
		}
		f.Geometry = g
	}
	p, err := twin.PackJSON(props)
	if err != nil {
		return nil, fmt.Errorf("%s: decode props: %w", f.ID, err)
	}
	f.Props = p
	switch {
	case cell.Valid:
		f.SetCell(uint64(cell.Int64))
	case len(cells) > 0:
		cs := make([]uint64, len(cells))
		for i, c := range cells {
			cs[i] = uint64(c)
		}
		f.SetCells(cs)
	}
	return f, nil
}

// regionPlace returns the place of a row's grid and region (a text[] in
// PostgreSQL's text form; nil for NULL) from places, decoding the array
// with tm on a miss.
func regionPlace(places *twin.PlaceCache, tm *pgtype.Map, grid, region []byte) (*twin.Place, error) {
	if len(grid) == 0 && (len(region) == 0 || string(region) == "{}") {
		return nil, nil
	}
	return places.Get(grid, region, func(region []byte) ([]string, error) {
		if region == nil {
			return nil, nil
		}
		var codes []string
		err := tm.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, region, &codes)
		return codes, err
	})
}
