package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
	bolt "go.etcd.io/bbolt"
)

// TestChunkedHistoryMatchesScan writes samples of several objects spread
// over many small chunks (with gaps) in shuffled batches, and checks every
// History query against a brute-force filter of what was written; again
// with putSamples' group hash cut to one bit and to none, so groups share
// hashes (its clash map) or all do.
func TestChunkedHistoryMatchesScan(t *testing.T) {
	for _, mask := range []uint64{math.MaxUint64, 1, 0} {
		t.Run(fmt.Sprintf("mask=%x", mask), func(t *testing.T) { chunkedHistoryMatchesScan(t, mask) })
	}
}

func chunkedHistoryMatchesScan(t *testing.T, mask uint64) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{HistoryChunk: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.groupMask = mask
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	ids := []twin.ID{twin.NewID(twin.Vehicles, "a"), twin.NewID(twin.Vehicles, "ab"),
		twin.NewID(twin.Vehicles, "b"), twin.NewID(twin.Workers, "a")}
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[twin.ID][]twin.Sample{}
	var all []twin.Sample
	for i := 0; i < 2000; i++ {
		id := ids[rng.IntN(len(ids))]
		// Bursts with gaps of empty chunks; times before 1970 too.
		ts := t0.Add(time.Duration(i/50)*time.Second + time.Duration(i%50)*time.Millisecond)
		if i < 20 {
			ts = time.Unix(-1000, int64(i)*int64(time.Millisecond)).UTC()
		}
		sm := twin.Sample{ID: id, Time: ts, HasPos: true, Pos: orb.Point{106, 29 + float64(i)*1e-6},
			HasSpeed: i%2 == 0}
		if sm.HasSpeed {
			sm.SpeedKmh = float64(i)
		}
		all = append(all, sm)
		want[id] = append(want[id], sm)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for i := 0; i < len(all); i += 300 {
		if err := s.AppendHistory(ctx, all[i:min(i+300, len(all))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendHistory(ctx, all[:100]); err != nil { // idempotent
		t.Fatal(err)
	}
	end := t0.Add(41 * time.Second)
	bounds := []time.Time{{}, time.Unix(-1000, 5e6).UTC(), t0, t0.Add(3*time.Second + 7*time.Millisecond), t0.Add(20 * time.Second), end}
	for _, id := range ids {
		exp := want[id]
		slices.SortFunc(exp, func(a, b twin.Sample) int { return a.Time.Compare(b.Time) })
		for _, from := range bounds {
			for _, to := range bounds {
				for _, limit := range []int{0, 1, 7} {
					var w []twin.Sample
					for _, sm := range exp {
						if (from.IsZero() || !sm.Time.Before(from)) && (to.IsZero() || sm.Time.Before(to)) {
							w = append(w, sm)
						}
					}
					if limit > 0 && len(w) > limit {
						w = w[:limit]
					}
					got, err := s.History(ctx, id, from, to, limit)
					if err != nil {
						t.Fatal(err)
					}
					if !sameSamples(got, w) {
						t.Fatalf("%s [%v, %v) limit %d: got %d samples, want %d", id, from, to, limit, len(got), len(w))
					}
				}
			}
		}
	}
}

// TestLegacyHistoryMerged reads samples from the original object-major
// bucket together with new ones, each time once.
func TestLegacyHistoryMerged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := twin.NewID(twin.Vehicles, "old")
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	mk := func(i int) twin.Sample {
		return twin.Sample{ID: id, Time: t0.Add(time.Duration(i) * time.Second), HasSpeed: true, SpeedKmh: float64(i)}
	}
	err = s.db.Update(func(tx *bolt.Tx) error { // as files before the chunked layout hold them
		for _, i := range []int{0, 2, 4} {
			v, _ := encodeSample(nil, mk(i))
			if err := tx.Bucket(historyBucket).Put(tsKey(historyPrefix(id), mk(i).Time), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory(ctx, []twin.Sample{mk(1), mk(4), mk(5)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.History(ctx, id, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []twin.Sample{mk(0), mk(1), mk(2), mk(4), mk(5)}; !sameSamples(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, _ = s.History(ctx, id, t0.Add(time.Second), time.Time{}, 2); !sameSamples(got, []twin.Sample{mk(1), mk(2)}) {
		t.Fatalf("from 1s limit 2: %v", got)
	}
}

// TestWriteBatch: one call deletes, upserts (older versions refused),
// appends and sets meta; the chunk of a file is kept across reopen.
func TestWriteBatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{HistoryChunk: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string, v uint64) *twin.Feature {
		return &twin.Feature{ID: twin.NewID(twin.Vehicles, name), Version: v, Geometry: orb.Point{106, 29},
			Props: twin.NewProps(map[string]any{"v": float64(v)})}
	}
	if err := s.Upsert(ctx, []*twin.Feature{f("a", 1), f("gone", 1), f("newer", 9)}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	ss := []twin.Sample{{ID: f("a", 0).ID, Time: t0, HasSpeed: true, SpeedKmh: 3}}
	var up []*twin.Feature
	for i := 0; i < 500; i++ {
		up = append(up, f(fmt.Sprint("z", 499-i), 1))
	}
	up = append(up, f("a", 2), f("newer", 3))
	if err := s.WriteBatch(ctx, []twin.ID{f("gone", 0).ID}, up, ss, "feed_seq", []byte{7}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{HistoryChunk: time.Hour}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.chunk != uint64(time.Minute) {
		t.Fatalf("chunk %d after reopen, want the file's %d", s.chunk, time.Minute)
	}
	if g, err := s.Get(ctx, f("a", 0).ID); err != nil || g.Version != 2 {
		t.Fatalf("a: %v %v", g, err)
	}
	if g, err := s.Get(ctx, f("newer", 0).ID); err != nil || g.Version != 9 {
		t.Fatalf("newer: %v %v", g, err)
	}
	if _, err := s.Get(ctx, f("gone", 0).ID); err == nil {
		t.Fatal("gone still stored")
	}
	n := 0
	if err := s.Load(ctx, func(*twin.Feature) error { n++; return nil }); err != nil || n != 502 {
		t.Fatalf("loaded %d, %v; want 502", n, err)
	}
	if h, err := s.History(ctx, f("a", 0).ID, time.Time{}, time.Time{}, 0); err != nil || !sameSamples(h, ss) {
		t.Fatalf("history %v %v", h, err)
	}
	if m, err := s.GetMeta(ctx, "feed_seq"); err != nil || string(m) != "\x07" {
		t.Fatalf("meta %q %v", m, err)
	}
}

func sameSamples(a, b []twin.Sample) bool {
	return slices.EqualFunc(a, b, func(x, y twin.Sample) bool {
		return x.ID == y.ID && x.Time.Equal(y.Time) && x.HasPos == y.HasPos && x.Pos == y.Pos &&
			x.HasSpeed == y.HasSpeed && x.SpeedKmh == y.SpeedKmh
	})
}

// TestNewFilePageSize: a file Open creates has PageSize pages, and one
// made with another size keeps it.
func TestNewFilePageSize(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.db.Info().PageSize; got != PageSize {
		t.Fatalf("new file: %d-byte pages, want %d", got, PageSize)
	}
	st.Close()
	old := t.TempDir()
	db, err := bolt.Open(filepath.Join(old, "twin.db"), 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if st, err = Open(old, Options{}); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.db.Info().PageSize; got != 4096 {
		t.Fatalf("a 4 KiB file reopened with %d-byte pages", got)
	}
}

// TestHistoryGroups: a flush writes one key per object and chunk; the
// keys of one sample each that files hold from before groups are read
// with them; of a sample written again (same object and ts), the last
// write is read, once.
func TestHistoryGroups(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{HistoryChunk: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, other := twin.NewID(twin.Vehicles, "v"), twin.NewID(twin.Vehicles, "v2")
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	mk := func(id twin.ID, i int, speed float64) twin.Sample {
		sm := twin.Sample{ID: id, Time: t0.Add(time.Duration(i) * time.Second), HasSpeed: true, SpeedKmh: speed,
			Values: twin.ReadingsOf(map[string]float64{"i": float64(i)})}
		if i%2 == 0 {
			sm.HasPos, sm.Pos = true, orb.Point{106, 29 + float64(i)}
		}
		return sm
	}
	sameSamples := func(a, b []twin.Sample) bool {
		return slices.EqualFunc(a, b, func(x, y twin.Sample) bool {
			return sameSamples([]twin.Sample{x}, []twin.Sample{y}) && x.Values == y.Values
		})
	}
	err = s.db.Update(func(tx *bolt.Tx) error { // one key a sample, as written before groups
		for _, i := range []int{0, 2, 4} {
			v, _ := encodeSample(nil, mk(id, i, float64(i)))
			k := binary.BigEndian.AppendUint64(nil, s.chunkOf(mk(id, i, 0).Time))
			if err := tx.Bucket(chunkBucket).Put(tsKey(append(k, historyPrefix(id)...), mk(id, i, 0).Time), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := func() int {
		n := 0
		_ = s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(chunkBucket).ForEach(func(_, _ []byte) error { n++; return nil })
		})
		return n
	}
	// Out of time order, two objects, one ts again within the batch (the
	// later one wins), a sample the old keys hold again.
	batch := []twin.Sample{mk(id, 5, 5), mk(other, 1, 1), mk(id, 1, 1), mk(id, 4, 40), mk(id, 3, 3), mk(id, 3, 33), mk(id, 70, 70)}
	if err := s.AppendHistory(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if n := keys(); n != 3+3 { // id's chunks 0 and 1, other's chunk 0
		t.Fatalf("%d keys, want 6", n)
	}
	if err := s.AppendHistory(ctx, []twin.Sample{mk(id, 5, 55), mk(id, 6, 6), mk(id, 1, 1)}); err != nil {
		t.Fatal(err)
	}
	want := []twin.Sample{mk(id, 0, 0), mk(id, 1, 1), mk(id, 2, 2), mk(id, 3, 33), mk(id, 4, 40), mk(id, 5, 55), mk(id, 6, 6), mk(id, 70, 70)}
	got, err := s.History(ctx, id, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSamples(got, want) {
		t.Fatalf("got %v,\nwant %v", got, want)
	}
	for _, q := range []struct{ from, to, limit int }{{3, 0, 0}, {3, 6, 0}, {1, 0, 3}, {5, 71, 2}, {6, 70, 0}, {71, 0, 0}, {0, 1, 0}} {
		var from, to time.Time
		var w []twin.Sample
		from = t0.Add(time.Duration(q.from) * time.Second)
		if q.to > 0 {
			to = t0.Add(time.Duration(q.to) * time.Second)
		}
		for _, sm := range want {
			if !sm.Time.Before(from) && (to.IsZero() || sm.Time.Before(to)) && (q.limit == 0 || len(w) < q.limit) {
				w = append(w, sm)
			}
		}
		if got, err := s.History(ctx, id, from, to, q.limit); err != nil || !sameSamples(got, w) {
			t.Fatalf("%+v: got %v, want %v (%v)", q, got, w, err)
		}
	}
	if got, _ := s.History(ctx, other, time.Time{}, time.Time{}, 0); !sameSamples(got, []twin.Sample{mk(other, 1, 1)}) {
		t.Fatalf("other: %v", got)
	}
}

// FuzzReadGroup: any bytes as a group's value either read or fail with an
// error, never panic, and every sample read lies in [lo, end).
func FuzzReadGroup(f *testing.F) {
	f.Add(uint64(1<<63), []byte{0, 1, 0}, uint64(0), uint64(1<<64-1))
	f.Add(uint64(1<<64-2), []byte{5, 0}, uint64(0), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, minTs uint64, v []byte, lo, end uint64) {
		got, err := readGroup(nil, twin.NewID(twin.Vehicles, "v"), minTs, 1, v, lo, end)
		if err != nil {
			return
		}
		for _, w := range got {
			if ts := uint64(w.sm.Time.UnixNano()) ^ (1 << 63); ts < lo || ts >= end {
				t.Fatalf("sample at %d outside [%d, %d)", ts, lo, end)
			}
		}
	})
}

// TestSampleReadingsStoredAsMap: a sample's readings are stored as the
// JSON of a map[string]float64 (what was stored before readings were
// packed), byte for byte, and such bytes read back as the same readings.
func TestSampleReadingsStoredAsMap(t *testing.T) {
	vals := map[string]float64{"sent_ms": 1772366340123, "co2": 412.3, "<&>": -1e-7, "a\u2028": math.Pi}
	sm := twin.Sample{ID: twin.NewID(twin.Devices, "d"), HasSpeed: true, SpeedKmh: 3, Values: twin.ReadingsOf(vals)}
	b, err := encodeSample(nil, sm)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(vals)
	if !bytes.HasSuffix(b, old) {
		t.Fatalf("stored %q, want the map's JSON %s at the end", b, old)
	}
	got, err := decodeSample(sm.ID, sm.Time, b)
	if err != nil || got.Values != sm.Values {
		t.Fatalf("read back %v, %v; want %v", got.Values, err, sm.Values)
	}
}
