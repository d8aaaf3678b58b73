package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

// historyPrefix is "layer/name\x00"; names never contain control characters,
// so one object's samples are one contiguous key range.
func historyPrefix(id twin.ID) []byte {
	p := make([]byte, 0, len(id.Layer)+len(id.Name)+10)
	p = append(p, id.Layer...)
	p = append(p, '/')
	p = append(p, id.Name...)
	return append(p, 0)
}

// tsKey orders times as unsigned big-endian: the sign bit is flipped so
// times before 1970 sort first.
func tsKey(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano())^(1<<63))
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[len(k)-8:])^(1<<63))).UTC()
}

// AppendHistory records samples in one transaction; the key is the object
// and ts, so a re-appended sample overwrites itself and is stored once.
func (s *Store) AppendHistory(ctx context.Context, ss []twin.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(historyBucket)
		for _, sm := range ss {
			v, err := encodeSample(nil, sm)
			if err != nil {
				return fmt.Errorf("%s: %w", sm.ID, err)
			}
			if err := b.Put(tsKey(historyPrefix(sm.ID), sm.Time), v); err != nil {
				return fmt.Errorf("%s: %w", sm.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: append %d samples: %w", len(ss), err)
	}
	return nil
}

// History returns an object's samples with from <= ts < to, oldest first.
func (s *Store) History(ctx context.Context, id twin.ID, from, to time.Time, limit int) ([]twin.Sample, error) {
	prefix := historyPrefix(id)
	start := prefix
	if !from.IsZero() {
		start = tsKey(bytes.Clone(prefix), from)
	}
	var end []byte // nil: to the end of the object's range
	if !to.IsZero() {
		end = tsKey(bytes.Clone(prefix), to)
	}
	var out []twin.Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(historyBucket).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
			if end != nil && bytes.Compare(k, end) >= 0 {
				break
			}
			sm, err := decodeSample(id, keyTime(k), v)
			if err != nil {
				return fmt.Errorf("%x: %w", k, err)
			}
			out = append(out, sm)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: history %s: %w", id, err)
	}
	return out, nil
}
