package timeline

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/citytwin/citytwin/twin"
)

// buildStreamed writes the checkpoint at to from the stored one at prev and
// the changes in (prev, to], one cell of prev at a time, and returns the
// number of records it holds. It holds the window's changes (one record
// per object changed) and one cell, not the whole state: a build from the
// state in memory held ~450 MB of heap at a million vehicles, which the
// server kept as RSS (issue 16 goal 4). The result is the in-memory
// build's: per object the record with the highest seq (ties to the window,
// as ckptState.merge), tombstones kept.
func (r *Recorder) buildStreamed(ctx context.Context, prev, to int64) (int, error) {
	win := &ckptState{at: prev, recs: map[twin.ID]*twin.TimelineRecord{}}
	if err := win.advance(ctx, r.tl, to, int64(r.opts.Bucket), nil); err != nil {
		return 0, err
	}
	// First pass: a window record with a lower seq than the checkpoint's
	// record of its object (telemetry applied out of time order across
	// prev) loses to it. Its object may sit in any cell, so this pass
	// precedes the writing one.
	if len(win.recs) > 0 {
		err := r.tl.ScanCheckpoint(ctx, prev, nil, func(_ uint32, blob []byte) error {
			return twin.DecodeRecords(blob, func(rec *twin.TimelineRecord) error {
				if w, ok := win.recs[rec.ID]; ok && w.Seq < rec.Seq {
					delete(win.recs, rec.ID)
				}
				return nil
			})
		})
		if err != nil {
			return 0, fmt.Errorf("timeline: read checkpoint: %w", err)
		}
	}
	byCell := map[uint32][]*twin.TimelineRecord{}
	for _, w := range win.recs {
		c := w.Cell()
		byCell[c] = append(byCell[c], w)
	}
	out := map[uint32][]byte{}
	var rs []twin.TimelineRecord
	n := 0
	emit := func(cell uint32) error {
		for _, w := range byCell[cell] {
			rs = append(rs, *w)
		}
		delete(byCell, cell)
		if len(rs) == 0 {
			return nil
		}
		slices.SortFunc(rs, cmpObject) // one order for a state, and smaller
		b, err := twin.EncodeRecords(rs)
		if err != nil {
			return err
		}
		if old, ok := out[cell]; ok {
			return fmt.Errorf("timeline: checkpoint %d holds cell %d twice (%d bytes before)", prev, cell, len(old))
		}
		out[cell], n = b, n+len(rs)
		clear(rs)
		rs = rs[:0]
		return nil
	}
	err := r.tl.ScanCheckpoint(ctx, prev, nil, func(cell uint32, blob []byte) error {
		// A cell the window leaves as it was is copied as it is (most
		// of them when little moved): no records held, nothing encoded.
		kept, same := 0, len(byCell[cell]) == 0
		if same {
			err := twin.DecodeRecords(blob, func(rec *twin.TimelineRecord) error {
				if _, ok := win.recs[rec.ID]; ok {
					same = false
				}
				kept++
				return nil
			})
			if err != nil {
				return err
			}
		}
		if same {
			if _, ok := out[cell]; ok {
				return fmt.Errorf("timeline: checkpoint %d holds cell %d twice", prev, cell)
			}
			out[cell], n = bytes.Clone(blob), n+kept
			return nil
		}
		err := twin.DecodeRecords(blob, func(rec *twin.TimelineRecord) error {
			if _, ok := win.recs[rec.ID]; ok {
				return nil // the window holds its newer state
			}
			c := *rec
			c.Data = bytes.Clone(rec.Data) // the decoder reuses its buffer
			rs = append(rs, c)
			return nil
		})
		if err != nil {
			return err
		}
		return emit(cell)
	})
	if err != nil {
		return 0, fmt.Errorf("timeline: read checkpoint: %w", err)
	}
	for _, cell := range slices.Sorted(maps.Keys(byCell)) {
		if err := emit(cell); err != nil {
			return 0, err
		}
	}
	if err := r.tl.PutCheckpoint(ctx, to, out); err != nil {
		return 0, err
	}
	return n, nil
}
