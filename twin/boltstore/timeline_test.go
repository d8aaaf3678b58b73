package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

// TestTimelineBigChunks: chunks of bigChunk bytes or more live in buckets
// of their own, small ones as plain values, and the reader cannot tell:
// a scan gives every chunk whole and in key order, a retried flush may
// change a chunk's size either way, pruning drops both kinds, and big
// chunks written as plain values (files written before) still read.
func TestTimelineBigChunks(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	want := map[[2]uint64][]byte{}
	var chunks []twin.TimelineChunk
	for k := range 12 {
		n := 10 + r.IntN(100)
		if k%2 == 0 {
			n = bigChunk + r.IntN(300<<10)
		}
		c := twin.TimelineChunk{Bucket: int64(k/3) * 60, Key: uint64(100 + k), Min: int64(k), Max: int64(k + 1), Data: data(n)}
		chunks = append(chunks, c)
		want[[2]uint64{uint64(c.Bucket), c.Key}] = c.Data
	}
	if err := s.AppendChanges(ctx, chunks); err != nil {
		t.Fatal(err)
	}
	// A retried flush rewrites chunks at other sizes: big to small and back.
	retry := []twin.TimelineChunk{chunks[0], chunks[1]}
	retry[0].Data, retry[1].Data = data(7), data(bigChunk*3)
	if err := s.AppendChanges(ctx, retry); err != nil {
		t.Fatal(err)
	}
	for _, c := range retry {
		want[[2]uint64{uint64(c.Bucket), c.Key}] = c.Data
	}
	// A big chunk as a store built before wrote it: a plain value.
	old := twin.TimelineChunk{Bucket: 240, Key: 1, Min: 240, Max: 250, Data: data(bigChunk * 2)}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		k := binary.BigEndian.AppendUint64(i64Key(nil, old.Bucket), old.Key)
		v := append(i64Key(i64Key(nil, old.Min), old.Max), old.Data...)
		return tx.Bucket(tlChanges).Put(k, v)
	}); err != nil {
		t.Fatal(err)
	}
	want[[2]uint64{uint64(old.Bucket), old.Key}] = old.Data

	scan := func(from int64) map[[2]uint64][]byte {
		t.Helper()
		got := map[[2]uint64][]byte{}
		var prev [2]int64
		if err := s.ScanChanges(ctx, from, math.MaxInt64, func(c twin.TimelineChunk) error {
			if at := [2]int64{c.Bucket, int64(c.Key)}; at[0] < prev[0] || (at[0] == prev[0] && at[1] <= prev[1]) {
				return fmt.Errorf("chunk %v after %v", at, prev)
			}
			prev = [2]int64{c.Bucket, int64(c.Key)}
			got[[2]uint64{uint64(c.Bucket), c.Key}] = bytes.Clone(c.Data)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(got map[[2]uint64][]byte, from int64) {
		t.Helper()
		n := 0
		for k, w := range want {
			if int64(k[0]) < from {
				if _, ok := got[k]; ok {
					t.Fatalf("chunk %v before %d still read", k, from)
				}
				continue
			}
			n++
			if !bytes.Equal(got[k], w) {
				t.Fatalf("chunk %v: %d bytes read, want %d", k, len(got[k]), len(w))
			}
		}
		if len(got) != n {
			t.Fatalf("%d chunks read, want %d", len(got), n)
		}
	}
	check(scan(0), 0)
	// Big chunks are buckets (written once), small ones values.
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(tlChanges)
		for _, c := range append(chunks[2:], retry...) {
			k := binary.BigEndian.AppendUint64(i64Key(nil, c.Bucket), c.Key)
			if isBucket := b.Bucket(k) != nil; isBucket != (len(c.Data)+16 >= bigChunk) {
				return fmt.Errorf("chunk %d/%d of %d bytes: bucket %v", c.Bucket, c.Key, len(c.Data), isBucket)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneTimeline(ctx, 120, 0, 0); err != nil {
		t.Fatal(err)
	}
	check(scan(0), 120)
	if err := s.PruneTimeline(ctx, math.MaxInt64, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := scan(math.MinInt64); len(got) != 0 {
		t.Fatalf("%d chunks left after pruning all", len(got))
	}
}

// BenchmarkAppendChanges: one flush's chunk appended per transaction, as
// the recorder does each second; pages_written/op is what bbolt wrote.
func BenchmarkAppendChanges(b *testing.B) {
	for _, size := range []int{200 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKB", size>>10), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			blob := make([]byte, size)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range blob {
				blob[i] = byte(r.IntN(256))
			}
			ctx := context.Background()
			pages := func() int64 { st := s.db.Stats(); return st.TxStats.GetPageAlloc() }
			before := pages()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := range b.N {
				if err := s.AppendChanges(ctx, []twin.TimelineChunk{{Bucket: int64(i / 60), Key: uint64(i), Data: blob}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(pages()-before)/float64(b.N)/float64(size), "page_bytes/byte")
		})
	}
}
