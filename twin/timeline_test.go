package twin

import (
	"bytes"
	"testing"

	"github.com/paulmach/orb"
)

func TestTimelineRecordsRoundTrip(t *testing.T) {
	in := []TimelineRecord{
		{Time: -5, Seq: 1, ID: ID{Layer: Vehicles, Name: "a"}, HasBound: true,
			Bound: orb.Bound{Min: orb.Point{106.5, 29.5}, Max: orb.Point{106.6, 29.6}}, Data: []byte(`{"x":1}`)},
		{Time: 1 << 60, Seq: 99, ID: ID{Layer: Alerts, Name: "b"}, Removed: true},
	}
	blob, err := EncodeRecords(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []TimelineRecord
	if err := DecodeRecords(blob, func(r *TimelineRecord) error {
		c := *r
		c.Data = bytes.Clone(r.Data)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Time != -5 || out[0].Bound != in[0].Bound || string(out[0].Data) != `{"x":1}` ||
		out[1].ID != in[1].ID || !out[1].Removed || out[1].HasBound || out[1].Data != nil || out[1].Seq != 99 {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestCellsOf(t *testing.T) {
	b := orb.Bound{Min: orb.Point{106.5, 29.5}, Max: orb.Point{106.62, 29.61}}
	cs := CellsOf(b, 0)
	if len(cs) != 4 {
		t.Fatalf("cells %d, want 4", len(cs))
	}
	c := CellOf(orb.Point{106.55, 29.55})
	found := false
	for _, x := range cs {
		found = found || x == c
	}
	if !found {
		t.Fatal("the centre's cell is not listed")
	}
	if CellsOf(orb.Bound{Min: orb.Point{-180, -90}, Max: orb.Point{180, 90}}, 0) != nil {
		t.Fatal("the world should read every cell")
	}
}

// FuzzDecodeRecords: any blob decodes or fails cleanly; what decodes
// re-encodes to the same records.
func FuzzDecodeRecords(f *testing.F) {
	b, _ := EncodeRecords([]TimelineRecord{{Time: 3, Seq: 4, ID: ID{Layer: Vehicles, Name: "v"}, Data: []byte("{}")}})
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, blob []byte) {
		var rs []TimelineRecord
		if err := DecodeRecords(blob, func(r *TimelineRecord) error {
			c := *r
			c.Data = bytes.Clone(r.Data)
			rs = append(rs, c)
			return nil
		}); err != nil {
			return
		}
		again, err := EncodeRecords(rs)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := DecodeRecords(again, func(r *TimelineRecord) error {
			if r.Time != rs[n].Time || r.Seq != rs[n].Seq || r.ID != rs[n].ID || !bytes.Equal(r.Data, rs[n].Data) {
				t.Fatalf("record %d differs", n)
			}
			n++
			return nil
		}); err != nil || n != len(rs) {
			t.Fatalf("re-decode: %v (%d of %d)", err, n, len(rs))
		}
	})
}
