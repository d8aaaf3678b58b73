package timeline

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/paulmach/orb"
)

// TestBuildStreamedMatchesMemory: a checkpoint built from the stored one
// a cell at a time holds what the in-memory build (the stored checkpoint
// advanced by the window's changes) holds: objects that moved across
// cells, removed, added, changed twice in the window, and a window record
// with a lower seq than its object's checkpoint record (it loses).
func TestBuildStreamedMatchesMemory(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := Options{Bucket: time.Minute}
	r, err := NewRecorder(twin.New(twin.Options{}), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()
	prev, to := t0+int64(5*time.Minute), t0+int64(10*time.Minute)
	seq := uint64(0)
	rec := func(name string, at int64, removed bool) twin.TimelineRecord {
		seq++
		id := twin.NewID(twin.Vehicles, name)
		if removed {
			return twin.TimelineRecord{Time: at, Seq: seq, ID: id, Removed: true}
		}
		p := orb.Point{106 + rng.Float64()*0.5, 29.5 + rng.Float64()*0.3}
		f := &twin.Feature{ID: id, Geometry: p, Version: seq, Updated: twin.Stamp(at),
			Props: twin.NewProps(map[string]any{"n": float64(seq)}).Pack()}
		return twin.TimelineRecord{Time: at, Seq: seq, ID: id, Feature: f, HasBound: true, Bound: p.Bound()}
	}
	// The state at prev, as a checkpoint; v399 has the highest seq of all.
	base := &ckptState{at: prev, recs: map[twin.ID]*twin.TimelineRecord{}}
	for i := range 400 {
		x := rec(fmt.Sprintf("v%d", i), prev-int64(time.Duration(rng.IntN(60))*time.Second), i%50 == 0)
		if i == 399 {
			x.Seq = 1 << 40 // above every window record's
		}
		enc := encodeOne(t, x)
		base.merge(&enc)
	}
	blobs, err := base.encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutCheckpoint(ctx, prev, blobs); err != nil {
		t.Fatal(err)
	}
	// The window's changes: moves, twice for some, removals, new objects,
	// and v399, whose records all have a seq below its checkpoint record's.
	var window []twin.TimelineRecord
	for i := range 200 {
		name := fmt.Sprintf("v%d", rng.IntN(450))
		window = append(window, rec(name, prev+int64(time.Duration(1+rng.IntN(290))*time.Second), rng.IntN(10) == 0))
		if i%7 == 0 {
			window = append(window, rec(name, prev+int64(time.Duration(1+rng.IntN(290))*time.Second), false))
		}
	}
	low := rec("v399", prev+int64(time.Second), false)
	low.Seq = 5
	window = append(window, low)
	if err := appendByBucket(ctx, st, window, int64(opts.Bucket)); err != nil {
		t.Fatal(err)
	}

	want, err := loadCheckpoint(ctx, st, prev, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := want.advance(ctx, st, to, int64(opts.Bucket), nil); err != nil {
		t.Fatal(err)
	}
	n, err := r.buildStreamed(ctx, prev, to)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadCheckpoint(ctx, st, to, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want.recs) || len(got.recs) != len(want.recs) {
		t.Fatalf("streamed checkpoint holds %d records (reported %d), the in-memory one %d", len(got.recs), n, len(want.recs))
	}
	for id, w := range want.recs {
		g := got.recs[id]
		if g == nil || g.Seq != w.Seq || g.Time != w.Time || g.Removed != w.Removed || !bytes.Equal(g.Data, w.Data) || g.Cell() != w.Cell() {
			t.Fatalf("%s: streamed %+v, in memory %+v", id, g, w)
		}
	}
	if w := want.recs[twin.NewID(twin.Vehicles, "v399")]; w == nil || w.Seq != 1<<40 {
		t.Fatalf("a window record of v399 won over its checkpoint record: %+v", w)
	}

	// The next window changes one object only: the other cells are
	// copied as they were.
	next := to + int64(5*time.Minute)
	if err := appendByBucket(ctx, st, []twin.TimelineRecord{rec("v1", to+int64(time.Second), false)}, int64(opts.Bucket)); err != nil {
		t.Fatal(err)
	}
	if err := want.advance(ctx, st, next, int64(opts.Bucket), nil); err != nil {
		t.Fatal(err)
	}
	if n, err = r.buildStreamed(ctx, to, next); err != nil {
		t.Fatal(err)
	}
	if got, err = loadCheckpoint(ctx, st, next, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n != len(want.recs) || len(got.recs) != len(want.recs) {
		t.Fatalf("next: streamed checkpoint holds %d records (reported %d), the in-memory one %d", len(got.recs), n, len(want.recs))
	}
	for id, w := range want.recs {
		if g := got.recs[id]; g == nil || g.Seq != w.Seq || g.Removed != w.Removed || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("next: %s: streamed %+v, in memory %+v", id, g, w)
		}
	}
}

// encodeOne returns x as the decoder gives it back (Data, not Feature).
func encodeOne(t *testing.T, x twin.TimelineRecord) twin.TimelineRecord {
	t.Helper()
	blob, err := twin.EncodeRecords([]twin.TimelineRecord{x})
	if err != nil {
		t.Fatal(err)
	}
	var out twin.TimelineRecord
	if err := twin.DecodeRecords(blob, func(r *twin.TimelineRecord) error {
		out = *r
		out.Data = bytes.Clone(r.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// appendByBucket stores rs as change chunks, one per bucket.
func appendByBucket(ctx context.Context, st *boltstore.Store, rs []twin.TimelineRecord, bucket int64) error {
	by := map[int64][]twin.TimelineRecord{}
	for _, x := range rs {
		b := floorTo(x.Time, bucket)
		by[b] = append(by[b], x)
	}
	var chunks []twin.TimelineChunk
	for b, xs := range by {
		blob, err := twin.EncodeRecords(xs)
		if err != nil {
			return err
		}
		lo, hi := xs[0].Time, xs[0].Time
		for _, x := range xs {
			lo, hi = min(lo, x.Time), max(hi, x.Time)
		}
		chunks = append(chunks, twin.TimelineChunk{Bucket: b, Key: 1, Min: lo, Max: hi, Data: blob})
	}
	return st.AppendChanges(ctx, chunks)
}
