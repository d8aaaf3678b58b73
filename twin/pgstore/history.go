package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/paulmach/orb"
)

const stageHistory = `CREATE TEMP TABLE IF NOT EXISTS twin_stage_history (
	layer text, name text, ts timestamptz, lon float8, lat float8, speed_kmh float8,
	heading float8, "values" text
) ON COMMIT DELETE ROWS`

var historyCols = []string{"layer", "name", "ts", "lon", "lat", "speed_kmh", "heading", "values"}

// AppendHistory records samples; a sample already stored (same object and
// ts) is skipped, so a retried batch is stored once.
func (s *Store) AppendHistory(ctx context.Context, ss []twin.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	rows := make([][]any, len(ss))
	for i, sm := range ss {
		row := []any{string(sm.ID.Layer), sm.ID.Name, sm.Time, nil, nil, nil, nil, nil}
		if sm.HasPos {
			row[3], row[4] = sm.Pos[0], sm.Pos[1]
		}
		if sm.HasSpeed {
			row[5] = sm.SpeedKmh
		}
		if sm.HasHeading {
			row[6] = sm.Heading
		}
		if !sm.Values.IsZero() {
			// The JSON of a map[string]float64, as before readings were packed.
			b, err := sm.Values.MarshalJSON()
			if err != nil {
				return fmt.Errorf("pgstore: append history %s: %w: %w", sm.ID, twin.ErrBadData, err)
			}
			row[7] = string(b)
		}
		rows[i] = row
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, stageHistory); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"twin_stage_history"}, historyCols, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO telemetry (layer, name, ts, lon, lat, speed_kmh, heading, "values")
			SELECT layer, name, ts, lon, lat, speed_kmh, heading, "values"::jsonb FROM twin_stage_history
			ON CONFLICT DO NOTHING`)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: append %d samples: %w", len(ss), classify(err))
	}
	return nil
}

// History returns an object's samples with from <= ts < to, oldest first.
func (s *Store) History(ctx context.Context, id twin.ID, from, to time.Time, limit int) ([]twin.Sample, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT ts, lon, lat, speed_kmh, heading, "values" FROM telemetry
		WHERE layer = $1 AND name = $2
		  AND ($3::timestamptz IS NULL OR ts >= $3) AND ($4::timestamptz IS NULL OR ts < $4)
		ORDER BY ts LIMIT $5`, string(id.Layer), id.Name, tsOrNil(from), tsOrNil(to), lim)
	if err != nil {
		return nil, fmt.Errorf("pgstore: history %s: %w", id, classify(err))
	}
	defer rows.Close()
	var out []twin.Sample
	for rows.Next() {
		var (
			ts                       time.Time
			lon, lat, speed, heading pgtype.Float8
			values                   []byte
		)
		if err := rows.Scan(&ts, &lon, &lat, &speed, &heading, &values); err != nil {
			return nil, fmt.Errorf("pgstore: history %s: %w", id, err)
		}
		sm := twin.Sample{ID: id, Time: ts, HasPos: lon.Valid && lat.Valid, HasSpeed: speed.Valid,
			SpeedKmh: speed.Float64, HasHeading: heading.Valid, Heading: heading.Float64}
		if sm.HasPos {
			sm.Pos = orb.Point{lon.Float64, lat.Float64}
		}
		if values != nil {
			if err := json.Unmarshal(values, &sm.Values); err != nil {
				return nil, fmt.Errorf("pgstore: history %s: values: %w", id, err)
			}
		}
		out = append(out, sm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: history %s: %w", id, classify(err))
	}
	return out, nil
}
