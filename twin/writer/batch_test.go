package writer_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/writer"
	"github.com/paulmach/orb"
)

var _ writer.BatchWriter = (*boltstore.Store)(nil)

// batchStore records WriteBatch calls; the per-item Store methods fail the
// test, since a BatchWriter must get the whole flush in one call.
type batchStore struct {
	twin.Store
	t     *testing.T
	mu    sync.Mutex
	calls []batchCall
	c     chan struct{}
}

type batchCall struct {
	deletes, upserts, samples int
	key                       string
	seq                       uint64
}

func (s *batchStore) WriteBatch(_ context.Context, deletes []twin.ID, upserts []*twin.Feature, samples []twin.Sample, key string, value []byte) error {
	s.mu.Lock()
	s.calls = append(s.calls, batchCall{len(deletes), len(upserts), len(samples), key, binary.BigEndian.Uint64(value)})
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default:
	}
	return nil
}

func (s *batchStore) Upsert(context.Context, []*twin.Feature) error {
	s.t.Error("Upsert called on a BatchWriter")
	return nil
}

func (s *batchStore) AppendHistory(context.Context, []twin.Sample) error {
	s.t.Error("AppendHistory called on a BatchWriter")
	return nil
}

func (s *batchStore) PutMeta(context.Context, string, []byte) error {
	s.t.Error("PutMeta called on a BatchWriter")
	return nil
}

func (s *batchStore) Delete(context.Context, []twin.ID) error {
	s.t.Error("Delete called on a BatchWriter")
	return nil
}

func (s *batchStore) snapshot() []batchCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]batchCall(nil), s.calls...)
}

// TestBatchWriterOneCallPerFlush: a flush of many objects and samples, with
// BatchSize far below it, reaches a BatchWriter as ONE call carrying the
// feed sequence; a long FlushInterval means no flush before Flush.
func TestBatchWriterOneCallPerFlush(t *testing.T) {
	tw := newTwin()
	st := &batchStore{t: t, c: make(chan struct{}, 1)}
	w := writer.New(tw, st, writer.Options{FlushInterval: time.Hour, BatchSize: 10})
	startWriter(t, w)
	for i := 0; i < 50; i++ {
		put(t, tw, twin.Vehicles, fmt.Sprint("v", i), orb.Point{106.5, 29.5})
	}
	put(t, tw, twin.Vehicles, "doomed", nil)
	if _, err := tw.Delete(twin.NewID(twin.Vehicles, "doomed")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		s := twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", i%50)), Time: t0.Add(time.Duration(i) * time.Second),
			HasPos: true, Pos: orb.Point{106.5 + float64(i)*1e-5, 29.5}}
		if _, _, err := tw.ApplySample(s); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(st.snapshot()); n != 0 {
		t.Fatalf("%d flushes before FlushInterval with pending below MaxBatch", n)
	}
	flush(t, w)
	calls := st.snapshot()
	if len(calls) != 1 {
		t.Fatalf("%d WriteBatch calls, want 1: %+v", len(calls), calls)
	}
	want := batchCall{deletes: 1, upserts: 50, samples: 200, key: writer.MetaFeedSeq, seq: tw.Feed().Last()}
	if calls[0] != want {
		t.Fatalf("batch %+v, want %+v", calls[0], want)
	}
}

// TestMaxBatchFlushesEarly: reaching MaxBatch pending items flushes without
// waiting for FlushInterval.
func TestMaxBatchFlushesEarly(t *testing.T) {
	tw := newTwin()
	st := &batchStore{t: t, c: make(chan struct{}, 1)}
	w := writer.New(tw, st, writer.Options{FlushInterval: time.Hour, MaxBatch: 20})
	startWriter(t, w)
	for i := 0; i < 20; i++ {
		put(t, tw, twin.Vehicles, fmt.Sprint("v", i), orb.Point{106.5, 29.5})
	}
	select {
	case <-st.c:
	case <-time.After(10 * time.Second):
		t.Fatal("no flush after MaxBatch items")
	}
	if calls := st.snapshot(); calls[0].upserts < 20 {
		t.Fatalf("early flush carried %d upserts, want 20", calls[0].upserts)
	}
}
