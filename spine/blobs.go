package spine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EvidenceBucket is the JetStream Object Store bucket holding evidence
// photos when servers share a NATS (--nats): a photo received by one
// server is served by every other.
const EvidenceBucket = "TWIN_EVIDENCE"

// Blobs is a JetStream Object Store bucket of write-once blobs named by
// their content (the caller names them by hash), replicated like the
// streams (Options.Replicas). Safe for concurrent use.
type Blobs struct {
	store jetstream.ObjectStore
}

// Blobs opens (creating it if absent) the object store bucket.
func (s *Spine) Blobs(ctx context.Context, bucket string) (*Blobs, error) {
	st, err := s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "CityTwin blobs named by their content",
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("spine: object store %s: %w", bucket, err)
	}
	return &Blobs{store: st}, nil
}

// Put stores b under name unless a blob of that name is already there
// (names are content hashes: the same name is the same bytes).
func (b *Blobs) Put(ctx context.Context, name string, data []byte) error {
	if _, err := b.store.GetInfo(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("spine: blob %s: %w", name, err)
	}
	if _, err := b.store.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("spine: put blob %s: %w", name, err)
	}
	return nil
}

// Get returns the blob's bytes; a missing blob is an error wrapping
// fs.ErrNotExist.
func (b *Blobs) Get(ctx context.Context, name string) ([]byte, error) {
	data, err := b.store.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("spine: blob %s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("spine: get blob %s: %w", name, err)
	}
	return data, nil
}

// Delete removes a blob, best effort (a relayed body once answered).
func (b *Blobs) Delete(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.store.Delete(ctx, name)
}
