package twin

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/paulmach/orb"
)

// logTestChanges are changes of every kind over timelineFeatures, random
// moves of the points among them (seeded), as the change log holds them.
func logTestChanges(rng *rand.Rand, n int) []Change {
	fs := timelineFeatures()
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	var out []Change
	for i := range n {
		seq := uint64(100 + i)
		f := fs[rng.IntN(len(fs))]
		ct := at.Add(time.Duration(i) * time.Millisecond)
		switch rng.IntN(10) {
		case 0:
			out = append(out, Change{Seq: seq, Kind: Remove, Time: ct, Old: f})
		case 1:
			out = append(out, Change{Seq: seq, Kind: History, Time: ct, Old: f, New: f,
				Sample: &Sample{ID: f.ID, Time: ct.Add(-time.Hour), HasPos: true, Pos: orb.Point{106.5, 29.5}}})
		case 2:
			// A time the binary form does not write: the change goes as JSON.
			nf := f.Clone()
			nf.Version++
			out = append(out, Change{Seq: seq, Kind: Upsert, Time: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), Old: f, New: nf})
		default:
			nf := f.Clone()
			nf.Version++
			if p, ok := nf.Geometry.(orb.Point); ok {
				nf.Geometry = orb.Point{p[0] + rng.Float64()*1e-3, p[1] + rng.Float64()*1e-3}
			}
			if rng.IntN(3) == 0 {
				nf.Updated = 0 // the change's time is the record's
			}
			out = append(out, Change{Seq: seq, Kind: Upsert, Time: ct, Old: f, New: nf})
		}
	}
	return out
}

// logRunBlob writes the changes as the change log's runs would be: runs of
// 1-40 changes, framed or alone, S2-compressed or not.
func logRunBlob(t testing.TB, rng *rand.Rand, cs []Change) []byte {
	t.Helper()
	var blob []byte
	for rest := cs; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(40))
		var body []byte
		for i := range rest[:n] {
			b, err := AppendChange(nil, &rest[i])
			if err != nil {
				t.Fatal(err)
			}
			if n > 1 {
				body = binary.AppendUvarint(body, uint64(len(b)))
			}
			body = append(body, b...)
		}
		var flags byte
		if n > 1 {
			flags |= LogRunFramed
		}
		if rng.IntN(2) == 0 {
			body = s2.Encode(nil, body)
			flags |= LogRunS2
		}
		blob = AppendLogRun(blob, flags, body)
		rest = rest[n:]
	}
	return blob
}

// TestLogRunRecords: a blob of change-log runs reads back as the records
// the recorder makes of the same changes in its own form (record, then
// EncodeRecords): the same times, seqs, IDs, bounds, and states that give
// the same wire JSON. Differential, seeded.
func TestLogRunRecords(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	cs := logTestChanges(rng, 300)
	blob := logRunBlob(t, rng, cs)

	// What the recorder's own form gives for the same changes.
	var want []TimelineRecord
	for _, c := range cs {
		switch c.Kind {
		case Remove:
			want = append(want, TimelineRecord{Time: c.Time.UnixNano(), Seq: c.Seq, ID: c.ID(), Removed: true})
		case Upsert:
			at := c.New.Updated.UnixNano()
			if at == 0 {
				at = c.Time.UnixNano()
			}
			r := TimelineRecord{Time: at, Seq: c.Seq, ID: c.New.ID, Feature: c.New}
			if c.New.Geometry != nil {
				r.HasBound, r.Bound = true, c.New.Geometry.Bound()
			}
			want = append(want, r)
		}
	}
	own, err := EncodeRecords(want)
	if err != nil {
		t.Fatal(err)
	}
	wantRecs := decodeAll(t, own)
	got := decodeAll(t, blob)
	if len(got) != len(wantRecs) {
		t.Fatalf("%d records, want %d", len(got), len(wantRecs))
	}
	for i := range got {
		g, w := &got[i], &wantRecs[i]
		if g.Time != w.Time || g.Seq != w.Seq || g.ID != w.ID || g.Removed != w.Removed || g.HasBound != w.HasBound || !sameBound(g.Bound, w.Bound) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
		gf, err := g.DecodeFeature()
		if err != nil {
			t.Fatalf("record %d (%s): %v", i, g.ID, err)
		}
		wf, err := w.DecodeFeature()
		if err != nil {
			t.Fatal(err)
		}
		if (gf == nil) != (wf == nil) {
			t.Fatalf("record %d: state %v, want %v", i, gf, wf)
		}
		if gf == nil {
			continue
		}
		gj, _ := gf.MarshalJSON()
		wj, _ := wf.MarshalJSON()
		if string(gj) != string(wj) || gf.Version != wf.Version || gf.Updated != wf.Updated || gf.Observed != wf.Observed ||
			gf.Grid() != wf.Grid() || !geomEqual(gf.Geometry, wf.Geometry) {
			t.Fatalf("record %d (%s):\n got %s\nwant %s", i, g.ID, gj, wj)
		}
	}

	// Re-encoded (a checkpoint made of them), they read back the same.
	again, err := EncodeRecords(got)
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != blobZstd {
		t.Fatalf("re-encoded as %#x", again[0])
	}
	i := 0
	if err := DecodeRecords(again, func(r *TimelineRecord) error {
		f, err := r.DecodeFeature()
		if err != nil {
			return err
		}
		wf, _ := wantRecs[i].DecodeFeature()
		if (f == nil) != (wf == nil) || r.Seq != wantRecs[i].Seq {
			t.Fatalf("re-encoded record %d: %+v", i, r)
		}
		if f != nil {
			gj, _ := f.MarshalJSON()
			wj, _ := wf.MarshalJSON()
			if string(gj) != string(wj) {
				t.Fatalf("re-encoded record %d:\n got %s\nwant %s", i, gj, wj)
			}
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLogRunCorrupt: a damaged blobLog blob fails with ErrBadTimeline,
// never a panic.
func TestLogRunCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	blob := logRunBlob(t, rng, logTestChanges(rng, 40))
	for i, bad := range [][]byte{
		{blobLog, 0x80},                    // unknown flag
		{blobLog, 0, 5, 1},                 // short body
		{blobLog, LogRunS2, 2, 0xff, 0xff}, // not S2
		blob[:len(blob)-3],                 // the last run cut short
	} {
		err := DecodeRecords(bad, func(r *TimelineRecord) error {
			_, err := r.DecodeFeature()
			return err
		})
		if err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

// decodeAll returns a blob's records, their data copied.
func decodeAll(t *testing.T, blob []byte) []TimelineRecord {
	t.Helper()
	var out []TimelineRecord
	if err := DecodeRecords(blob, func(r *TimelineRecord) error {
		c := *r
		c.Data = bytes.Clone(r.Data)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
