// Package pgstore is the PostGIS twin.Store: one table per layer (see
// migrations/), bulk writes through COPY into a temporary table followed by
// one INSERT ... ON CONFLICT per layer, and streaming reads.
//
// Geometry travels as EWKB with SRID 4326 written by orb/encoding/ewkb and
// read back as WKB (ST_AsBinary) by orb/encoding/wkb: the twin's features are
// orb geometries already, so this needs no conversion layer and no
// intermediate allocation per vertex, unlike going through go-geom.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/citytwin/citytwin/migrations"
	"github.com/citytwin/citytwin/twin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Options configure a Store. Zero values take defaults.
type Options struct {
	Logger   *slog.Logger // default slog.Default()
	MaxConns int32        // pool size; default 8
	// Migrate applies pending migrations at Open (twin serve does; tests of
	// the "schema missing" error do not).
	Migrate bool
}

// Store is the PostGIS store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

var _ twin.Store = (*Store)(nil)

// Open connects to the database at url and checks that PostGIS and the
// schema are there, with errors that say what to do when they are not.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: parse database URL: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	addr := net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect %s: %w", addr, err)
	}
	s := &Store{pool: pool, log: opts.Logger}
	if err := s.check(ctx, addr, opts.Migrate); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// check verifies reachability, PostGIS and schema, migrating if asked.
func (s *Store) check(ctx context.Context, addr string, migrate bool) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pgstore: PostgreSQL at %s is not reachable (is the server running and the URL right?): %w: %w",
			addr, twin.ErrStoreUnavailable, err)
	}
	var avail, installed bool
	err := s.pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'),
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')`).Scan(&avail, &installed)
	if err != nil {
		return fmt.Errorf("pgstore: check PostGIS on %s: %w", addr, err)
	}
	if !avail {
		return fmt.Errorf("pgstore: PostGIS is not installed on the PostgreSQL server at %s: install postgresql-<major>-postgis-3 (e.g. apt-get install postgresql-15-postgis-3) and run `twin migrate --db URL`", addr)
	}
	if migrate {
		db := stdlib.OpenDBFromPool(s.pool)
		defer db.Close()
		if err := migrations.Up(ctx, db); err != nil {
			return fmt.Errorf("pgstore: %w", err)
		}
		return nil
	}
	var meta *string
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('meta')::text`).Scan(&meta); err != nil {
		return fmt.Errorf("pgstore: check schema: %w", err)
	}
	if !installed || meta == nil {
		return fmt.Errorf("pgstore: the database at %s has no twin schema: run `twin migrate --db URL`", addr)
	}
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pgstore: ping: %w", classify(err))
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// table returns the layer's table name, checked against the model so it is
// safe to splice into SQL.
func table(l twin.Layer) (string, error) {
	if _, err := twin.ParseStoredLayer(string(l)); err != nil {
		return "", err
	}
	return string(l), nil
}

// classify marks connection-level failures with twin.ErrStoreUnavailable and
// failures caused by the rows themselves with twin.ErrBadData, so the writer
// can tell "database away" (retry the batch) from "bad data" (isolate the
// row). A server error of class 22 (data exception: NUL or invalid UTF-8 in
// text, \u0000 in jsonb, a value out of range), 23 (integrity constraint) or
// 54 (program limit: a value too large to index) is about the data; any other
// server error (a missing table, a permission) is not, and is retried.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"), strings.HasPrefix(pe.Code, "54"):
			return fmt.Errorf("%w: %w", twin.ErrBadData, err)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"), pe.Code == "53300":
			// connection exception, operator intervention (shutdown,
			// restart), too many connections
			return fmt.Errorf("%w: %w", twin.ErrStoreUnavailable, err)
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "unexpected EOF") {
		return fmt.Errorf("%w: %w", twin.ErrStoreUnavailable, err)
	}
	return err
}

// GetMeta reads a named value; nil, nil when absent.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: get meta %q: %w", key, classify(err))
	}
	return v, nil
}

// PutMeta writes a named value.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("pgstore: put meta %q: %w", key, classify(err))
	}
	return nil
}

// tsOrNil maps the zero time to NULL.
func tsOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// mustJSON encodes props; values that cannot be encoded (channels, funcs)
// are a programming error upstream, reported as an error for the batch.
func mustJSON(v any) (string, error) {
	if v == nil {
		return "{}", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}
