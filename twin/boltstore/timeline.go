package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

// Timeline buckets (twin.Timeline), created on first write; a store that
// never recorded reads them as empty.
//
//	_tl_changes   bucket(8) key(8)            -> min(8) max(8) blob, or a bucket
//	                                             holding it under chunkValue (bigChunk)
//	_tl_ckpt      at(8) cell(4)               -> blob (cell ckptMarker: empty, marks the checkpoint)
//	_tl_versions  layer/name 0x00 at(8) seq(8) -> blob
//
// Times are sortable: Unix ns with the sign bit flipped, big-endian.
var (
	tlChanges  = []byte("_tl_changes")
	tlCkpt     = []byte("_tl_ckpt")
	tlVersions = []byte("_tl_versions")
)

const ckptMarker = math.MaxUint32 - 1

// bigChunk is the size from which a change chunk is kept in a bucket of
// its own, under chunkValue, instead of as a value of _tl_changes. bbolt
// never splits a leaf of four entries or fewer, however large, and
// rewrites a leaf whole when a key is added to it: as plain values, each
// flush's chunk (a megabyte at 100k updates/s) rewrote the three before it
// too, four times the bytes (36 MB of pages for 8 MB of 200-KB chunks; a
// chunk in its own bucket is written once, 9 MB), the recorder's store
// write was ~4 % of the server's CPU (issue 16 goal 1). Small chunks stay
// plain values: a bucket costs a page.
//
// A server built before this reads neither such chunks (its replay misses
// them) nor prunes them (the prune fails): see the README's "Upgrading".
const bigChunk = 2048

var chunkValue = []byte{0}

var _ twin.Timeline = (*Store)(nil)

func i64Key(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63)) }
func keyI64(b []byte) int64           { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// AppendChanges implements twin.Timeline.
func (s *Store) AppendChanges(ctx context.Context, chunks []twin.TimelineChunk) error {
	if len(chunks) == 0 {
		return nil
	}
	// Each value is the chunk's time range then its data, all of them in
	// one buffer reused from flush to flush (txBuf).
	size := 0
	for _, c := range chunks {
		size += 16 + len(c.Data)
	}
	vals := s.tlChunks.take()
	if cap(vals) < size {
		vals = make([]byte, 0, size)
	}
	defer func() { s.tlChunks.give(vals) }()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(tlChanges)
		if err != nil {
			return err
		}
		earliest := int64(math.MaxInt64)
		vs := vals[:0]
		for _, c := range chunks {
			k := binary.BigEndian.AppendUint64(i64Key(nil, c.Bucket), c.Key)
			v0 := len(vs)
			vs = append(i64Key(i64Key(vs, c.Min), c.Max), c.Data...) // within cap: sized above
			if err := putChunk(b, k, vs[v0:len(vs):len(vs)]); err != nil {
				return err
			}
			earliest = min(earliest, c.Min)
		}
		ck := tx.Bucket(tlCkpt)
		if ck == nil {
			return nil
		}
		cur := ck.Cursor()
		for k, _ := cur.Seek(i64Key(nil, earliest)); k != nil; k, _ = cur.Seek(i64Key(nil, earliest)) {
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: append timeline: %w", err)
	}
	return nil
}

// ScanChanges implements twin.Timeline.
func (s *Store) ScanChanges(ctx context.Context, fromBucket, toBucket int64, fn func(twin.TimelineChunk) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(tlChanges)
		if b == nil {
			return nil
		}
		cur := b.Cursor()
		end := i64Key(nil, toBucket)
		for k, v := cur.Seek(i64Key(nil, fromBucket)); k != nil && bytes.Compare(k[:8], end) <= 0; k, v = cur.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if v == nil { // a big chunk's bucket
				if cb := b.Bucket(k); cb != nil {
					v = cb.Get(chunkValue)
				}
			}
			if len(k) != 16 || len(v) < 16 {
				continue
			}
			c := twin.TimelineChunk{Bucket: keyI64(k), Key: binary.BigEndian.Uint64(k[8:]),
				Min: keyI64(v), Max: keyI64(v[8:]), Data: v[16:]}
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutCheckpoint implements twin.Timeline.
func (s *Store) PutCheckpoint(ctx context.Context, at int64, cells map[uint32][]byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(tlCkpt)
		if err != nil {
			return err
		}
		pre := i64Key(nil, at)
		cur := b.Cursor()
		for k, _ := cur.Seek(pre); k != nil && bytes.HasPrefix(k, pre); k, _ = cur.Seek(pre) {
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		for cell, data := range cells {
			if err := b.Put(binary.BigEndian.AppendUint32(bytes.Clone(pre), cell), data); err != nil {
				return err
			}
		}
		return b.Put(binary.BigEndian.AppendUint32(pre, ckptMarker), []byte{})
	})
	if err != nil {
		return fmt.Errorf("boltstore: put checkpoint: %w", err)
	}
	return nil
}

// LastCheckpoint implements twin.Timeline.
func (s *Store) LastCheckpoint(ctx context.Context, at int64) (t int64, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(tlCkpt)
		if b == nil {
			return nil
		}
		cur := b.Cursor()
		var k []byte
		if at == math.MaxInt64 {
			k, _ = cur.Last()
		} else if k, _ = cur.Seek(i64Key(nil, at+1)); k == nil {
			k, _ = cur.Last()
		} else {
			k, _ = cur.Prev()
		}
		if len(k) == 12 {
			t, ok = keyI64(k), true
		}
		return nil
	})
	return t, ok, err
}

