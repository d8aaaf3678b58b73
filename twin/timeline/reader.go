package timeline

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// ckptState is the state of the checkpointed layers at time at: per object
// the record with the highest seq at or before at (removals kept as
// tombstones so an older record read later cannot bring an object back).
type ckptState struct {
	at   int64
	recs map[twin.ID]*twin.TimelineRecord
}

// merge keeps rec when it is newer (by seq) than what s holds; Data is
// copied (the decoder reuses its buffer).
func (s *ckptState) merge(rec *twin.TimelineRecord) {
	if cur, ok := s.recs[rec.ID]; ok && cur.Seq > rec.Seq {
		return
	}
	c := *rec
	c.Data = bytes.Clone(rec.Data)
	s.recs[rec.ID] = &c
}

// loadCheckpoint reads the checkpoint at time at (the given cells, nil =
// all; the given layers, nil = all).
func loadCheckpoint(ctx context.Context, tl twin.Timeline, at int64, cells []uint32, layers []twin.Layer) (*ckptState, error) {
	s := &ckptState{at: at, recs: map[twin.ID]*twin.TimelineRecord{}}
	err := tl.ScanCheckpoint(ctx, at, cells, func(_ uint32, blob []byte) error {
		return twin.DecodeRecords(blob, func(rec *twin.TimelineRecord) error {
			if layers == nil || slices.Contains(layers, rec.ID.Layer) {
				s.merge(rec)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("timeline: read checkpoint: %w", err)
	}
	return s, nil
}

// advance applies the changes of the checkpointed layers (or of layers)
// with time in (s.at, to], then sets s.at = to.
func (s *ckptState) advance(ctx context.Context, tl twin.Timeline, to, bucket int64, layers []twin.Layer) error {
	from := int64(math.MinInt64)
	if s.at != math.MinInt64 {
		from = floorTo(s.at+1, bucket)
	}
	err := tl.ScanChanges(ctx, from, floorTo(to, bucket), func(c twin.TimelineChunk) error {
		if c.Max <= s.at || c.Min > to {
			return nil
		}
		return twin.DecodeRecords(c.Data, func(rec *twin.TimelineRecord) error {
			if rec.Time <= s.at || rec.Time > to {
				return nil
			}
			if layers == nil && !isCheckpointed(rec.ID.Layer) || layers != nil && !slices.Contains(layers, rec.ID.Layer) {
				return nil
			}
			s.merge(rec)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("timeline: read changes: %w", err)
	}
	s.at = to
	return nil
}

// encode renders the state as one blob per cell. The records are grouped
// by pointer and copied one cell at a time: a copy of the whole state was
// 128 MB more at the peak of a build at a million vehicles.
func (s *ckptState) encode() (map[uint32][]byte, error) {
	byCell := map[uint32][]*twin.TimelineRecord{}
	for _, rec := range s.recs {
		c := rec.Cell()
		byCell[c] = append(byCell[c], rec)
	}
	out := make(map[uint32][]byte, len(byCell))
	var rs []twin.TimelineRecord
	for c, ps := range byCell {
		// One order for a state (cmpObject's), and smaller.
		slices.SortFunc(ps, func(a, b *twin.TimelineRecord) int {
			if c := cmpID(a.ID, b.ID); c != 0 {
				return c
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
		rs = rs[:0]
		for _, p := range ps {
			rs = append(rs, *p)
		}
		b, err := twin.EncodeRecords(rs)
		if err != nil {
			return nil, err
		}
		out[c] = b
	}
	return out, nil
}

// Reader answers replay queries from the store's timeline and the twin.
// Safe for concurrent use.
type Reader struct {
	tw   *twin.Twin
	tl   twin.Timeline
	opts Options
	m    *readMetrics
}

// NewReader makes a reader; st must implement twin.Timeline, and opts must
// match the recorder's (Bucket).
func NewReader(tw *twin.Twin, st twin.Store, opts Options) (*Reader, error) {
	opts.defaults()
	tl, ok := st.(twin.Timeline)
	if !ok {
		return nil, fmt.Errorf("%w (%T)", ErrNoTimeline, st)
	}
	return &Reader{tw: tw, tl: tl, opts: opts, m: newReadMetrics(opts.Registerer)}, nil
}

// Query selects a snapshot.
type Query struct {
	At      time.Time
	Layers  []twin.Layer // replayable layers (see Replayable)
	BBox    orb.Bound
	HasBBox bool
	// Sees filters by the caller's scope (auth.Principal.Sees); nil sees all.
	Sees func(*twin.Feature) bool
}

// Snapshot returns every object of the query's layers (in its bbox, seen
// by it) as it was at q.At: for the checkpointed layers the nearest
// checkpoint at or before q.At (only the cells in view) plus the changes
// since it; for buildings the twin's current ones in view, each replaced
// by its version at q.At when it changed after q.At. Objects without
// geometry are returned only without a bbox.
func (r *Reader) Snapshot(ctx context.Context, q Query) ([]*twin.Feature, error) {
	start := time.Now()
	at := q.At.UnixNano()
	var out []*twin.Feature
	keep := func(f *twin.Feature) {
		if q.HasBBox && (f.Geometry == nil || !intersects(q.BBox, f.Geometry.Bound())) {
			return
		}
		if q.Sees == nil || q.Sees(f) {
			out = append(out, f)
		}
	}
	var ckLayers []twin.Layer
	slow := false
	for _, l := range q.Layers {
		if isCheckpointed(l) {
			ckLayers = append(ckLayers, l)
		} else if l == twin.Buildings {
			slow = true
		}
	}
	if len(ckLayers) > 0 {
		var cells []uint32
		if q.HasBBox {
			// A record sits in the cell of its bound's centre: widen by a
			// margin for objects reaching into the view from outside.
			cells = twin.CellsOf(q.BBox, 0.02)
		}
		st := &ckptState{at: math.MinInt64, recs: map[twin.ID]*twin.TimelineRecord{}}
		if t, ok, err := r.tl.LastCheckpoint(ctx, at); err != nil {
			return nil, fmt.Errorf("timeline: snapshot: %w", err)
		} else if ok {
			if st, err = loadCheckpoint(ctx, r.tl, t, cells, ckLayers); err != nil {
				return nil, err
			}
		}
		if err := st.advance(ctx, r.tl, at, int64(r.opts.Bucket), ckLayers); err != nil {
			return nil, err
		}
		for _, rec := range st.recs {
			if rec.Removed || rec.Data == nil {
				continue
			}
			if q.HasBBox && (!rec.HasBound || !intersects(q.BBox, rec.Bound)) {
				continue
			}
			f, err := rec.DecodeFeature()
			if err != nil {
				return nil, fmt.Errorf("timeline: snapshot %s: %w", rec.ID, err)
			}
			keep(f)
		}
	}
	if slow {
		if err := r.buildings(ctx, q, at, keep); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b *twin.Feature) int { return cmpID(a.ID, b.ID) })
	r.m.snapshotSeconds.Observe(time.Since(start).Seconds())
	return out, nil
}

func (r *Reader) buildings(ctx context.Context, q Query, at int64, keep func(*twin.Feature)) error {
	var later []*twin.Feature
	visit := func(f *twin.Feature) bool {
		if f.Updated.UnixNano() <= at {
			keep(f)
		} else {
			later = append(later, f)
		}
		return true
	}
	if q.HasBBox {
		r.tw.Search(twin.Buildings, q.BBox, visit)
	} else {
		r.tw.Range(twin.Buildings, visit)
	}
	for _, cur := range later {
		v, ok, err := r.tl.VersionAt(ctx, cur.ID, at)
		if err != nil {
			return fmt.Errorf("timeline: snapshot %s: %w", cur.ID, err)
		}
		if !ok {
			continue // created (imported) after at, or changed in a gap of the recording
		}
		err = twin.DecodeRecords(v.Data, func(rec *twin.TimelineRecord) error {
			f, err := rec.DecodeFeature()
			if err != nil || f == nil {
				return err
			}
			keep(f)
			return nil
		})
		if err != nil {
			return fmt.Errorf("timeline: snapshot %s: %w", cur.ID, err)
		}
	}
	return nil
}

// Change is one recorded change, for replay.
type Change struct {
	Time    time.Time
	Seq     uint64
	ID      twin.ID
	Removed bool
	Feature *twin.Feature // the new state; nil when Removed
}

// Changes returns the recorded changes of the layers with time in
// (from, to] in replay order (time, then seq), buildings' included. The
// caller pages by time.
func (r *Reader) Changes(ctx context.Context, from, to time.Time, layers []twin.Layer) ([]Change, error) {
	lo, hi := from.UnixNano(), to.UnixNano()
	var recs []twin.TimelineRecord
	bucket := int64(r.opts.Bucket)
	err := r.tl.ScanChanges(ctx, floorTo(lo+1, bucket), floorTo(hi, bucket), func(c twin.TimelineChunk) error {
		if c.Max <= lo || c.Min > hi {
			return nil
		}
		return twin.DecodeRecords(c.Data, func(rec *twin.TimelineRecord) error {
			if rec.Time <= lo || rec.Time > hi || !slices.Contains(layers, rec.ID.Layer) {
				return nil
			}
			c := *rec
			c.Data = bytes.Clone(rec.Data)
			recs = append(recs, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("timeline: changes: %w", err)
	}
	slices.SortFunc(recs, cmpRecord)
	recs = slices.CompactFunc(recs, func(a, b twin.TimelineRecord) bool { return a.Seq == b.Seq && a.ID == b.ID })
	out := make([]Change, 0, len(recs))
	for _, rec := range recs {
		c := Change{Time: time.Unix(0, rec.Time).UTC(), Seq: rec.Seq, ID: rec.ID, Removed: rec.Removed}
		if !rec.Removed && rec.Data != nil {
			f, err := rec.DecodeFeature()
			if err != nil {
				return nil, fmt.Errorf("timeline: changes %s: %w", rec.ID, err)
			}
			c.Feature = f
		}
		out = append(out, c)
	}
	return out, nil
}

func intersects(a, b orb.Bound) bool {
	return a.Min[0] <= b.Max[0] && a.Max[0] >= b.Min[0] && a.Min[1] <= b.Max[1] && a.Max[1] >= b.Min[1]
}

func cmpID(a, b twin.ID) int {
	if a.Layer != b.Layer {
		if a.Layer < b.Layer {
			return -1
		}
		return 1
	}
	switch {
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// ParseAt reads a replay time: RFC 3339 (with a zone) or Unix epoch
// milliseconds, as telemetry's ts (CONTRACT §3).
func ParseAt(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("at: want an RFC 3339 time or epoch milliseconds")
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 || ms > 1<<50 {
			return time.Time{}, fmt.Errorf("at: epoch milliseconds %d out of range", ms)
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("at: want an RFC 3339 time or epoch milliseconds: %w", err)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("at: year %d out of range", t.Year())
	}
	return t, nil
}
