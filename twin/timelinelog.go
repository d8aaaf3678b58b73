package twin

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// Timeline blobs of change-log runs (blobLog). The leader publishes every
// change to the change log as runs, each encoded (AppendChange) and most
// S2-compressed; its replay recorder used to encode and compress the same
// changes a second time, in its own form, which was a sixth of the
// server's CPU under telemetry (issue 16 goal 1). Now the change log hands
// the recorder each run it published, as it went to JetStream, and the
// recorder stores it as it is: a blobLog blob is a list of such runs, each
//
//	flags (byte: LogRunS2, LogRunFramed), len (uvarint), body,
//
// the body a change-log record's body (twin/changelog): a run framed as
// each change's length (uvarint) then its encoding, or one change alone,
// S2-compressed when LogRunS2. DecodeRecords reads it into the records the
// recorder would have made of the same changes: an upsert's new state
// (its time the object's Updated, else the change's), a removal, nothing
// for a History change; every layer the run holds (readers filter layers,
// as for any chunk). A record's state is read only when asked for
// (DecodeFeature): the record holds the change's encoding, marked Logged.
// Its coordinates are then rounded as the wire rounds them, as the
// recorder's own form stores them, so a replay serves the same positions
// either way.
const blobLog = 0x0f

// Flags of a run in a blobLog blob.
const (
	LogRunS2     byte = 1 << iota // the body is S2-compressed
	LogRunFramed                  // the body is several changes, each after its length; else one change
)

// MaxLogRunBytes bounds what one run may decompress to: a run is at most
// twin/changelog's record size, or one change that went alone and
// JetStream's largest message (8 MB by default for the embedded server,
// 1 MB in nats-server's own default), so more is damage, not a run.
const MaxLogRunBytes = 64 << 20

// LogRunData returns a run's body as it was before compression (flags
// LogRunS2; else body itself), decoded into dst when it is big enough. A
// body that claims to decode to more than MaxLogRunBytes is refused
// before anything is allocated. The change log reads its records with it
// too.
func LogRunData(flags byte, body, dst []byte) ([]byte, error) {
	if flags&LogRunS2 == 0 {
		return body, nil
	}
	n, err := s2.DecodedLen(body)
	if err != nil {
		return nil, err
	}
	if n > MaxLogRunBytes {
		return nil, fmt.Errorf("a run of %d bytes", n)
	}
	return s2.Decode(dst[:cap(dst)], body)
}

// AppendLogRun appends a change-log run's body, as published, to a blobLog
// blob; an empty blob is started.
func AppendLogRun(blob []byte, flags byte, body []byte) []byte {
	if len(blob) == 0 {
		blob = append(blob, blobLog)
	}
	blob = append(blob, flags)
	blob = binary.AppendUvarint(blob, uint64(len(body)))
	return append(blob, body...)
}