// ScanCheckpoint implements twin.Timeline.
func (s *Store) ScanCheckpoint(ctx context.Context, at int64, cells []uint32, fn func(uint32, []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(tlCkpt)
		if b == nil {
			return nil
		}
		pre := i64Key(nil, at)
		if cells != nil {
			for _, c := range cells {
				if v := b.Get(binary.BigEndian.AppendUint32(bytes.Clone(pre), c)); len(v) > 0 {
					if err := fn(c, v); err != nil {
						return err
					}
				}
			}
			return nil
		}
		cur := b.Cursor()
		for k, v := cur.Seek(pre); k != nil && bytes.HasPrefix(k, pre); k, v = cur.Next() {
			if len(k) != 12 || len(v) == 0 {
				continue
			}
			if err := fn(binary.BigEndian.Uint32(k[8:]), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func versionPrefix(id twin.ID) []byte {
	return append([]byte(id.String()), 0)
}

// PutVersions implements twin.Timeline.
func (s *Store) PutVersions(ctx context.Context, vs []twin.TimelineVersion) error {
	if len(vs) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(tlVersions)
		if err != nil {
			return err
		}
		for _, v := range vs {
			k := binary.BigEndian.AppendUint64(i64Key(versionPrefix(v.ID), v.At), v.Seq)
			if err := b.Put(k, bytes.Clone(v.Data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: put versions: %w", err)
	}
	return nil
}

// VersionAt implements twin.Timeline.
func (s *Store) VersionAt(ctx context.Context, id twin.ID, at int64) (v twin.TimelineVersion, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(tlVersions)
		if b == nil {
			return nil
		}
		pre := versionPrefix(id)
		cur := b.Cursor()
		var k, val []byte
		if at == math.MaxInt64 {
			k, _ = cur.Seek(append(bytes.Clone(pre), 0xff))
		} else {
			k, _ = cur.Seek(i64Key(bytes.Clone(pre), at+1))
		}
		if k == nil {
			k, val = cur.Last()
		} else {
			k, val = cur.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, pre) || len(k) != len(pre)+16 {
			return nil
		}
		v = twin.TimelineVersion{ID: id, At: keyI64(k[len(pre):]), Seq: binary.BigEndian.Uint64(k[len(pre)+8:]), Data: bytes.Clone(val)}
		ok = true
		return nil
	})
	return v, ok, err
}

// PruneTimeline implements twin.Timeline.
func (s *Store) PruneTimeline(ctx context.Context, changesBefore, checkpointsBefore, versionsBefore int64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, p := range []struct {
			name   []byte
			before int64
		}{{tlChanges, changesBefore}, {tlCkpt, checkpointsBefore}} {
			b := tx.Bucket(p.name)
			if b == nil {
				continue
			}
			end := i64Key(nil, p.before)
			cur := b.Cursor()
			for k, v := cur.First(); k != nil && bytes.Compare(k[:8], end) < 0; k, v = cur.First() {
				var err error
				if v == nil { // a big chunk's bucket
					err = b.DeleteBucket(k)
				} else {
					err = cur.Delete()
				}
				if err != nil {
					return err
				}
			}
		}
		b := tx.Bucket(tlVersions)
		if b == nil {
			return nil
		}
		// Per object, every version before the cut but the newest one.
		var drop [][]byte
		var prev []byte // the previous key, when it was before the cut
		cur := b.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			if len(k) < 17 {
				continue
			}
			obj := k[:len(k)-16]
			before := keyI64(k[len(k)-16:]) < versionsBefore
			if prev != nil && bytes.Equal(prev[:len(prev)-16], obj) && before {
				drop = append(drop, prev)
			}
			prev = nil
			if before {
				prev = bytes.Clone(k)
			}
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: prune timeline: %w", err)
	}
	return nil
}

// putChunk stores one change chunk's value v at k: in a bucket of its own
// when it is big (bigChunk), else as a plain value. What k held before (a
// flush retried after a failed commit rewrites its chunks, maybe at
// another size) goes first.
func putChunk(b *bolt.Bucket, k, v []byte) error {
	if b.Bucket(k) != nil {
		if err := b.DeleteBucket(k); err != nil {
			return err
		}
	}
	if len(v) < bigChunk {
		return b.Put(k, v)
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	cb, err := b.CreateBucket(k)
	if err != nil {
		return err
	}
	return cb.Put(chunkValue, v)
}
