package timeline

import (
	"strconv"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// TestSortPending: the chunk order holds every pending record once, by
// bucket, then each object's records side by side by seq, objects by ID
// (each case twice, the second time with the scratch of the first): for
// records in seq order over a few buckets, as the feed gives them (the
// counting sort, groupKeys), and for seqs out of order or over more
// buckets than it takes (the comparison sort).
func TestSortPending(t *testing.T) {
	r, err := NewRecorder(twin.New(twin.Options{}), &sinkStore{}, Options{Bucket: 10})
	if err != nil {
		t.Fatal(err)
	}
	type sortCase struct {
		n          int
		descending bool
		span       int // times in [0, span): span/10 buckets
		grouped    bool
	}
	for round, c := range []sortCase{{1000, true, 50, false}, {300, true, 50, false}, {1000, false, 50, true},
		{300, false, 50, true}, {1000, false, 10 * (maxGroupBuckets + 4), false}, {5, false, 50, true}} {
		r.pending = r.pending[:0]
		n := c.n
		for i := range n {
			id := twin.NewID(twin.Vehicles, string(rune('a'+(i*5+round)%7)))
			if i%3 == 0 {
				id.Layer = twin.Devices
			}
			seq := uint64(i + 1)
			if c.descending {
				seq = uint64(n - i)
			}
			r.pending = append(r.pending, twin.TimelineRecord{Time: int64((i * 37) % c.span), Seq: seq, ID: id})
		}
		keys := make([]chunkKey, n)
		for i, rec := range r.pending {
			keys[i] = chunkKey{bucket: r.bucketOf(rec.Time), seq: rec.Seq, object: int32(i % 7), i: int32(i)}
		}
		if _, ok := r.groupKeys(keys, 7); ok != c.grouped {
			t.Fatalf("round %d: groupKeys took it: %v, want %v", round, ok, c.grouped)
		}
		r.sortPending()
		seen := map[uint64]bool{}
		for i, rec := range r.pending {
			if seen[rec.Seq] {
				t.Fatalf("round %d: seq %d twice", round, rec.Seq)
			}
			seen[rec.Seq] = true
			if i == 0 {
				continue
			}
			prev := &r.pending[i-1]
			if pb, b := r.bucketOf(prev.Time), r.bucketOf(rec.Time); pb > b || pb == b && cmpObject(*prev, rec) >= 0 {
				t.Fatalf("round %d: %s seq %d (bucket %d) after %s seq %d (bucket %d)", round, rec.ID, rec.Seq, b, prev.ID, prev.Seq, pb)
			}
		}
		if len(seen) != n {
			t.Fatalf("round %d: %d records, want %d", round, len(seen), n)
		}
	}
}

// TestKeepPending: a steady rate above maxKeptPending keeps its slice; one
// grown by a backlog is let go once the flushes are small again.
func TestKeepPending(t *testing.T) {
	for _, c := range []struct {
		cap, used int
		keep      bool
	}{
		{maxKeptPending, 0, true},
		{maxKeptPending, maxKeptPending, true},
		{100_000, 60_000, true},  // 60k records a flush, every flush
		{1 << 18, 60_000, false}, // after a store away for long
		{1 << 18, 1 << 18, true}, // still catching up
	} {
		if got := keepPending(c.cap, c.used); got != c.keep {
			t.Errorf("keepPending(%d, %d) = %v, want %v", c.cap, c.used, got, c.keep)
		}
	}
}

// TestPendingPeak: a small flush among large ones (the checkpoint tick's)
// keeps the slice; one grown by a backlog goes within a few dozen flushes
// once they are small again.
func TestPendingPeak(t *testing.T) {
	const c = 100_000 // grown by 60k-record flushes
	peak := 0
	for i, n := range []int{60_000, 60_000, 2_000, 60_000, 500, 10, 60_000} {
		if peak = nextPeak(peak, n); !keepPending(c, peak) {
			t.Fatalf("flush %d of %d records: the slice goes", i, n)
		}
	}
	peak = 1 << 18
	for i := range 40 {
		if peak = nextPeak(peak, 60_000); !keepPending(1<<18, peak) {
			t.Logf("a backlog's slice goes at the %dth small flush", i+1)
			return
		}
	}
	t.Fatal("a backlog's slice is kept for good")
}

// BenchmarkSortPending: one flush's chunk order at 35k updates a second
// from 5000 vehicles (in feed order, one bucket).
func BenchmarkSortPending(b *testing.B) {
	r, err := NewRecorder(twin.New(twin.Options{}), &sinkStore{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	const objects, records = 5000, 35000
	ids := make([]twin.ID, objects)
	for i := range ids {
		ids[i] = twin.NewID(twin.Vehicles, "load-"+strconv.Itoa((i*7919)%objects))
	}
	in := make([]twin.TimelineRecord, records)
	for i := range in {
		in[i] = twin.TimelineRecord{Time: int64(i), Seq: uint64(i + 1), ID: ids[(i*31)%objects]}
	}
	b.ReportAllocs()
	for b.Loop() {
		r.pending = append(r.pending[:0], in...)
		r.sortPending()
	}
}
