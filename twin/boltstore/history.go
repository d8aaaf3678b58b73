package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"time"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

// History layout. Samples are keyed chunk-major, one sample a key before
// groups (below):
//
//	chunk (8 bytes BE) + "layer/name\x00" + ts (8 bytes BE)
//
// where chunk is the sample time divided by the file's history chunk
// (Options.HistoryChunk, fixed when the file is created). Why: bbolt copies
// every page a transaction touches. Keyed object-major ("layer/name\x00" +
// ts, the original layout, still read from historyBucket), a flush of N
// samples from N moving objects touched N leaf pages spread over the whole
// history, so each commit rewrote megabytes that grew with the history
// (26-34% of server CPU at 50,000 msgs/s). Chunk-major, a flush touches only
// the pages of the current chunk(s), near the end of the tree, whatever the
// history's size. A query for one object seeks once per chunk in its time
// range that holds any sample (empty chunks are skipped).
var chunkBucket = []byte("_history_chunked")

// metaHistoryChunk holds the file's chunk length in ns (8 bytes BE).
const metaHistoryChunk = "_history_chunk_ns"

// DefaultHistoryChunk is the history chunk of new files: at 50,000 samples/s
// a chunk is a few MB, so a 200 ms flush touches a few hundred pages, and a
// one-hour query makes at most 3,600 seeks.
const DefaultHistoryChunk = time.Second

// historyPrefix is "layer/name\x00"; names never contain control characters,
// so one object's samples are one contiguous key range.
func historyPrefix(id twin.ID) []byte {
	p := make([]byte, 0, len(id.Layer)+len(id.Name)+10)
	p = append(p, id.Layer...)
	p = append(p, '/')
	p = append(p, id.Name...)
	return append(p, 0)
}

// tsBits orders times as unsigned: the sign bit is flipped so times before
// 1970 sort first.
func tsBits(t time.Time) uint64 { return uint64(t.UnixNano()) ^ (1 << 63) }

// tsKey appends the big-endian tsBits.
func tsKey(b []byte, t time.Time) []byte { return binary.BigEndian.AppendUint64(b, tsBits(t)) }

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[len(k)-8:])^(1<<63))).UTC()
}

func (s *Store) chunkOf(t time.Time) uint64 { return tsBits(t) / s.chunk }

// Since a file's history holds groups, a flush writes one value per
// object per chunk it has samples in (a group), not one per sample:
//
//	chunk (8 bytes BE) + "layer/name\x00" + min ts (8 bytes BE) + write seq (8 bytes BE)
//
// whose value is the group's samples, each a uvarint of its ts less the
// group's min ts (both as tsBits), a uvarint length and the sample record.
// Why: a bbolt Put is a walk down from the root and an insert into a leaf
// that shifts the leaf's entries, and at 50,000 updates a second from
// 5,000 vehicles a flush (1 s apart under load) has ~10 samples of each in
// a 1 s chunk: one Put per sample was ~7 % of the server's CPU (issue 16
// goal 1). The write seq is the chunk bucket's sequence, one per
// transaction: a sample written again in a later flush (a retried batch,
// telemetry applied again after a crash) lands in another group, and a
// reader keeps, of the samples of one object at one ts, the one of the
// highest write seq, the last of its group: the last write wins, as when
// a key per sample overwrote itself. Keys of one sample each (chunk +
// prefix + ts, written before groups) are still read, as write seq 0.
const groupKeyTail = 16

// AppendHistory records samples in one transaction; a sample appended
// again (same object and ts) is stored once, as its last write.
func (s *Store) AppendHistory(ctx context.Context, ss []twin.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	vals := s.histVals.take()
	err := s.db.Update(func(tx *bolt.Tx) error { return s.putSamples(tx, ss, &vals, &pacer{}) })
	s.histVals.give(vals)
	if err != nil {
		return fmt.Errorf("boltstore: append %d samples: %w", len(ss), err)
	}
	return nil
}

