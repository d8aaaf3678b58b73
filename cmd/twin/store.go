package main

import (
	"context"
	"log/slog"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/prometheus/client_golang/prometheus"
)

// openStore opens PostGIS when url is set (applying migrations), else the
// embedded store in dir.
func openStore(ctx context.Context, url, dir string, log *slog.Logger, reg prometheus.Registerer) (twin.Store, error) {
	if url != "" {
		st, err := pgstore.Open(ctx, url, pgstore.Options{Logger: log, Migrate: true})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := boltstore.Open(dir, boltstore.Options{Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return st, nil
}
