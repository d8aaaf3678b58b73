package twin

import (
	"context"
	"errors"
	"time"
)

// ErrStoreUnavailable wraps errors from a store that cannot be reached; the
// writer keeps buffering and retries.
var ErrStoreUnavailable = errors.New("store unavailable")

// Store is the system of record behind the twin. Two implementations share
// one contract test suite (twin/storetest): PostGIS (twin/pgstore) and an
// embedded on-disk store (twin/boltstore). All methods are safe for
// concurrent use and idempotent where noted, so a writer may retry a batch.
type Store interface {
	// Load streams every stored object to fn, in no particular order; the
	// server rebuilds the twin from it at start.
	Load(ctx context.Context, fn func(*Feature) error) error
	// Get reads one object; ErrNotFound when absent.
	Get(ctx context.Context, id ID) (*Feature, error)
	// Upsert writes objects' latest state in one batch. Idempotent: a stored
	// object with a higher version than the one given is kept.
	Upsert(ctx context.Context, fs []*Feature) error
	// Delete removes objects; absent ones are ignored.
	Delete(ctx context.Context, ids []ID) error
	// AppendHistory records telemetry samples. Idempotent per (ID, Time):
	// the same sample appended twice is stored once.
	AppendHistory(ctx context.Context, ss []Sample) error
	// History returns an object's samples with from <= Time < to, oldest
	// first, at most limit (0 = no limit). Zero from/to mean unbounded.
	History(ctx context.Context, id ID, from, to time.Time, limit int) ([]Sample, error)
	// GetMeta and PutMeta keep small named values (last feed sequence,
	// SLA timers, generated keys). GetMeta returns nil, nil when absent.
	GetMeta(ctx context.Context, key string) ([]byte, error)
	PutMeta(ctx context.Context, key string, value []byte) error
	// Ping checks the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}
