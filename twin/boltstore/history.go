package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

// History layout. Samples are keyed chunk-major:
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

// AppendHistory records samples in one transaction; the key is the object
// and ts, so a re-appended sample overwrites itself and is stored once.
func (s *Store) AppendHistory(ctx context.Context, ss []twin.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return s.putSamples(tx, ss) })
	if err != nil {
		return fmt.Errorf("boltstore: append %d samples: %w", len(ss), err)
	}
	return nil
}

// putSamples writes samples in key order (each leaf page is visited once,
// front to back). Keys and values live in two arenas that bbolt may keep
// until commit: two allocations per batch instead of two per sample.
func (s *Store) putSamples(tx *bolt.Tx, ss []twin.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	type kv struct{ k, v []byte }
	n := 0
	for i := range ss {
		n += 8 + len(ss[i].ID.Layer) + len(ss[i].ID.Name) + 2 + 8
	}
	keys := make([]byte, 0, n)
	vals := make([]byte, 0, len(ss)*33)
	recs := make([]kv, len(ss))
	var err error
	for i := range ss {
		sm := &ss[i]
		k0 := len(keys)
		keys = binary.BigEndian.AppendUint64(keys, s.chunkOf(sm.Time))
		keys = append(keys, sm.ID.Layer...)
		keys = append(keys, '/')
		keys = append(keys, sm.ID.Name...)
		keys = append(keys, 0)
		keys = tsKey(keys, sm.Time)
		v0 := len(vals)
		if cap(vals)-len(vals) < 64 {
			vals = make([]byte, 0, max(4096, (len(ss)-i)*33)) // earlier values keep the old arena
			v0 = 0
		}
		vals, err = encodeSample(vals, *sm)
		if err != nil {
			return fmt.Errorf("%s: %w: %w", sm.ID, twin.ErrBadData, err)
		}
		recs[i] = kv{keys[k0:len(keys):len(keys)], vals[v0:len(vals):len(vals)]}
	}
	slices.SortFunc(recs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	b := tx.Bucket(chunkBucket)
	// Split full pages at 90%, not bbolt's default 50%: a chunk stops
	// changing once its time has passed, so half-empty pages would stay
	// half empty (the file grew 2.6x faster than the samples at 50%).
	b.FillPercent = 0.9
	for _, r := range recs {
		if err := b.Put(r.k, r.v); err != nil {
			return fmt.Errorf("%q: %w", r.k, markBadKey(err))
		}
	}
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

func (s *Store) chunkedHistory(ctx context.Context, tx *bolt.Tx, id twin.ID, prefix []byte, from, to time.Time, limit int) ([]twin.Sample, error) {
	var out []twin.Sample
	var ch, last uint64 = 0, math.MaxUint64
	if !from.IsZero() {
		ch = s.chunkOf(from)
	}
	if !to.IsZero() {
		last = s.chunkOf(to)
	}
	var end []byte // nil: unbounded
	if !to.IsZero() {
		end = tsKey(nil, to)
	}
	c := tx.Bucket(chunkBucket).Cursor()
	seek := make([]byte, 0, 8+len(prefix)+8)
	for first := true; ch <= last; first = false {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seek = binary.BigEndian.AppendUint64(seek[:0], ch)
		seek = append(seek, prefix...)
		if first && !from.IsZero() {
			seek = tsKey(seek, from)
		}
		k, v := c.Seek(seek)
		if k == nil {
			break
		}
		kc := binary.BigEndian.Uint64(k)
		if kc > ch { // nothing more in ch at or after our object: jump ahead
			ch = kc
			continue
		}
		for ; k != nil && len(k) == 8+len(prefix)+8 && bytes.HasPrefix(k, seek[:8+len(prefix)]); k, v = c.Next() {
			if end != nil && bytes.Compare(k[len(k)-8:], end) >= 0 {
				return out, nil
			}
			sm, err := decodeSample(id, keyTime(k), v)
			if err != nil {
				return nil, fmt.Errorf("%x: %w", k, err)
			}
			out = append(out, sm)
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
