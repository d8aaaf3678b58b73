package twin

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/paulmach/orb"
)

// Timeline is the part of a Store that keeps the city's past for replay
// (GET /api/snapshot, websocket "at"): the changes of the live layers in
// time chunks, full-state checkpoints of those layers split by map cell,
// and per-object versions of the slow layers (buildings' risk). Both stores
// implement it (twin/storetest checks them alike); twin/timeline writes and
// reads it. The store only keeps opaque encoded blobs under time keys:
// encoding, merging and the semantics live in twin/timeline.
//
// Times are Unix nanoseconds (exact in both stores).
type Timeline interface {
	// AppendChanges stores change chunks (a chunk: the encoded records of
	// one bucket from one recorder flush). Idempotent per (Bucket, Key).
	// In the same transaction it deletes every checkpoint at or after the
	// earliest Min of the chunks: a late change makes them stale, and the
	// recorder rebuilds them.
	AppendChanges(ctx context.Context, chunks []TimelineChunk) error
	// ScanChanges calls fn with every chunk whose bucket lies in
	// [fromBucket, toBucket], in bucket then key order.
	ScanChanges(ctx context.Context, fromBucket, toBucket int64, fn func(TimelineChunk) error) error
	// PutCheckpoint stores a checkpoint at time at: one blob per cell
	// (replacing any checkpoint at the same time), plus its marker.
	PutCheckpoint(ctx context.Context, at int64, cells map[uint32][]byte) error
	// LastCheckpoint returns the time of the newest checkpoint at or before
	// at; ok is false when there is none.
	LastCheckpoint(ctx context.Context, at int64) (t int64, ok bool, err error)
	// ScanCheckpoint calls fn with the blobs of the checkpoint at time at
	// for the given cells (nil = every cell).
	ScanCheckpoint(ctx context.Context, at int64, cells []uint32, fn func(cell uint32, data []byte) error) error
	// PutVersions stores per-object versions (idempotent per (ID, At, Seq)).
	PutVersions(ctx context.Context, vs []TimelineVersion) error
	// VersionAt returns the newest version of id with At <= at; ok is
	// false when there is none.
	VersionAt(ctx context.Context, id ID, at int64) (v TimelineVersion, ok bool, err error)
	// PruneTimeline deletes change chunks of buckets before changesBefore,
	// checkpoints before checkpointsBefore, and versions before
	// versionsBefore (keeping each object's newest such version, so a
	// lookup after the cut still finds the state then).
	PruneTimeline(ctx context.Context, changesBefore, checkpointsBefore, versionsBefore int64) error
}

// TimelineChunk is one stored blob of change records.
type TimelineChunk struct {
	Bucket   int64 // start of the time bucket (Unix ns) holding every record's time
	Key      uint64
	Min, Max int64 // the records' time range
	Data     []byte
}

// TimelineVersion is one stored version of a slow-layer object.
type TimelineVersion struct {
	ID   ID
	At   int64 // Unix ns
	Seq  uint64
	Data []byte // the encoded record (EncodeRecords of one)
}

// TimelineRecord is one object's state (or removal) at one time: the
// unit of the timeline. The state stays encoded (Data) until a reader
// needs the feature: merging and checkpoints pass it through.
type TimelineRecord struct {
	Time     int64 // Unix ns: the object's own Updated (telemetry ts), or the removal time
	Seq      uint64
	ID       ID
	Removed  bool
	HasBound bool
	Bound    orb.Bound
	// Data is the object's encoded state (nil when Removed): the binary
	// feature form when Binary, else (records written before it) the
	// feature's wire JSON. DecodeFeature reads either.
	Data   []byte
	Binary bool
	// Logged: Data is a change's change-log encoding (a blobLog blob's
	// record; timelinelog.go), its state read by DecodeFeature.
	Logged bool
	// Feature, when set, is encoded by EncodeRecords in the binary form
	// instead of Data: the recorder hands the twin's (immutable) feature
	// over and it is encoded once, straight into the blob.
	Feature *Feature
}

// DecodeFeature returns the object's state the record holds (nil when
// Removed).
func (r *TimelineRecord) DecodeFeature() (*Feature, error) {
	switch {
	case r.Removed:
		return nil, nil
	case r.Feature != nil:
		return r.Feature, nil
	case r.Logged:
		return decodeLoggedFeature(r.Data)
	case r.Binary:
		return decodeFeatureRecord(r.ID, r.Data)
	case r.Data == nil:
		return nil, nil
	}
	f := &Feature{}
	if err := f.UnmarshalJSON(r.Data); err != nil {
		return nil, err
	}
	f.ID = r.ID
	return f, nil
}

// Cell returns the record's map cell (NoCell without geometry).
func (r *TimelineRecord) Cell() uint32 {
	if !r.HasBound {
		return NoCell
	}
	return CellOf(r.Bound.Center())
}

