package changelog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

// TestRecordsAndLocate: records of runs of changes and of one change
// (the format written before runs) decode to their changes, and locate
// finds the record holding any seq, or the end of the log.
func TestRecordsAndLocate(t *testing.T) {
	ctx := context.Background()
	n, sp := testNode(t)
	if s, err := n.locate(ctx, 0); err != nil || s != 1 {
		t.Fatalf("empty log: locate %d %v, want 1", s, err)
	}
	change := func(seq uint64) []byte {
		c := twin.Change{Seq: seq, Kind: twin.Upsert, Time: time.Unix(int64(seq), 0),
			New: &twin.Feature{ID: twin.NewID(twin.Vehicles, "v"+strconv.FormatUint(seq, 10)), Version: 1}}
		b, err := twin.MarshalChange(&c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Records 1: changes 1-3, 2: change 4 alone, 3: changes 5-9.
	for _, r := range [][2]uint64{{1, 3}, {4, 4}, {5, 9}} {
		var blobs [][]byte
		for s := r[0]; s <= r[1]; s++ {
			blobs = append(blobs, change(s))
		}
		m := recordMsg(blobs, r[0], r[1])
		pa, err := n.js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := sp.JetStream().Stream(ctx, spine.ChangeStream)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := sm.GetMsg(ctx, pa.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := decodeRecord(raw.Header, raw.Data)
		if err != nil || uint64(len(cs)) != r[1]-r[0]+1 || cs[0].Seq != r[0] || cs[len(cs)-1].Seq != r[1] {
			t.Fatalf("record %v decoded to %d changes, %v", r, len(cs), err)
		}
	}
	want := map[uint64]uint64{0: 1, 1: 1, 2: 1, 3: 2, 4: 3, 5: 3, 8: 3, 9: 4, 12: 4}
	for after, s := range want {
		if got, err := n.locate(ctx, after); err != nil || got != s {
			t.Errorf("locate after %d: stream seq %d %v, want %d", after, got, err, s)
		}
	}
	if last, err := n.refresh(ctx); err != nil || last != 9 || n.tail.Load() != 3 {
		t.Errorf("refresh: last %d tail %d %v, want 9 and 3", last, n.tail.Load(), err)
	}
}

// testNode is a node of a fresh replicated twin on a JetStream of the
// test's own, not started: its log is written and read directly.
func testNode(t *testing.T) (*Node, *spine.Spine) {
	t.Helper()
	sp, err := spine.Open(context.Background(), spine.Options{URL: natstest.Start(t), Name: "t", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	tw := twin.New(twin.Options{})
	tw.Replicate()
	n, err := New(tw, sp, Options{LeaseKey: "applier", Lead: func(context.Context, func(context.Context) error) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return n, sp
}

// recordMsg makes (through record, as the leader does) the record of consecutive changes lo..hi (their
// encodings in blobs).
func recordMsg(blobs [][]byte, lo, hi uint64) *nats.Msg {
	var r record
	for i, b := range blobs {
		r.add(lo+uint64(i), b, 0, nil)
	}
	r.hi = hi
	m := r.msg()
	compressRecord(m, new([]byte))
	return m
}

// TestCompressedRecords: a run of a moving fleet's changes is sent S2
// compressed, to a third of its bytes or less, and decodes to the same
// changes; a record whose encoding is unknown, or whose compressed body
// is damaged or claims to decode to more than any record, is refused.
func TestCompressedRecords(t *testing.T) {
	var blobs [][]byte
	var want []twin.Change
	for seq := uint64(100); seq < 100+maxRecordChanges; seq++ {
		i := seq % 50
		f := &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("veh-%04d", i)), Version: seq,
			Geometry: orb.Point{106.5 + float64(seq)*1e-4, 29.5 + float64(i)*1e-3}, Updated: twin.Stamp(seq * 1e9),
			Props: twin.NewProps(map[string]any{"kind": "muck_truck", "plate": fmt.Sprintf("渝A%05d", i), "speed_kmh": 42.5, "heading": float64(seq % 360)}).Pack(),
			Place: twin.NewPlace([]string{"500000", "500103", "500103001"}, "g-500103-0042")}
		c := twin.Change{Seq: seq, Kind: twin.Upsert, Time: time.Unix(int64(seq), 0).UTC(), New: f}
		b, err := twin.AppendChange(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
		want = append(want, c)
	}
	m := recordMsg(blobs, 100, 100+maxRecordChanges-1)
	raw := 0
	for _, b := range blobs {
		raw += len(b)
	}
	if m.Header.Get(EncodingHeader) != "s2" || len(m.Data)*3 > raw {
		t.Fatalf("record of %d B sent as %d B, encoding %q", raw, len(m.Data), m.Header.Get(EncodingHeader))
	}
	got, err := decodeRecord(m.Header, m.Data)
	if err != nil || len(got) != len(want) {
		t.Fatalf("decoded %d changes, %v", len(got), err)
	}
	for i := range got {
		g, w := got[i].New, want[i].New
		if got[i].Seq != want[i].Seq || g.ID != w.ID || g.Geometry != w.Geometry || g.Version != w.Version || !g.Props.Equal(w.Props) || g.Grid() != w.Grid() {
			t.Fatalf("change %d: %+v, want %+v", i, g, w)
		}
	}
	// A lone change: too small to be worth it, sent as it is.
	one := recordMsg(blobs[:1], 100, 100)
	if one.Header.Get(EncodingHeader) != "" {
		t.Fatalf("a lone change of %d B was compressed", len(blobs[0]))
	}
	bad := func(name string, h nats.Header, data []byte) {
		t.Helper()
		if _, err := decodeRecord(h, data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	h := nats.Header{RecordHeader: m.Header[RecordHeader], EncodingHeader: []string{"zstd"}}
	bad("unknown encoding", h, m.Data)
	damaged := slices.Clone(m.Data)
	damaged[len(damaged)/2] ^= 0xff
	bad("damaged", m.Header, damaged)
	bad("truncated", m.Header, m.Data[:len(m.Data)/2])
	huge := binary.AppendUvarint(nil, maxDecoded+1) // S2's block header: the decoded length
	bad("too large", m.Header, append(huge, 0))
}

// TestChangesFromTheLog: Changes reads any stretch of the log from a real
// JetStream, starting inside a record and ending inside one, and says
// ErrSeqGap for what the log does not hold (past its end, or before a
// base record that restarted it above).
func TestChangesFromTheLog(t *testing.T) {
	ctx := context.Background()
	n, _ := testNode(t)
	publish := func(lo, hi uint64) {
		var blobs [][]byte
		for s := lo; s <= hi; s++ {
			c := twin.Change{Seq: s, Kind: twin.Upsert, Time: time.Unix(int64(s), 0),
				New: &twin.Feature{ID: twin.NewID(twin.Vehicles, "v"+strconv.FormatUint(s, 10)), Version: 1, Geometry: orb.Point{106, 29}}}
			b, err := twin.MarshalChange(&c)
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, b)
		}
		if _, err := n.js.PublishMsg(ctx, recordMsg(blobs, lo, hi)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range [][2]uint64{{1, 3}, {4, 4}, {5, 300}, {301, 310}} { // one record compressed
		publish(r[0], r[1])
	}
	read := func(after, upto uint64) ([]uint64, error) {
		var got []uint64
		err := n.Changes(ctx, after, upto, func(c *twin.Change) error {
			if c.New == nil || c.New.ID.Name != "v"+strconv.FormatUint(c.Seq, 10) {
				return fmt.Errorf("change %d is %v", c.Seq, c.New)
			}
			got = append(got, c.Seq)
			return nil
		})
		return got, err
	}
	seqs := func(lo, hi uint64) []uint64 {
		var s []uint64
		for i := lo; i <= hi; i++ {
			s = append(s, i)
		}
		return s
	}
	for _, c := range [][2]uint64{{0, 310}, {2, 4}, {3, 5}, {4, 4}, {7, 301}, {299, 310}, {310, 310}} {
		got, err := read(c[0], c[1])
		if err != nil || !slices.Equal(got, seqs(c[0]+1, c[1])) {
			t.Errorf("changes after %d up to %d: %v %v", c[0], c[1], got, err)
		}
	}
	if got, err := read(305, 320); !errors.Is(err, twin.ErrSeqGap) || !slices.Equal(got, seqs(306, 310)) {
		t.Errorf("past the log's end: %v %v, want 306-310 and ErrSeqGap", got, err)
	}
	// Restarted above: a base at 400, then 401-402. The changes before
	// the base are gone; those after it read.
	if err := n.writeBase(ctx, 400); err != nil {
		t.Fatal(err)
	}
	publish(401, 402)
	if _, err := read(5, 10); !errors.Is(err, twin.ErrSeqGap) {
		t.Errorf("purged changes: %v, want ErrSeqGap", err)
	}
	if got, err := read(400, 402); err != nil || !slices.Equal(got, seqs(401, 402)) {
		t.Errorf("after the base: %v %v", got, err)
	}
	if _, err := read(390, 402); !errors.Is(err, twin.ErrSeqGap) {
		t.Errorf("across the base: %v, want ErrSeqGap", err)
	}
}