// putSamples writes samples as groups, in key order (each leaf page is
// visited once, front to back). Keys and values live in arenas that bbolt
// may keep until commit: a few allocations per batch, not per sample.
// The values go in *vals (taken from histVals by the caller, grown here
// when short, given back by the caller after Update returns).
func (s *Store) putSamples(tx *bolt.Tx, ss []twin.Sample, buf *[]byte, pace *pacer) error {
	if len(ss) == 0 {
		return nil
	}
	b := tx.Bucket(chunkBucket)
	wseq, err := b.NextSequence()
	if err != nil {
		return err
	}
	// The groups, each a list of its samples in the order given (first,
	// next), found by a map rather than by sorting the samples' keys
	// (that sort was most of putSamples once groups had made the Puts
	// few); then the groups sorted by key. The map is keyed by a 64-bit
	// hash of the group (chunk, layer, name): a map of two strings and a
	// number, hashed and compared field by field, was a fifth of
	// putSamples when a flush holds several samples of each object (the
	// geofenced-writes benchmark: 5,000 vehicles, six samples each). Two
	// groups of one hash (checked against the group's first sample) go to
	// a map of the full key.
	type groupOf struct {
		chunk uint64
		id    twin.ID
	}
	type group struct {
		k           []byte // chunk + prefix
		first, last int32
		minTs       uint64
	}
	at := make(map[uint64]int32, len(ss)/4)
	var clash map[groupOf]int32 // groups whose hash another group has
	var gs []group
	next := make([]int32, len(ss))
	n := 0
	for i := range ss {
		sm := &ss[i]
		chunk := s.chunkOf(sm.Time)
		h := (maphash.String(s.seed, sm.ID.Name) ^ maphash.String(s.seed, string(sm.ID.Layer)) ^ chunk*0x9e3779b97f4a7c15) & s.groupMask
		g, ok := at[h]
		if ok {
			if f := &ss[gs[g].first]; f.ID != sm.ID || s.chunkOf(f.Time) != chunk {
				g, ok = clash[groupOf{chunk, sm.ID}]
				if !ok {
					if clash == nil {
						clash = map[groupOf]int32{}
					}
					clash[groupOf{chunk, sm.ID}] = int32(len(gs))
				}
			}
		} else {
			at[h] = int32(len(gs))
		}
		if !ok {
			g = int32(len(gs))
			gs = append(gs, group{first: int32(i), last: int32(i), minTs: math.MaxUint64})
			n += 8 + len(sm.ID.Layer) + len(sm.ID.Name) + 2 + groupKeyTail
		} else {
			next[gs[g].last] = int32(i)
			gs[g].last = int32(i)
		}
		next[i] = -1
		gs[g].minTs = min(gs[g].minTs, tsBits(sm.Time))
		// Grouping a flush's samples (a map insert or lookup each) was
		// the store writer's longest run, 7-8 ms before the first pause
		// on the fan-out benchmark's busy core; paced, 2.4-3.2 ms.
		pace.tick()
	}
	keys := make([]byte, 0, n)
	for g := range gs {
		sm := &ss[gs[g].first]
		k0 := len(keys)
		keys = binary.BigEndian.AppendUint64(keys, s.chunkOf(sm.Time))
		keys = append(keys, sm.ID.Layer...)
		keys = append(keys, '/')
		keys = append(keys, sm.ID.Name...)
		keys = append(keys, 0)
		keys = binary.BigEndian.AppendUint64(keys, gs[g].minTs)
		keys = binary.BigEndian.AppendUint64(keys, wseq)
		gs[g].k = keys[k0:len(keys):len(keys)]
	}
	slices.SortFunc(gs, func(a, b group) int { return bytes.Compare(a.k, b.k) })
	per := s.sampleBytes.Load()
	if per <= 0 {
		per = 40
	}
	vals := (*buf)[:0]
	if want := len(ss)*int(per) + len(ss)/8*int(per); cap(vals) < want { // an eighth of room more
		vals = make([]byte, 0, want)
	}
	defer func() { *buf = vals }()
	var rec []byte
	// Split full pages at 90%, not bbolt's default 50%: a chunk stops
	// changing once its time has passed, so half-empty pages would stay
	// half empty (the file grew 2.6x faster than the samples at 50%).
	b.FillPercent = 0.9
	for _, g := range gs {
		v0 := len(vals)
		for i := g.first; i >= 0; i = next[i] {
			sm := &ss[i]
			if rec, err = encodeSample(rec[:0], *sm); err != nil {
				return fmt.Errorf("%s: %w: %w", sm.ID, twin.ErrBadData, err)
			}
			vals = binary.AppendUvarint(vals, tsBits(sm.Time)-g.minTs)
			vals = binary.AppendUvarint(vals, uint64(len(rec)))
			vals = append(vals, rec...)
			pace.tick()
		}
		// An arena grown since v0 copied the group's start along; earlier
		// groups keep the old array, which bbolt may still hold.
		if err := b.Put(g.k, vals[v0:len(vals):len(vals)]); err != nil {
			return fmt.Errorf("%q: %w", g.k, markBadKey(err))
		}
	}
	s.sampleBytes.Store(int64(len(vals)/len(ss) + 1))
	return nil
}

// History returns an object's samples with from <= ts < to, oldest first.
func (s *Store) History(ctx context.Context, id twin.ID, from, to time.Time, limit int) ([]twin.Sample, error) {
	prefix := historyPrefix(id)
	var legacy, out []twin.Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if legacy, err = legacyHistory(tx, id, prefix, from, to, limit); err != nil {
			return err
		}
		out, err = s.chunkedHistory(ctx, tx, id, prefix, from, to, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: history %s: %w", id, err)
	}
	if len(legacy) > 0 {
		out = mergeSamples(legacy, out, limit)
	}
	return out, nil
}

// written is a sample read from the chunk bucket with its write order.
type written struct {
	sm   twin.Sample
	wseq uint64
	ord  int
}

