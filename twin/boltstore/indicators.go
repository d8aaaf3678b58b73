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

// Indicator buckets (twin.IndicatorStore). A row's key is region, 0, step,
// 0, then the bucket start as big-endian unix seconds (offset so that order
// of bytes is order of time), so one region's series is one key range; its
// value is the 8-byte big-endian Seq followed by the data.
var (
	indicatorsBucket    = []byte("_indicators")
	indicatorObjsBucket = []byte("_indicator_objects")
)

// metaIndicatorsPos is the meta key of the indicators consumer's position.
const metaIndicatorsPos = "indicators_pos"

func indicatorPrefix(region, step string) []byte {
	k := make([]byte, 0, len(region)+len(step)+10)
	k = append(k, region...)
	k = append(k, 0)
	k = append(k, step...)
	return append(k, 0)
}

func indicatorKey(region, step string, start time.Time) []byte {
	return binary.BigEndian.AppendUint64(indicatorPrefix(region, step), uint64(start.Unix())^(1<<63))
}

// PutIndicators writes rows (a stored row with a higher Seq wins), object
// summaries and the position in one transaction.
func (s *Store) PutIndicators(ctx context.Context, rows []twin.IndicatorRow, objs map[string][]byte, pos uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(indicatorsBucket)
		for _, r := range rows {
			k := indicatorKey(r.Region, r.Step, r.Start)
			if old := b.Get(k); len(old) >= 8 && binary.BigEndian.Uint64(old) > r.Seq {
				continue
			}
			v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(r.Data)), r.Seq)
			if err := b.Put(k, append(v, r.Data...)); err != nil {
				return markBadKey(err)
			}
		}
		ob := tx.Bucket(indicatorObjsBucket)
		for id, v := range objs {
			var err error
			if v == nil {
				err = ob.Delete([]byte(id))
			} else {
				err = ob.Put([]byte(id), bytes.Clone(v))
			}
			if err != nil {
				return markBadKey(err)
			}
		}
		return tx.Bucket(metaBucket).Put([]byte(metaIndicatorsPos), binary.BigEndian.AppendUint64(nil, pos))
	})
	if err != nil {
		return fmt.Errorf("boltstore: put indicators (%d rows, %d objects): %w", len(rows), len(objs), err)
	}
	return nil
}

// Indicators returns one region's rows of one step in [from, to).
func (s *Store) Indicators(ctx context.Context, region, step string, from, to time.Time) ([]twin.IndicatorRow, error) {
	var out []twin.IndicatorRow
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(indicatorsBucket).Cursor()
		prefix := indicatorPrefix(region, step)
		end := indicatorKey(region, step, to)
		for k, v := c.Seek(indicatorKey(region, step, from)); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, end) < 0; k, v = c.Next() {
			if len(v) < 8 || len(k) != len(prefix)+8 {
				continue
			}
			sec := int64(binary.BigEndian.Uint64(k[len(prefix):]) ^ (1 << 63))
			out = append(out, twin.IndicatorRow{Region: region, Step: step, Start: time.Unix(sec, 0).UTC(),
				Seq: binary.BigEndian.Uint64(v), Data: bytes.Clone(v[8:])})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: indicators of %s: %w", region, err)
	}
	return out, nil
}

// IndicatorState returns the stored position and object summaries.
func (s *Store) IndicatorState(ctx context.Context) (uint64, map[string][]byte, error) {
	var pos uint64
	objs := map[string][]byte{}
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get([]byte(metaIndicatorsPos)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return tx.Bucket(indicatorObjsBucket).ForEach(func(k, v []byte) error {
			objs[string(k)] = bytes.Clone(v)
			return ctx.Err()
		})
	})
	if err != nil {
		return 0, nil, fmt.Errorf("boltstore: indicator state: %w", err)
	}
	return pos, objs, nil
}
