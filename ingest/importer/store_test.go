package importer

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// memStore is a minimal in-memory twin.Store for the importer's tests:
// objects are kept as clones, so the importer cannot share state with it.
type memStore struct {
	mu      sync.Mutex
	objs    map[twin.ID]*twin.Feature
	upserts int // Upsert calls
}

var _ twin.Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{objs: map[twin.ID]*twin.Feature{}} }

func (s *memStore) Load(ctx context.Context, fn func(*twin.Feature) error) error {
	s.mu.Lock()
	fs := make([]*twin.Feature, 0, len(s.objs))
	for _, f := range s.objs {
		fs = append(fs, f.Clone())
	}
	s.mu.Unlock()
	sort.Slice(fs, func(i, j int) bool { return fs[i].ID.String() < fs[j].ID.String() })
	for _, f := range fs {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Get(ctx context.Context, id twin.ID) (*twin.Feature, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.objs[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, twin.ErrNotFound)
	}
	return f.Clone(), nil
}

func (s *memStore) Upsert(ctx context.Context, fs []*twin.Feature) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upserts++
	for _, f := range fs {
		if old, ok := s.objs[f.ID]; ok && old.Version > f.Version {
			continue
		}
		c := f.Clone()
		c.Geometry = orb.Clone(f.Geometry)
		s.objs[f.ID] = c
	}
	return nil
}

func (s *memStore) Delete(ctx context.Context, ids []twin.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.objs, id)
	}
	return nil
}

func (s *memStore) AppendHistory(context.Context, []twin.Sample) error { return nil }
func (s *memStore) History(context.Context, twin.ID, time.Time, time.Time, int) ([]twin.Sample, error) {
	return nil, nil
}
func (s *memStore) GetMeta(context.Context, string) ([]byte, error) { return nil, nil }
func (s *memStore) PutMeta(context.Context, string, []byte) error   { return nil }
func (s *memStore) Ping(context.Context) error                      { return nil }
func (s *memStore) Close() error                                    { return nil }

func (s *memStore) count(l twin.Layer) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range s.objs {
		if id.Layer == l {
			n++
		}
	}
	return n
}

func (s *memStore) layer(l twin.Layer) []*twin.Feature {
	var out []*twin.Feature
	_ = s.Load(context.Background(), func(f *twin.Feature) error {
		if f.ID.Layer == l {
			out = append(out, f)
		}
		return nil
	})
	return out
}
