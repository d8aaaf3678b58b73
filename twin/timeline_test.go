package twin

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

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
	out := decodeAll(t, blob)
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

// timelineFeatures are features of every shape the binary form holds.
func timelineFeatures() []*Feature {
	at := time.Date(2026, 5, 1, 8, 0, 10, 123456789, time.UTC)
	return []*Feature{
		{ID: NewID(Vehicles, "v1"), Geometry: orb.Point{106.51234567891, 29.5}, Version: 7, Updated: StampOf(at), Observed: StampOf(at.Add(-time.Second)),
			Place: NewPlace([]string{"cq", "cq-yz"}, "g1"), more: &more{source: "src", cells: &[]uint64{1, 2}},
			Props: NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 42.5, "plate": "渝A<1>", "n": 3, "big": int64(1) << 40,
				"tags": []any{"a", 1.5, nil, true}, "names": []string{"x", "y"}, "units": map[string]any{"x": "y", "z": map[string]any{}}}).Pack()},
		{ID: NewID(Buildings, "b1"), Geometry: orb.Polygon{{{106.5, 29.5}, {106.501, 29.5}, {106.501, 29.501}, {106.5, 29.5}}}, Version: 2, Updated: StampOf(at),
			Props: NewProps(map[string]any{"risk_color": "red"}).Pack()},
		{ID: NewID(Devices, "d1"), Version: 1, Props: NewProps(map[string]any{"kind": "gas"})}, // map form, no times
		{ID: NewID(Incidents, "i1"), Geometry: orb.LineString{{106.5, 29.5}, {106.6, 29.6}}, Updated: StampOf(at),
			Props: NewProps(map[string]any{"m": map[string]string{"a": "b"}})}, // a value the packed form does not hold
		{ID: NewID(Alerts, "a1"), Geometry: orb.Point{-0.5, -1e-9}},
	}
}

