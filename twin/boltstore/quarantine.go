package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
	bolt "go.etcd.io/bbolt"
)

var _ twin.Quarantiner = (*Store)(nil)

// quarantineBucket holds records set aside: writes the writer could not
// store and records found undecodable at load. Keys are the bucket's
// sequence (8 bytes big-endian), so records list in the order they came.
var quarantineBucket = []byte("_quarantine")

// quarantineRec is a quarantine record's stored form. Name and Data are
// []byte (base64 in JSON) so that any bytes survive, NUL and invalid UTF-8
// included.
type quarantineRec struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Layer   string    `json:"layer"`
	Name    []byte    `json:"name"`
	Version uint64    `json:"version,omitempty"`
	Err     string    `json:"error"`
	Data    []byte    `json:"data"`
}

// Quarantine stores records in one transaction.
func (s *Store) Quarantine(ctx context.Context, qs []twin.Quarantined) error {
	if len(qs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putQuarantine(tx, qs) }); err != nil {
		return fmt.Errorf("boltstore: quarantine %d records: %w", len(qs), err)
	}
	return nil
}

func putQuarantine(tx *bolt.Tx, qs []twin.Quarantined) error {
	b := tx.Bucket(quarantineBucket)
	for _, q := range qs {
		at := q.At
		if at.IsZero() {
			at = time.Now()
		}
		v, err := json.Marshal(quarantineRec{At: at.UTC(), Kind: string(q.Kind), Layer: string(q.ID.Layer),
			Name: []byte(q.ID.Name), Version: q.Version, Err: q.Err, Data: q.Data})
		if err != nil {
			return fmt.Errorf("encode %s: %w", q.ID, err)
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(binary.BigEndian.AppendUint64(nil, n), v); err != nil {
			return err
		}
	}
	return nil
}

// Quarantined lists quarantine records, oldest first.
func (s *Store) Quarantined(ctx context.Context, limit int) ([]twin.Quarantined, error) {
	var out []twin.Quarantined
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(quarantineBucket).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			var r quarantineRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			out = append(out, twin.Quarantined{Kind: twin.QuarantineKind(r.Kind), ID: twin.NewID(twin.Layer(r.Layer), string(r.Name)),
				Version: r.Version, Err: r.Err, At: r.At, Data: r.Data})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list quarantine: %w", err)
	}
	return out, nil
}
