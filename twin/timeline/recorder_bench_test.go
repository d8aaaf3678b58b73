package timeline

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/demo/sim"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// benchChanges are the feed changes of the demo city (scale 1) driven by
// its simulation at 14,000 msgs/s for benchSeconds simulated seconds:
// vehicles, workers and sensors with the props telemetry gives them.
var benchChanges = sync.OnceValues(func() ([]twin.Change, error) {
	const rate, seconds = 14000, 6
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	city, err := demo.Generate(demo.Options{Scale: 1})
	if err != nil {
		return nil, err
	}
	tw := twin.New(twin.Options{Clock: clk, FeedSize: 1 << 18})
	tw.Load(city.All())
	first := tw.Feed().Last()
	s := sim.New(city, sim.Options{Rate: rate, Clock: clk})
	for range seconds * 10 {
		clk.Advance(100 * time.Millisecond)
		for _, m := range s.Step(clk.Now()) {
			tm, err := telemetry.Decode(m.Payload, clk.Now(), telemetry.Limits{})
			if err != nil {
				return nil, err
			}
			if _, err := telemetry.Apply(tw, strings.TrimPrefix(m.Topic, sim.TopicPrefix), tm, false); err != nil {
				return nil, err
			}
		}
	}
	var out []twin.Change
	for pos := first; ; {
		cs, err := tw.Feed().Since(pos, 4096)
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			return out, nil
		}
		out = append(out, cs...)
		pos = cs[len(cs)-1].Seq
	}
})

// sinkStore is a twin.Store and twin.Timeline that keeps only the byte
// count of what is appended: the recorder's own cost, without a store's.
type sinkStore struct {
	twin.Store
	twin.Timeline
	bytes, chunks int
}

func (s *sinkStore) GetMeta(context.Context, string) ([]byte, error) { return nil, nil }
func (s *sinkStore) PutMeta(context.Context, string, []byte) error   { return nil }
func (s *sinkStore) AppendChanges(_ context.Context, cs []twin.TimelineChunk) error {
	for _, c := range cs {
		s.bytes += len(c.Data)
	}
	s.chunks += len(cs)
	return nil
}
func (s *sinkStore) PutVersions(context.Context, []twin.TimelineVersion) error { return nil }

// BenchmarkRecord is the recorder's cost per change of the live layers
// (add, then a flush every 14,000 changes: one second at 14k msgs/s),
// with the bytes it stores per change.
func BenchmarkRecord(b *testing.B) {
	cs, err := benchChanges()
	if err != nil {
		b.Fatal(err)
	}
	st := &sinkStore{}
	r, err := NewRecorder(twin.New(twin.Options{}), st, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const perFlush = 14000
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.add(&cs[i%len(cs)])
		if i%perFlush == perFlush-1 {
			if err := r.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(st.bytes)/float64(b.N), "B-stored/change")
}
