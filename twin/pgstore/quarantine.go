package pgstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

var _ twin.Quarantiner = (*Store)(nil)

// Quarantine stores records the writer could not write (migration 00004).
// Every text column gets a printable copy (no NUL, valid UTF-8): the name's
// raw bytes go to name_raw, and Data is JSON (encoding/json escapes NUL as
// \u0000, which a text column holds and jsonb would refuse).
func (s *Store) Quarantine(ctx context.Context, qs []twin.Quarantined) error {
	if len(qs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, q := range qs {
		at := q.At
		if at.IsZero() {
			at = time.Now()
		}
		var version any
		if q.Version > 0 {
			version = int64(q.Version)
		}
		b.Queue(`INSERT INTO quarantine (at, kind, layer, name, name_raw, version, error, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			at, string(q.Kind), twin.PrintableName(string(q.ID.Layer)), twin.PrintableName(q.ID.Name),
			[]byte(q.ID.Name), version, twin.PrintableName(q.Err), printable(q.Data))
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: quarantine %d records: %w", len(qs), classify(err))
	}
	return nil
}

// printable makes JSON text safe for a text column (a raw NUL or invalid
// UTF-8 would only be there if Data is not the JSON encoding/json writes).
func printable(b []byte) string {
	return strings.ToValidUTF8(strings.ReplaceAll(string(b), "\x00", `\u0000`), "\uFFFD")
}

// Quarantined lists quarantine records, oldest first.
func (s *Store) Quarantined(ctx context.Context, limit int) ([]twin.Quarantined, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT at, kind, layer, name_raw, version, error, data
		FROM quarantine ORDER BY id LIMIT $1`, lim)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list quarantine: %w", classify(err))
	}
	defer rows.Close()
	var out []twin.Quarantined
	for rows.Next() {
		var (
			q            twin.Quarantined
			kind, layer  string
			name         []byte
			version      pgtype.Int8
			data, errStr string
		)
		if err := rows.Scan(&q.At, &kind, &layer, &name, &version, &errStr, &data); err != nil {
			return nil, fmt.Errorf("pgstore: list quarantine: %w", err)
		}
		q.Kind, q.ID, q.Err, q.Data = twin.QuarantineKind(kind), twin.NewID(twin.Layer(layer), string(name)), errStr, []byte(data)
		if version.Valid {
			q.Version = uint64(version.Int64)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: list quarantine: %w", classify(err))
	}
	return out, nil
}
