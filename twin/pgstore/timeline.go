package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
)

var _ twin.Timeline = (*Store)(nil)

// ckptMarker is the cell of the empty row that marks a checkpoint (one
// with no object is still a checkpoint).
const ckptMarker = math.MaxUint32 - 1

// AppendChanges implements twin.Timeline: the chunks and the deletion of
// the checkpoints they make stale, in one transaction.
func (s *Store) AppendChanges(ctx context.Context, chunks []twin.TimelineChunk) error {
	if len(chunks) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		earliest := int64(math.MaxInt64)
		for _, c := range chunks {
			b.Queue(`INSERT INTO timeline_changes (bucket, key, min_at, max_at, data) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (bucket, key) DO UPDATE SET min_at = excluded.min_at, max_at = excluded.max_at, data = excluded.data`,
				c.Bucket, int64(c.Key), c.Min, c.Max, c.Data)
			earliest = min(earliest, c.Min)
		}
		b.Queue(`DELETE FROM timeline_checkpoints WHERE at >= $1`, earliest)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("pgstore: append timeline: %w", classify(err))
	}
	return nil
}

// ScanChanges implements twin.Timeline.
func (s *Store) ScanChanges(ctx context.Context, fromBucket, toBucket int64, fn func(twin.TimelineChunk) error) error {
	rows, err := s.pool.Query(ctx, `SELECT bucket, key, min_at, max_at, data FROM timeline_changes
		WHERE bucket BETWEEN $1 AND $2 ORDER BY bucket, key`, fromBucket, toBucket)
	if err != nil {
		return fmt.Errorf("pgstore: scan timeline: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var c twin.TimelineChunk
		var key int64
		if err := rows.Scan(&c.Bucket, &key, &c.Min, &c.Max, &c.Data); err != nil {
			return fmt.Errorf("pgstore: scan timeline: %w", classify(err))
		}
		c.Key = uint64(key)
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgstore: scan timeline: %w", classify(err))
	}
	return nil
}

// PutCheckpoint implements twin.Timeline.
func (s *Store) PutCheckpoint(ctx context.Context, at int64, cells map[uint32][]byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM timeline_checkpoints WHERE at = $1`, at); err != nil {
			return err
		}
		rows := make([][]any, 0, len(cells)+1)
		for c, d := range cells {
			rows = append(rows, []any{at, int64(c), d})
		}
		rows = append(rows, []any{at, int64(ckptMarker), []byte{}})
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"timeline_checkpoints"}, []string{"at", "cell", "data"}, pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: put checkpoint: %w", classify(err))
	}
	return nil
}

// LastCheckpoint implements twin.Timeline.
func (s *Store) LastCheckpoint(ctx context.Context, at int64) (int64, bool, error) {
	var t int64
	err := s.pool.QueryRow(ctx, `SELECT at FROM timeline_checkpoints WHERE at <= $1 ORDER BY at DESC LIMIT 1`, at).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pgstore: last checkpoint: %w", classify(err))
	}
	return t, true, nil
}

// ScanCheckpoint implements twin.Timeline.
func (s *Store) ScanCheckpoint(ctx context.Context, at int64, cells []uint32, fn func(uint32, []byte) error) error {
	var rows pgx.Rows
	var err error
	if cells == nil {
		rows, err = s.pool.Query(ctx, `SELECT cell, data FROM timeline_checkpoints WHERE at = $1 AND cell <> $2`, at, int64(ckptMarker))
	} else {
		cs := make([]int64, len(cells))
		for i, c := range cells {
			cs[i] = int64(c)
		}
		rows, err = s.pool.Query(ctx, `SELECT cell, data FROM timeline_checkpoints WHERE at = $1 AND cell = ANY($2) AND cell <> $3`, at, cs, int64(ckptMarker))
	}
	if err != nil {
		return fmt.Errorf("pgstore: scan checkpoint: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var c int64
		var d []byte
		if err := rows.Scan(&c, &d); err != nil {
			return fmt.Errorf("pgstore: scan checkpoint: %w", classify(err))
		}
		if err := fn(uint32(c), d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgstore: scan checkpoint: %w", classify(err))
	}
	return nil
}

// PutVersions implements twin.Timeline.
func (s *Store) PutVersions(ctx context.Context, vs []twin.TimelineVersion) error {
	if len(vs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, v := range vs {
		b.Queue(`INSERT INTO timeline_versions (layer, name, at, seq, data) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING`, string(v.ID.Layer), v.ID.Name, v.At, int64(v.Seq), v.Data)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: put versions: %w", classify(err))
	}
	return nil
}

// VersionAt implements twin.Timeline.
func (s *Store) VersionAt(ctx context.Context, id twin.ID, at int64) (twin.TimelineVersion, bool, error) {
	v := twin.TimelineVersion{ID: id}
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT at, seq, data FROM timeline_versions WHERE layer = $1 AND name = $2 AND at <= $3
		ORDER BY at DESC, seq DESC LIMIT 1`, string(id.Layer), id.Name, at).Scan(&v.At, &seq, &v.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("pgstore: version at: %w", classify(err))
	}
	v.Seq = uint64(seq)
	return v, true, nil
}

// PruneTimeline implements twin.Timeline.
func (s *Store) PruneTimeline(ctx context.Context, changesBefore, checkpointsBefore, versionsBefore int64) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM timeline_changes WHERE bucket < $1`, changesBefore)
	b.Queue(`DELETE FROM timeline_checkpoints WHERE at < $1`, checkpointsBefore)
	// Per object, every version before the cut but the newest one.
	b.Queue(`DELETE FROM timeline_versions v WHERE v.at < $1 AND EXISTS (
		SELECT 1 FROM timeline_versions w WHERE w.layer = v.layer AND w.name = v.name
		AND w.at < $1 AND (w.at, w.seq) > (v.at, v.seq))`, versionsBefore)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: prune timeline: %w", classify(err))
	}
	return nil
}