// Timeline cells: a 0.1° lon/lat grid (about 10 km), coarse enough that a
// city view touches a few dozen, fine enough that a street view reads one.
const (
	cellsPerDegree = 10
	// NoCell holds records without geometry (returned only to views
	// without a bbox).
	NoCell = math.MaxUint32
	// maxCells bounds a bbox's cell list; a larger bbox reads every cell.
	maxCells = 4096
)

// CellOf returns the cell of a point.
func CellOf(p orb.Point) uint32 {
	x := uint32(min(max((p[0]+180)*cellsPerDegree, 0), 360*cellsPerDegree-1))
	y := uint32(min(max((p[1]+90)*cellsPerDegree, 0), 180*cellsPerDegree-1))
	return y<<16 | x
}

// CellsOf lists the cells a bbox touches, nil when it touches more than
// maxCells (read them all). A record belongs to the cell of its bound's
// centre, so the bbox is widened by margin degrees to catch objects whose
// centre is outside but whose bound reaches in.
func CellsOf(b orb.Bound, margin float64) []uint32 {
	lo := CellOf(orb.Point{b.Min[0] - margin, b.Min[1] - margin})
	hi := CellOf(orb.Point{b.Max[0] + margin, b.Max[1] + margin})
	x0, y0, x1, y1 := lo&0xffff, lo>>16, hi&0xffff, hi>>16
	if n := (uint64(x1-x0) + 1) * (uint64(y1-y0) + 1); n > maxCells {
		return nil
	}
	out := make([]uint32, 0, (x1-x0+1)*(y1-y0+1))
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			out = append(out, y<<16|x)
		}
	}
	return out
}

// Record encoding limits: the decoder refuses anything larger, so a
// corrupt blob cannot make it allocate without bound.
const (
	maxRecordData = 16 << 20
	maxBlob       = 1 << 30
)

// ErrBadTimeline is returned (wrapped) for an undecodable timeline blob.
var ErrBadTimeline = errors.New("timeline: bad record blob")

// Blob formats. The first byte of a blob tells its format:
//
//   - blobLog: change-log runs as the leader published them (see
//     timelinelog.go); what the recorder writes for the runs it is handed.
//   - blobZstd: the records (appendRecords) as zstd frames, one or more
//     (EncodeRecordsPaced cuts them every pacedFrame bytes; they decode
//     as one: a zstd decoder reads frames one after another). What
//     EncodeRecords writes.
//   - anything else: the records as raw DEFLATE (flate BestSpeed), what
//     the recorder wrote before blobZstd; read still. A DEFLATE stream's
//     first byte has the block type in bits 1-2, and type 3 is reserved,
//     so no DEFLATE stream starts with blobZstd (0b00001110) or blobLog
//     (0b00001111).
//
// Why zstd (github.com/klauspost/compress, fastest level): on the demo
// city's changes at 14k msgs/s it compresses as small as flate BestSpeed
// or smaller for about half the CPU, and reads back several times faster
// (replay snapshots decode every chunk since the checkpoint).
const blobZstd = 0x0e

// EncodeRecords writes records as one compressed blob (see DecodeRecords).
func EncodeRecords(rs []TimelineRecord) ([]byte, error) {
	bp, _ := rawBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer rawBufs.Put(bp)
	return EncodeRecordsWith(bp, rs)
}

// EncodeRecordsWith is EncodeRecords with the caller's scratch buffer for
// the uncompressed form, grown as needed and kept in *scratch for the
// next call: a writer that encodes every second (the timeline recorder)
// keeps it, where the pool EncodeRecords uses is emptied by the GC and a
// fresh buffer of a few MB was allocated and zeroed every flush.
func EncodeRecordsWith(scratch *[]byte, rs []TimelineRecord) ([]byte, error) {
	return EncodeRecordsPaced(scratch, rs, nil)
}

// Paced encoding's steps: records encoded, then raw bytes compressed,
// between two calls of pause.
const (
	pacedRecords = 512
	pacedFrame   = 256 << 10
)

