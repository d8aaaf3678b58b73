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
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/pgstore"
)

// openStore opens PostGIS when url is set (applying migrations), else the
// embedded store in dir.
func openStore(ctx context.Context, url, dir string, log *slog.Logger) (twin.Store, error) {
	if url != "" {
		st, err := pgstore.Open(ctx, url, pgstore.Options{Logger: log, Migrate: true})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := boltstore.Open(dir, boltstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// loadTwin reads every stored object into the twin. Regions and grids are
// loaded first so the locator can place everything else; objects whose
// region was not stored are placed on load.
func loadTwin(ctx context.Context, st twin.Store, tw *twin.Twin, loc *locate.Locator) (int, error) {
	var regions, grids, rest []*twin.Feature
	err := st.Load(ctx, func(f *twin.Feature) error {
		switch f.ID.Layer {
		case twin.Regions:
			regions = append(regions, f)
		case twin.Grids:
			grids = append(grids, f)
		default:
			rest = append(rest, f)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("load twin from store: %w", err)
	}
	loc.Reset(regions, grids)
	tw.Load(regions)
	tw.Load(grids)
	tw.Load(rest)
	if seq, err := st.GetMeta(ctx, "feed_seq"); err == nil && len(seq) == 8 {
		tw.Feed().SetLast(beUint64(seq))
	}
	return len(regions) + len(grids) + len(rest), nil
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// storeAll upserts features in batches.
func storeAll(ctx context.Context, st twin.Store, fs []*twin.Feature) error {
	const batch = 5000
	for i := 0; i < len(fs); i += batch {
		if err := st.Upsert(ctx, fs[i:min(i+batch, len(fs))]); err != nil {
			return err
		}
	}
	return nil
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
