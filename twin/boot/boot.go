// Package boot rebuilds the in-memory twin from a store at start: regions
// and grids first, so the locator can place everything else, then the rest,
// then the feed's sequence number above anything the previous process
// flushed or reserved (the writer then reserves the next block).
package boot

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/writer"
)

// Load reads every stored object into tw and resets loc to the stored
// regions and grids. It returns the number of objects loaded.
func Load(ctx context.Context, st twin.Store, tw *twin.Twin, loc *locate.Locator) (int, error) {
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
	// Continue above both the last flushed change and the last reservation
	// (writer.MetaFeedHWM): after kill -9, numbers up to the reservation may
	// have reached clients, so none of them is handed out again.
	flushed, hwm, err := Seqs(ctx, st)
	if err != nil {
		return 0, fmt.Errorf("load twin from store: %w", err)
	}
	tw.Feed().SetLast(max(flushed, hwm))
	return len(regions) + len(grids) + len(rest), nil
}

// Seqs reads the store's last flushed feed seq (writer.MetaFeedSeq) and
// its seq reservation (writer.MetaFeedHWM); 0 when absent. A replicated
// twin catches up from the change log after flushed (twin/changelog).
func Seqs(ctx context.Context, st twin.Store) (flushed, hwm uint64, err error) {
	var out [2]uint64
	for i, key := range []string{writer.MetaFeedSeq, writer.MetaFeedHWM} {
		v, err := st.GetMeta(ctx, key)
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", key, err)
		}
		if len(v) == 8 {
			out[i] = binary.BigEndian.Uint64(v)
		}
	}
	return out[0], out[1], nil
}

// StoreAll upserts features in batches of 5,000.
func StoreAll(ctx context.Context, st twin.Store, fs []*twin.Feature) error {
	const batch = 5000
	for i := 0; i < len(fs); i += batch {
		if err := st.Upsert(ctx, fs[i:min(i+batch, len(fs))]); err != nil {
			return err
		}
	}
	return nil
}