func (s *Store) chunkedHistory(ctx context.Context, tx *bolt.Tx, id twin.ID, prefix []byte, from, to time.Time, limit int) ([]twin.Sample, error) {
	var out []twin.Sample
	var ch, last uint64 = 0, math.MaxUint64
	var lo, end uint64 = 0, math.MaxUint64 // tsBits bounds: lo <= ts < end
	if !from.IsZero() {
		ch, lo = s.chunkOf(from), tsBits(from)
	}
	if !to.IsZero() {
		last, end = s.chunkOf(to), tsBits(to)
	}
	c := tx.Bucket(chunkBucket).Cursor()
	seek := make([]byte, 0, 8+len(prefix))
	var got []written // one chunk's samples of the object
	for done := false; ch <= last && !done; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seek = binary.BigEndian.AppendUint64(seek[:0], ch)
		seek = append(seek, prefix...)
		// Not from's ts: a group that begins before from may hold later
		// samples.
		k, v := c.Seek(seek)
		if k == nil {
			break
		}
		kc := binary.BigEndian.Uint64(k)
		if kc > ch { // nothing more in ch at or after our object: jump ahead
			ch = kc
			continue
		}
		got = got[:0]
		for ; k != nil && bytes.HasPrefix(k, seek); k, v = c.Next() {
			tail := k[len(seek):]
			if len(tail) != 8 && len(tail) != groupKeyTail {
				continue
			}
			// Keys run by (min) ts: from one at or past end on, nothing
			// is before to, here or in a later chunk.
			if binary.BigEndian.Uint64(tail) >= end {
				done = true
				break
			}
			if len(tail) == 8 { // one sample, written before groups
				if ts := binary.BigEndian.Uint64(tail); ts >= lo {
					sm, err := decodeSample(id, keyTime(k), v)
					if err != nil {
						return nil, fmt.Errorf("%x: %w", k, err)
					}
					got = append(got, written{sm, 0, len(got)})
				}
				continue
			}
			var err error
			if got, err = readGroup(got, id, binary.BigEndian.Uint64(tail), binary.BigEndian.Uint64(tail[8:]), v, lo, end); err != nil {
				return nil, fmt.Errorf("%x: %w", k, err)
			}
		}
		// By ts; of one ts, the last written.
		slices.SortFunc(got, func(a, b written) int {
			if c := a.sm.Time.Compare(b.sm.Time); c != 0 {
				return c
			}
			if c := cmp.Compare(a.wseq, b.wseq); c != 0 {
				return c
			}
			return cmp.Compare(a.ord, b.ord)
		})
		for i := range got {
			if i+1 < len(got) && got[i+1].sm.Time.Equal(got[i].sm.Time) {
				continue
			}
			out = append(out, got[i].sm)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if ch == math.MaxUint64 {
			break
		}
		ch++
	}
	return out, nil
}

// readGroup appends the samples of a group value with lo <= ts < end.
// errGroupTs is a group whose sample's ts delta overflows its min ts.
var errGroupTs = errors.New("history group: sample ts beyond the range")

func readGroup(got []written, id twin.ID, minTs, wseq uint64, v []byte, lo, end uint64) ([]written, error) {
	for len(v) > 0 {
		d, n := binary.Uvarint(v)
		if n <= 0 {
			return got, errShort
		}
		v = v[n:]
		l, n := binary.Uvarint(v)
		if n <= 0 || uint64(len(v)-n) < l {
			return got, errShort
		}
		rec := v[n : n+int(l)]
		v = v[n+int(l):]
		ts := minTs + d
		if ts < minTs {
			return got, errGroupTs // a corrupt delta: said, not skipped
		}
		if ts < lo || ts >= end {
			continue
		}
		sm, err := decodeSample(id, time.Unix(0, int64(ts^(1<<63))).UTC(), rec)
		if err != nil {
			return got, err
		}
		got = append(got, written{sm, wseq, len(got)})
	}
	return got, nil
}

// legacyHistory reads the original object-major bucket (files written
// before the chunked layout); new samples never go there.
func legacyHistory(tx *bolt.Tx, id twin.ID, prefix []byte, from, to time.Time, limit int) ([]twin.Sample, error) {
	b := tx.Bucket(historyBucket)
	if b == nil {
		return nil, nil
	}
	start := prefix
	if !from.IsZero() {
		start = tsKey(bytes.Clone(prefix), from)
	}
	var end []byte // nil: to the end of the object's range
	if !to.IsZero() {
		end = tsKey(bytes.Clone(prefix), to)
	}
	var out []twin.Sample
	c := b.Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		sm, err := decodeSample(id, keyTime(k), v)
		if err != nil {
			return nil, fmt.Errorf("%x: %w", k, err)
		}
		out = append(out, sm)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// mergeSamples merges two time-ordered lists; a time in both is kept once
// (b's, the newer write).
func mergeSamples(a, b []twin.Sample, limit int) []twin.Sample {
	out := make([]twin.Sample, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].Time.Before(b[0].Time):
			out, a = append(out, a[0]), a[1:]
		case len(a) > 0 && a[0].Time.Equal(b[0].Time):
			out, a, b = append(out, b[0]), a[1:], b[1:]
		default:
			out, b = append(out, b[0]), b[1:]
		}
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}
