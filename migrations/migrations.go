// Package migrations holds the PostGIS schema of the twin as goose SQL
// migrations embedded in the binary, so `twin migrate` and pgstore's
// Options.Migrate need no files on disk.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
)

// FS holds the migration files (NNNNN_name.sql), applied in version order.
//
//go:embed *.sql
var FS embed.FS

// provider builds a goose provider over FS. The provider API is used (not
// goose's package-level functions) because those keep global state.
func provider(db *sql.DB) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration. It is idempotent. On a server without
// PostGIS it fails with a message naming the package to install.
func Up(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations up: %w", err)
	}
	return nil
}

// Down rolls back the newest steps migrations; steps < 0 rolls back all.
// Rolling back more than are applied is not an error.
func Down(ctx context.Context, db *sql.DB, steps int) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	if steps < 0 {
		if _, err := p.DownTo(ctx, 0); err != nil {
			return fmt.Errorf("migrations down all: %w", err)
		}
		return nil
	}
	for i := 0; i < steps; i++ {
		if _, err := p.Down(ctx); err != nil {
			if errors.Is(err, goose.ErrNoNextVersion) {
				return nil
			}
			return fmt.Errorf("migrations down: %w", err)
		}
	}
	return nil
}

// Version returns the newest applied migration (0 when none).
func Version(ctx context.Context, db *sql.DB) (int64, error) {
	p, err := provider(db)
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrations version: %w", err)
	}
	return v, nil
}
