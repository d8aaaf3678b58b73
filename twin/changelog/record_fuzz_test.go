package changelog

import (
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/citytwin/citytwin/twin"
)

// FuzzDecodeRecord: what a follower reads from the change log (a record's
// header and body, whoever wrote them) is decoded or refused with an
// error, never a panic; a record that decodes holds exactly the
// consecutive changes its header names, and built again from them (as the
// leader builds it, compressed when worth it) decodes to the same seqs.
func FuzzDecodeRecord(f *testing.F) {
	var blobs [][]byte
	for seq := uint64(7); seq <= 9; seq++ {
		c := twin.Change{Seq: seq, Kind: twin.Upsert, Time: time.Unix(int64(seq), 0),
			New: &twin.Feature{ID: twin.NewID(twin.Vehicles, "v"+strconv.FormatUint(seq, 10)), Version: seq}}
		b, err := twin.MarshalChange(&c)
		if err != nil {
			f.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	run := recordMsg(blobs, 7, 9)
	f.Add(run.Header.Get(RecordHeader), "", "", run.Data)
	f.Add("", "", "", blobs[0])
	f.Add("", "12", "", []byte(nil))
	f.Add("7-8", "", "", run.Data)
	f.Add("9-7", "", "", run.Data)
	f.Add(run.Header.Get(RecordHeader), "", "s2", s2.Encode(nil, run.Data))
	f.Add("", "", "s2", s2.Encode(nil, blobs[0]))
	f.Fuzz(func(t *testing.T, rec, base, enc string, data []byte) {
		h := nats.Header{}
		if rec != "" {
			h.Set(RecordHeader, rec)
		}
		if base != "" {
			h.Set(BaseHeader, base)
		}
		if enc != "" {
			h.Set(EncodingHeader, enc)
		}
		lo, hi, isBase, err := recordRange(h, data)
		if err != nil || isBase {
			return
		}
		cs, err := decodeRecord(h, data)
		if err != nil {
			return
		}
		if uint64(len(cs)) != hi-lo+1 {
			t.Fatalf("record %d-%d decoded to %d changes", lo, hi, len(cs))
		}
		var again [][]byte
		for i, c := range cs {
			if c.Seq != lo+uint64(i) {
				t.Fatalf("change %d of record %d-%d has seq %d", i, lo, hi, c.Seq)
			}
			b, _ := twin.AppendChange(nil, &c) // as the leader encodes
			if b == nil {
				return // a change the binary form cannot hold (the JSON form read it)
			}
			again = append(again, b)
		}
		m := recordMsg(again, lo, hi)
		cs2, err := decodeRecord(m.Header, m.Data)
		if err != nil || len(cs2) != len(cs) || cs2[0].Seq != lo || cs2[len(cs2)-1].Seq != hi {
			t.Fatalf("record %d-%d built again: %d changes, %v", lo, hi, len(cs2), err)
		}
	})
}