// EncodeRecordsPaced is EncodeRecordsWith calling pause (when not nil)
// after every pacedRecords records encoded and every pacedFrame bytes
// compressed (each its own zstd frame), so that a second's changes (20k
// records, 4 MB raw, ~50 ms of CPU) are not one stretch: on a server's
// single busy core, the recorder's flush held the websocket path back
// for its whole length, a third of the fan-out's p99 at 20k msgs/s
// (issue 16 goal 6). The records and their order are the same.
func EncodeRecordsPaced(scratch *[]byte, rs []TimelineRecord, pause func()) ([]byte, error) {
	// Room for all of it at once: growing by doubling copied the whole
	// buffer several times a flush (the pool is emptied by each GC), ~4 %
	// of the server's CPU under 30k updates/s (issue 16 goal 1).
	raw := slices.Grow((*scratch)[:0], recordsSizeHint(rs))
	var err error
	for rest := rs; len(rest) > 0 && err == nil; {
		n := len(rest)
		if pause != nil {
			n = min(n, pacedRecords)
		}
		raw, err = appendRecords(raw, rest[:n])
		if rest = rest[n:]; len(rest) > 0 {
			pause()
		}
	}
	*scratch = raw
	if err != nil {
		return nil, err
	}
	enc, err := zstdEncoder()
	if err != nil {
		return nil, fmt.Errorf("timeline: encode: %w", err)
	}
	out := append(make([]byte, 0, len(raw)/4+64), blobZstd)
	if pause == nil {
		return enc.EncodeAll(raw, out), nil
	}
	for len(raw) > 0 {
		pause()
		n := min(len(raw), pacedFrame)
		out, raw = enc.EncodeAll(raw[:n], out), raw[n:]
	}
	return out, nil
}

// recordsSizeHint is about what appendRecords writes for rs (a little more
// for a typical record).
func recordsSizeHint(rs []TimelineRecord) int {
	n := 0
	for i := range rs {
		r := &rs[i]
		n += 64 + len(r.ID.Layer) + len(r.ID.Name) + len(r.Data)
		if f := r.Feature; f != nil && !r.Removed {
			n += 64 + len(f.Grid()) + 8*len(f.Cells())
			if f.Props.base() {
				// The keys, twice for the values: their length is only
				// known by walking them (Props.values), a cost this
				// guess need not pay.
				n += 2 * len(f.Props.keySet())
			} else {
				n += 64 * len(f.Props.edits())
			}
			for _, s := range f.Region() {
				n += 1 + len(s)
			}
		}
	}
	return n
}

// rawBufs keeps the uncompressed form between encodes (a few MB a flush
// at 14k msgs/s).
var rawBufs sync.Pool // *[]byte

// The zstd codec: safe for concurrent EncodeAll and DecodeAll, made once
// (each holds its window tables).
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2))
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(maxBlob))
	})
)

// Record flags.
const (
	recRemoved  = 1 << iota
	recHasBound // the bound follows: 4 float64
	recBinary   // the data is the binary feature form, not wire JSON
	recPoint    // the bound is a point: 2 float64 (with recHasBound)
)

// appendRecords appends the records' uncompressed form: per record the
// time (varint), seq, layer, name, flags, bound and data.
func appendRecords(raw []byte, rs []TimelineRecord) ([]byte, error) {
	for i := range rs {
		r := &rs[i]
		feat := r.Feature
		if feat == nil && r.Logged && !r.Removed {
			// A change-log record (a checkpoint made of a blobLog
			// chunk's records): its state in this form.
			f, err := decodeLoggedFeature(r.Data)
			if err != nil {
				return nil, fmt.Errorf("timeline: encode %s: %w", r.ID, err)
			}
			feat = f
		}
		raw = binary.AppendVarint(raw, r.Time)
		raw = binary.AppendUvarint(raw, r.Seq)
		raw = appendStr(raw, string(r.ID.Layer))
		raw = appendStr(raw, r.ID.Name)
		var flags byte
		if r.Removed {
			flags |= recRemoved
		}
		if r.Binary || feat != nil {
			flags |= recBinary
		}
		point := r.HasBound && r.Bound.Min == r.Bound.Max
		if r.HasBound {
			flags |= recHasBound
			if point {
				flags |= recPoint
			}
		}
		raw = append(raw, flags)
		if point {
			raw = binary.BigEndian.AppendUint64(raw, math.Float64bits(r.Bound.Min[0]))
			raw = binary.BigEndian.AppendUint64(raw, math.Float64bits(r.Bound.Min[1]))
		} else if r.HasBound {
			for _, v := range [4]float64{r.Bound.Min[0], r.Bound.Min[1], r.Bound.Max[0], r.Bound.Max[1]} {
				raw = binary.BigEndian.AppendUint64(raw, math.Float64bits(v))
			}
		}
		if feat == nil || r.Removed {
			raw = binary.AppendUvarint(raw, uint64(len(r.Data))) // no string copy of the data
			raw = append(raw, r.Data...)
			continue
		}
		// The binary form goes straight into raw, after room for its
		// length (a uvarint of at most maxLenWidth bytes), moved up once
		// the length is known.
		const maxLenWidth = 3 // < 2 MiB
		at := len(raw)
		raw = append(raw, make([]byte, maxLenWidth)...)
		var err error
		if raw, err = appendFeatureRecord(raw, feat); err != nil {
			return nil, fmt.Errorf("timeline: encode %s: %w", r.ID, err)
		}
		if n := len(raw) - at - maxLenWidth; n > maxRecordData {
			return nil, fmt.Errorf("timeline: encode %s: %d bytes", r.ID, n)
		}
		raw = putLenBefore(raw, at, maxLenWidth)
	}
	return raw, nil
}