// decodeLogRuns calls fn with the records of a blobLog blob's runs (after
// its first byte).
func decodeLogRuns(b []byte, fn func(*TimelineRecord) error) error {
	var buf []byte
	for len(b) > 0 {
		flags := b[0]
		if flags&^(LogRunS2|LogRunFramed) != 0 {
			return fmt.Errorf("%w: run flags %#x", ErrBadTimeline, flags)
		}
		body, rest, err := readStr(b[1:], maxBlob)
		if err != nil {
			return err
		}
		b = rest
		if body, err = LogRunData(flags, body, buf); err != nil {
			return fmt.Errorf("%w: %w", ErrBadTimeline, err)
		}
		if flags&LogRunS2 != 0 {
			buf = body // reused for the next run
		}
		if flags&LogRunFramed == 0 {
			if err := logRecord(body, fn); err != nil {
				return err
			}
			continue
		}
		for len(body) > 0 {
			var c []byte
			if c, body, err = readStr(body, MaxLogRunBytes); err != nil {
				return err
			}
			if err := logRecord(c, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// logRecord calls fn with the record of one encoded change, if it makes
// one.
func logRecord(b []byte, fn func(*TimelineRecord) error) error {
	var r TimelineRecord
	if len(b) > 0 && b[0] == changeBinary {
		ok, err := scanLogChange(b, &r)
		if err != nil || !ok {
			return err
		}
		return fn(&r)
	}
	// The JSON form (a change the binary form does not write): read it
	// whole.
	c, err := UnmarshalChange(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadTimeline, err)
	}
	if c.Kind != Upsert && c.Kind != Remove {
		return nil // History
	}
	r = ChangeRecord(&c)
	if r.Feature != nil {
		r.Feature = replayedFeature(r.Feature)
	}
	return fn(&r)
}

// scanLogChange reads a binary change's record into r without its state:
// seq, ID, time and bound (r.Data is b, read by DecodeFeature). ok is
// false for a change that makes no record (History).
func scanLogChange(b []byte, r *TimelineRecord) (ok bool, err error) {
	rd := recReader{b: b[1:]}
	r.Seq = rd.uvarint()
	kind := ChangeKind(rd.byte())
	flags := rd.byte()
	at := time.Time{}.UnixNano()
	if flags&chgTime != 0 {
		at = rd.varint()
	}
	layer, name := rd.str(), rd.str()
	if rd.err != nil {
		return false, fmt.Errorf("%w: change: %w", ErrBadTimeline, rd.err)
	}
	l, err := ParseStoredLayer(string(layer))
	if err != nil {
		return false, fmt.Errorf("%w: change %d: %w", ErrBadTimeline, r.Seq, err)
	}
	r.ID = ID{Layer: l, Name: string(name)}
	switch kind {
	case History:
		return false, nil
	case Remove:
		r.Time, r.Removed = at, true
		return true, nil
	case Upsert:
	default:
		return false, fmt.Errorf("%w: change %d: kind %d", ErrBadTimeline, r.Seq, kind)
	}
	if flags&chgNew == 0 {
		return false, fmt.Errorf("%w: change %d: upsert without a state", ErrBadTimeline, r.Seq)
	}
	// The state up to its geometry (readLogFeature's order), skipped.
	rd.uvarint()
	updated := rd.varint()
	rd.varint()
	n := rd.uvarint()
	if n > uint64(len(rd.b)) {
		rd.fail()
	}
	for range n {
		rd.str()
	}
	rd.str()
	if n = rd.uvarint(); n > uint64(len(rd.b)) {
		rd.fail()
	}
	for range n {
		rd.uvarint()
	}
	rd.str()
	switch rd.byte() {
	case featGeomNone:
	case featGeomPoint:
		p := orb.Point{rd.f64(), rd.f64()}
		if !finite(p[0]) || !finite(p[1]) {
			rd.fail()
		}
		r.HasBound, r.Bound = true, p.Bound()
	case chgGeomJSON:
		j := rd.str()
		if rd.err != nil || string(j) == "null" {
			break
		}
		g, err := geojson.UnmarshalGeometry(j)
		if err != nil || g.Geometry() == nil {
			rd.fail()
			break
		}
		r.HasBound, r.Bound = true, g.Geometry().Bound()
	default:
		rd.fail()
	}
	if rd.err != nil {
		return false, fmt.Errorf("%w: change %d: %w", ErrBadTimeline, r.Seq, rd.err)
	}
	if r.Time = updated; r.Time == 0 { // ChangeRecord's rule
		r.Time = at
	}
	r.Data, r.Logged = b, true
	return true, nil
}

// decodeLoggedFeature reads the state of a Logged record's change.
func decodeLoggedFeature(b []byte) (*Feature, error) {
	c, err := unmarshalChangeBinary(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTimeline, err)
	}
	if c.New == nil {
		return nil, fmt.Errorf("%w: change %d holds no state", ErrBadTimeline, c.Seq)
	}
	return replayedFeature(c.New), nil
}

// replayedFeature is f as the recorder's own form gives it back
// (decodeFeatureRecord): what the wire shows, coordinates rounded as the
// wire rounds them; no cells, no source.
func replayedFeature(f *Feature) *Feature {
	out := &Feature{ID: f.ID, Props: f.Props, Version: f.Version, Updated: f.Updated, Observed: f.Observed, Place: f.Place}
	switch g := f.Geometry.(type) {
	case nil:
	case orb.Point:
		out.Geometry = orb.Point{roundCoord(g[0]), roundCoord(g[1])}
	default:
		out.Geometry = orb.Round(orb.Clone(g), CoordFactor)
	}
	return out
}
