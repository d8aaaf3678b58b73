package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/prometheus/client_golang/prometheus"
)

// storeWritePause is the embedded store's pause inside the store writer's
// transactions under twin serve (boltstore.Options.Pause), as long as the
// replay recorder's between its flush's steps.
const storeWritePause = 500 * time.Microsecond

// openStore opens PostGIS when url is set (applying migrations), else the
// embedded store in dir, whose write batches sleep pause every few hundred
// items (0: never).
func openStore(ctx context.Context, url, dir string, log *slog.Logger, reg prometheus.Registerer, pause time.Duration) (twin.Store, error) {
	if url != "" {
		st, err := pgstore.Open(ctx, url, pgstore.Options{Logger: log, Migrate: true})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := boltstore.Open(dir, boltstore.Options{Logger: log, Registerer: reg, Pause: pause})
	if err != nil {
		return nil, err
	}
	return st, nil
}