// FeatureRecord is the record of f's state at time at (Unix ns) under
// seq. It holds f itself (the twin's features are immutable), encoded
// once when its blob is written: nothing is encoded per change on the
// way.
func FeatureRecord(f *Feature, at int64, seq uint64) TimelineRecord {
	rec := TimelineRecord{Time: at, Seq: seq, ID: f.ID, Feature: f}
	if f.Geometry != nil {
		rec.HasBound, rec.Bound = true, f.Geometry.Bound()
	}
	return rec
}

// ChangeRecord is the record of an upsert or a removal: the new state,
// timed at the object's Updated (the telemetry's time; else the change's),
// or the removal at the change's time. The replay recorder makes it of
// every change of the live layers, and a blobLog run reads back to it
// (scanLogChange applies the same rule to the encoded change).
func ChangeRecord(c *Change) TimelineRecord {
	if c.Kind == Remove {
		return TimelineRecord{Time: c.Time.UnixNano(), Seq: c.Seq, ID: c.ID(), Removed: true}
	}
	at := c.New.Updated.UnixNano()
	if at == 0 {
		at = c.Time.UnixNano()
	}
	return FeatureRecord(c.New, at, c.Seq)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeRecords reads a blob written by EncodeRecords (or by the recorder
// before it: raw DEFLATE, wire JSON data) and calls fn per record, in the
// order written. The record's Data aliases a buffer that is valid only
// during the call; copy it to keep it.
func DecodeRecords(blob []byte, fn func(*TimelineRecord) error) error {
	if len(blob) > 0 && blob[0] == blobLog {
		return decodeLogRuns(blob[1:], fn)
	}
	raw, err := decompress(blob)
	if err != nil {
		return err
	}
	var r TimelineRecord
	for len(raw) > 0 {
		r = TimelineRecord{}
		var n int
		if r.Time, n = binary.Varint(raw); n <= 0 {
			return fmt.Errorf("%w: time", ErrBadTimeline)
		}
		raw = raw[n:]
		if r.Seq, n = binary.Uvarint(raw); n <= 0 {
			return fmt.Errorf("%w: seq", ErrBadTimeline)
		}
		raw = raw[n:]
		var layer, name, data []byte
		if layer, raw, err = readStr(raw, 64); err != nil {
			return err
		}
		if name, raw, err = readStr(raw, 1024); err != nil {
			return err
		}
		if len(raw) < 1 {
			return fmt.Errorf("%w: flags", ErrBadTimeline)
		}
		flags := raw[0]
		raw = raw[1:]
		r.Removed, r.HasBound, r.Binary = flags&recRemoved != 0, flags&recHasBound != 0, flags&recBinary != 0
		if r.HasBound && flags&recPoint != 0 {
			if len(raw) < 16 {
				return fmt.Errorf("%w: bound", ErrBadTimeline)
			}
			p := orb.Point{math.Float64frombits(binary.BigEndian.Uint64(raw)), math.Float64frombits(binary.BigEndian.Uint64(raw[8:]))}
			raw = raw[16:]
			r.Bound = orb.Bound{Min: p, Max: p}
		} else if r.HasBound {
			if len(raw) < 32 {
				return fmt.Errorf("%w: bound", ErrBadTimeline)
			}
			var v [4]float64
			for i := range v {
				v[i] = math.Float64frombits(binary.BigEndian.Uint64(raw[8*i:]))
			}
			raw = raw[32:]
			r.Bound = orb.Bound{Min: orb.Point{v[0], v[1]}, Max: orb.Point{v[2], v[3]}}
		}
		if data, raw, err = readStr(raw, maxRecordData); err != nil {
			return err
		}
		r.ID = ID{Layer: Layer(layer), Name: string(name)}
		if len(data) > 0 {
			r.Data = data
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

// decompress returns the records of a blob, uncompressed.
func decompress(blob []byte) ([]byte, error) {
	if len(blob) > 0 && blob[0] == blobZstd {
		dec, err := zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("timeline: decode: %w", err)
		}
		raw, err := dec.DecodeAll(blob[1:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadTimeline, err)
		}
		return raw, nil
	}
	raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(blob)), maxBlob+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTimeline, err)
	}
	if len(raw) > maxBlob {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadTimeline, maxBlob)
	}
	return raw, nil
}

func readStr(b []byte, limit uint64) (s, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > limit || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: length", ErrBadTimeline)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// UnixNano returns t in Unix ns, and 0 for the zero time.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
