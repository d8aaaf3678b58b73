package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/rules"
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

// loadRules loads --rules, or with --demo the bundled demo rules.
func loadRules(eng *rules.Engine, path string, isDemo bool) error {
	var name string
	var data []byte
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read rules: %w", err)
		}
		name, data = path, b
	case isDemo:
		name, data = "demo/rules.yaml", demo.Rules
	default:
		return nil
	}
	rs, err := rules.Parse(name, data)
	if err != nil {
		return err
	}
	eng.Load(rs)
	return nil
}
