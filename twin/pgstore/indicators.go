package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
)

var _ twin.IndicatorStore = (*Store)(nil)

// metaIndicatorsPos is the meta key of the indicators consumer's position
// (8 bytes, big-endian), written with its rows.
const metaIndicatorsPos = "indicators_pos"

// PutIndicators writes rows (a stored row with a higher seq wins), object
// summaries and the position in one transaction.
func (s *Store) PutIndicators(ctx context.Context, rows []twin.IndicatorRow, objs map[string][]byte, pos uint64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, r := range rows {
			b.Queue(`INSERT INTO indicators (region, step, start, seq, data) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (region, step, start) DO UPDATE SET seq = excluded.seq, data = excluded.data
				WHERE indicators.seq <= excluded.seq`, r.Region, r.Step, r.Start.UTC(), int64(r.Seq), string(r.Data))
		}
		for id, v := range objs {
			if v == nil {
				b.Queue(`DELETE FROM indicator_objects WHERE id = $1`, id)
			} else {
				b.Queue(`INSERT INTO indicator_objects (id, summary) VALUES ($1, $2)
					ON CONFLICT (id) DO UPDATE SET summary = excluded.summary`, id, string(v))
			}
		}
		b.Queue(`INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			metaIndicatorsPos, binary.BigEndian.AppendUint64(nil, pos))
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("pgstore: put indicators (%d rows, %d objects): %w", len(rows), len(objs), classify(err))
	}
	return nil
}

// Indicators returns one region's rows of one step in [from, to).
func (s *Store) Indicators(ctx context.Context, region, step string, from, to time.Time) ([]twin.IndicatorRow, error) {
	rs, err := s.pool.Query(ctx, `SELECT start, seq, data::text FROM indicators
		WHERE region = $1 AND step = $2 AND start >= $3 AND start < $4 ORDER BY start`, region, step, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("pgstore: indicators of %s: %w", region, classify(err))
	}
	defer rs.Close()
	var out []twin.IndicatorRow
	for rs.Next() {
		var start time.Time
		var seq int64
		var data string
		if err := rs.Scan(&start, &seq, &data); err != nil {
			return nil, fmt.Errorf("pgstore: indicators of %s: %w", region, err)
		}
		out = append(out, twin.IndicatorRow{Region: region, Step: step, Start: start.UTC(), Seq: uint64(seq), Data: []byte(data)})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: indicators of %s: %w", region, classify(err))
	}
	return out, nil
}

// IndicatorState returns the stored position and object summaries.
func (s *Store) IndicatorState(ctx context.Context) (uint64, map[string][]byte, error) {
	var pos uint64
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, metaIndicatorsPos).Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, fmt.Errorf("pgstore: indicator position: %w", classify(err))
	}
	if len(v) == 8 {
		pos = binary.BigEndian.Uint64(v)
	}
	rs, err := s.pool.Query(ctx, `SELECT id, summary::text FROM indicator_objects`)
	if err != nil {
		return 0, nil, fmt.Errorf("pgstore: indicator objects: %w", classify(err))
	}
	defer rs.Close()
	objs := map[string][]byte{}
	for rs.Next() {
		var id, sum string
		if err := rs.Scan(&id, &sum); err != nil {
			return 0, nil, fmt.Errorf("pgstore: indicator objects: %w", err)
		}
		objs[id] = []byte(sum)
	}
	if err := rs.Err(); err != nil {
		return 0, nil, fmt.Errorf("pgstore: indicator objects: %w", classify(err))
	}
	return pos, objs, nil
}