// TestTimelineFeatureBinary: a record of a feature (the recorder's) reads
// back as the feature the wire JSON gives, the form records had before.
func TestTimelineFeatureBinary(t *testing.T) {
	fs := timelineFeatures()
	var in []TimelineRecord
	for i, f := range fs {
		in = append(in, TimelineRecord{Time: int64(i), Seq: uint64(i), ID: f.ID, Feature: f, HasBound: f.Geometry != nil, Bound: bound(f)})
	}
	blob, err := EncodeRecords(in)
	if err != nil {
		t.Fatal(err)
	}
	if blob[0] != blobZstd {
		t.Fatalf("format byte %#x", blob[0])
	}
	i := 0
	if err := DecodeRecords(blob, func(r *TimelineRecord) error {
		want := fs[i]
		if !r.Binary || r.ID != want.ID || r.Bound != in[i].Bound || r.HasBound != in[i].HasBound {
			t.Errorf("record %d: %+v", i, r)
		}
		got, err := r.DecodeFeature()
		if err != nil {
			t.Fatalf("%s: %v", want.ID, err)
		}
		wire, _ := want.MarshalJSON()
		old := &Feature{} // what a record held before: the wire JSON
		if err := old.UnmarshalJSON(wire); err != nil {
			t.Fatal(err)
		}
		gw, _ := got.MarshalJSON()
		if string(gw) != string(wire) || got.ID != want.ID || got.Version != old.Version || got.Grid() != old.Grid() ||
			got.Updated != old.Updated || got.Observed != old.Observed {
			t.Errorf("%s:\n got %s\nwant %s", want.ID, gw, wire)
		}
		if !geomEqual(got.Geometry, old.Geometry) {
			t.Errorf("%s: geometry %v, the wire gives %v", want.ID, got.Geometry, old.Geometry)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if i != len(fs) {
		t.Fatalf("%d records of %d", i, len(fs))
	}
}

func bound(f *Feature) orb.Bound {
	if f.Geometry == nil {
		return orb.Bound{}
	}
	return f.Geometry.Bound()
}

func geomEqual(a, b orb.Geometry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return orb.Equal(a, b)
}

// TestTimelineReadsOldBlobs: a blob written before the binary form and
// zstd (testdata/timeline-records-v0.bin: raw DEFLATE, wire JSON data,
// written by the recorder's record and EncodeRecords as of 750879e, for
// timelineFeatures' first three with fewer props, and a removal) reads as
// it did, and its records re-encode (a checkpoint built over old chunks)
// to the same states.
func TestTimelineReadsOldBlobs(t *testing.T) {
	blob, err := os.ReadFile("testdata/timeline-records-v0.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"type":"Feature","id":"vehicles/v1","layer":"vehicles","version":7,"updated":"2026-05-01T08:00:10.123456789Z","observed":"2026-05-01T08:00:09.123456789Z","region":["cq","cq-yz"],"grid":"g1","geometry":{"type":"Point","coordinates":[106.5123457,29.5]},"properties":{"kind":"muck_truck","n":3,"plate":"渝A\u003c1\u003e","speed_kmh":42.5,"tags":["a","b"],"units":{"x":"y"}}}`,
		`{"type":"Feature","id":"buildings/b1","layer":"buildings","version":2,"updated":"2026-05-01T08:00:10.123456789Z","region":[],"geometry":{"type":"Polygon","coordinates":[[[106.5,29.5],[106.501,29.5],[106.501,29.501],[106.5,29.5]]]},"properties":{"risk_color":"red"}}`,
		`{"type":"Feature","id":"devices/d1","layer":"devices","version":1,"updated":"2026-05-01T08:00:10.123456789Z","region":[],"geometry":null,"properties":{"kind":"gas"}}`,
		"", // alerts/a1 removed
	}
	wantTime := []int64{0, 1, 2, 5} // after at
	at := time.Date(2026, 5, 1, 8, 0, 10, 123456789, time.UTC).UnixNano()
	read := func(blob []byte) []TimelineRecord {
		t.Helper()
		var rs []TimelineRecord
		if err := DecodeRecords(blob, func(r *TimelineRecord) error {
			c := *r
			c.Data = bytes.Clone(r.Data)
			rs = append(rs, c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(rs) != len(want) {
			t.Fatalf("%d records, want %d", len(rs), len(want))
		}
		for i, r := range rs {
			f, err := r.DecodeFeature()
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if f != nil {
				b, _ := f.MarshalJSON()
				got = string(b)
			}
			if got != want[i] || r.Binary || r.Removed != (i == 3) || r.Time != at+wantTime[i] {
				t.Errorf("record %d (%s, t %d, seq %d):\n got %s\nwant %s", i, r.ID, r.Time, r.Seq, got, want[i])
			}
		}
		return rs
	}
	rs := read(blob)
	again, err := EncodeRecords(rs)
	if err != nil {
		t.Fatal(err)
	}
	read(again)
}

// TestFeatureRecordCorrupt: a damaged binary feature fails to decode,
// never panics (zstd's checksum catches most damage first; this is what
// gets past it).
func TestFeatureRecordCorrupt(t *testing.T) {
	for _, f := range timelineFeatures() {
		b, err := appendFeatureRecord(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeFeatureRecord(f.ID, b); err != nil {
			t.Fatalf("%s: %v", f.ID, err)
		}
		for n := range len(b) {
			if _, err := decodeFeatureRecord(f.ID, b[:n]); err == nil {
				t.Errorf("%s cut at %d decodes", f.ID, n)
			}
			for _, v := range []byte{0, 1, 0x7f, 0x80, 0xff} {
				c := bytes.Clone(b)
				c[n] = v
				if g, err := decodeFeatureRecord(f.ID, c); err == nil {
					_, _ = g.MarshalJSON() // reading what decoded must not panic either
					for range g.Props.All() {
					}
				}
			}
		}
	}
}

// FuzzDecodeRecords: any blob decodes or fails cleanly; what decodes
// re-encodes to the same records.
func FuzzDecodeRecords(f *testing.F) {
	b, _ := EncodeRecords([]TimelineRecord{{Time: 3, Seq: 4, ID: ID{Layer: Vehicles, Name: "v"}, Data: []byte("{}")}})
	f.Add(b)
	var rs []TimelineRecord
	for _, ft := range timelineFeatures() {
		rs = append(rs, TimelineRecord{ID: ft.ID, Feature: ft, HasBound: ft.Geometry != nil, Bound: bound(ft)})
	}
	b, _ = EncodeRecords(rs)
	f.Add(b)
	if old, err := os.ReadFile("testdata/timeline-records-v0.bin"); err == nil {
		f.Add(old)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{blobZstd})
	rng := rand.New(rand.NewPCG(1, 2))
	f.Add(logRunBlob(f, rng, logTestChanges(rng, 30)))
	f.Add([]byte{blobLog})
	f.Fuzz(func(t *testing.T, blob []byte) {
		var rs []TimelineRecord
		var states []string // a change-log record's state, as JSON
		if err := DecodeRecords(blob, func(r *TimelineRecord) error {
			c := *r
			c.Data = bytes.Clone(r.Data)
			f, err := c.DecodeFeature()
			if err == nil && f != nil {
				_, _ = f.MarshalJSON()
			}
			if c.Logged || c.Feature != nil { // a change-log run's record
				if err != nil {
					return err // read lazily: the blob is bad after all
				}
				j, _ := f.MarshalJSON()
				states = append(states, string(j))
			}
			rs = append(rs, c)
			return nil
		}); err != nil {
			return
		}
		again, err := EncodeRecords(rs)
		if err != nil {
			t.Fatal(err)
		}
		n, logged := 0, 0
		if err := DecodeRecords(again, func(r *TimelineRecord) error {
			if rs[n].Logged || rs[n].Feature != nil {
				// Re-encoded in the recorder's own form: the same state.
				f, err := r.DecodeFeature()
				if err != nil {
					t.Fatalf("record %d: %v", n, err)
				}
				if j, _ := f.MarshalJSON(); string(j) != states[logged] || r.Seq != rs[n].Seq || r.Time != rs[n].Time || r.ID != rs[n].ID {
					t.Fatalf("record %d: %s, was %s", n, j, states[logged])
				}
				logged++
				n++
				return nil
			}
			if r.Time != rs[n].Time || r.Seq != rs[n].Seq || r.ID != rs[n].ID || !bytes.Equal(r.Data, rs[n].Data) || r.Binary != rs[n].Binary ||
				r.HasBound != rs[n].HasBound || r.HasBound && !sameBound(r.Bound, rs[n].Bound) {
				t.Fatalf("record %d differs", n)
			}
			n++
			return nil
		}); err != nil || n != len(rs) {
			t.Fatalf("re-decode: %v (%d of %d)", err, n, len(rs))
		}
	})
}

func sameBound(a, b orb.Bound) bool {
	same := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	return same(a.Min[0], b.Min[0]) && same(a.Min[1], b.Min[1]) && same(a.Max[0], b.Max[0]) && same(a.Max[1], b.Max[1])
}

// TestEncodeRecordsWith: the caller's scratch gives the same blob as
// EncodeRecords, and is kept, grown, for the next call (whose blob does
// not alias it).
func TestEncodeRecordsWith(t *testing.T) {
	var scratch []byte
	var blobs [][]byte
	for n := 1; n <= 300; n *= 10 {
		rs := make([]TimelineRecord, n)
		for i := range rs {
			rs[i] = TimelineRecord{Time: int64(i), Seq: uint64(i + 1), ID: NewID(Vehicles, string(rune('a'+i%26))),
				Feature: &Feature{ID: NewID(Vehicles, string(rune('a'+i%26))), Geometry: orb.Point{106.5, 29.5 + float64(i)/1e4}, Version: uint64(i)}}
		}
		want, err := EncodeRecords(rs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeRecordsWith(&scratch, rs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d records: EncodeRecordsWith differs from EncodeRecords", n)
		}
		if cap(scratch) == 0 {
			t.Fatalf("%d records: scratch not kept", n)
		}
		blobs = append(blobs, got)
	}
	for i, b := range blobs { // still readable: none was overwritten by the next encode
		k := 0
		if err := DecodeRecords(b, func(*TimelineRecord) error { k++; return nil }); err != nil || k != []int{1, 10, 100}[i] {
			t.Fatalf("blob %d: %d records, %v", i, k, err)
		}
	}
}

// TestEncodeRecordsPaced: a paced blob (several zstd frames, pause called
// between the steps) reads back as the same records, in order, as one
// encoded at once; without a pause it is byte for byte EncodeRecordsWith's.
func TestEncodeRecordsPaced(t *testing.T) {
	fs := timelineFeatures()
	var in []TimelineRecord
	for i := range 3000 { // > pacedRecords, and > pacedFrame of raw bytes
		f := fs[i%len(fs)]
		in = append(in, TimelineRecord{Time: int64(i), Seq: uint64(i), ID: f.ID, Feature: f, HasBound: f.Geometry != nil, Bound: bound(f)})
	}
	var scratch []byte
	whole, err := EncodeRecordsWith(&scratch, in)
	if err != nil {
		t.Fatal(err)
	}
	raw := len(scratch)
	pauses := 0
	paced, err := EncodeRecordsPaced(&scratch, in, func() { pauses++ })
	if err != nil {
		t.Fatal(err)
	}
	steps := (len(in)+pacedRecords-1)/pacedRecords - 1 + (raw+pacedFrame-1)/pacedFrame
	if raw <= pacedFrame || pauses != steps {
		t.Fatalf("%d raw bytes, %d pauses; want more than %d bytes and %d pauses", raw, pauses, pacedFrame, steps)
	}
	read := func(blob []byte) (out []string) {
		t.Helper()
		if err := DecodeRecords(blob, func(r *TimelineRecord) error {
			f, err := r.DecodeFeature()
			if err != nil {
				return err
			}
			wire, _ := f.MarshalJSON()
			out = append(out, fmt.Sprint(r.Time, r.Seq, r.ID, string(wire)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, b := read(whole), read(paced); len(a) != len(in) || !slices.Equal(a, b) {
		t.Fatalf("paced blob reads %d records, at once %d; same: %v", len(b), len(a), slices.Equal(a, b))
	}
	again, _ := EncodeRecordsPaced(&scratch, in, nil)
	if !bytes.Equal(again, whole) {
		t.Fatal("without a pause the blob differs from EncodeRecordsWith's")
	}
}
