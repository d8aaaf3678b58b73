package twin

import (
	"context"
	"time"
)

// IndicatorRow is one region's indicators over one time bucket, as the
// indicators consumer (governance/indicators) keeps them. The store treats
// Data as opaque bytes (JSON); the row is keyed by (Region, Step, Start) and
// carries Seq, the last feed sequence whose changes it includes.
type IndicatorRow struct {
	Region string    // region code (city, district or street)
	Step   string    // "hour" or "day"
	Start  time.Time // bucket start, UTC
	Seq    uint64    // last feed sequence included
	Data   []byte    // the bucket's figures, encoded by its owner
}

// IndicatorStore keeps indicator buckets beside the twin. Both stores
// implement it (twin/pgstore: table indicators; twin/boltstore: buckets
// _indicators and _indicator_objects), and twin/storetest checks both.
//
// The consumer writes its buckets, the per-object summaries it counts
// transitions against, and its own feed position in one atomic call, so
// after a crash the three always agree: a change is either wholly counted
// and remembered, or neither.
type IndicatorStore interface {
	// PutIndicators writes rows, upserts or (nil value) deletes object
	// summaries, and stores pos as the consumer's position, atomically.
	// Idempotent: a stored row with a higher Seq than the one given is kept,
	// so a replayed or late write (a former leader) never moves a bucket
	// back.
	PutIndicators(ctx context.Context, rows []IndicatorRow, objs map[string][]byte, pos uint64) error
	// Indicators returns the rows of region and step with from <= Start <
	// to, oldest first.
	Indicators(ctx context.Context, region, step string, from, to time.Time) ([]IndicatorRow, error)
	// IndicatorState returns the consumer's stored position and every
	// stored object summary (0 and none before the first PutIndicators).
	IndicatorState(ctx context.Context) (pos uint64, objs map[string][]byte, err error)
}
