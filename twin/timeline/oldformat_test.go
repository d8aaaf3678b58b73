package timeline

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/paulmach/orb"
)

// TestOldChunksReplay: a store holding a chunk written before the binary
// records (../testdata/timeline-records-v0.bin: raw DEFLATE, wire JSON)
// and a later chunk in the current form replays both: the changes in
// order, a snapshot from the chunks, and a checkpoint built over both
// (the old records re-encoded as they were) and read back.
func TestOldChunksReplay(t *testing.T) {
	old, err := os.ReadFile("../testdata/timeline-records-v0.bin")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := Options{}
	opts.defaults()
	bucketNs := int64(opts.Bucket)
	at := time.Date(2026, 5, 1, 8, 0, 10, 123456789, time.UTC) // the old blob's records: at+0..at+5 ns
	v1 := twin.NewID(twin.Vehicles, "v1")
	moved := &twin.Feature{ID: v1, Geometry: orb.Point{106.6, 29.6}, Version: 8, Updated: twin.StampOf(at.Add(20 * time.Second)),
		Props: twin.NewProps(map[string]any{"kind": "muck_truck"}).Pack()}
	blob, err := twin.EncodeRecords([]twin.TimelineRecord{twin.FeatureRecord(moved, moved.Updated.UnixNano(), 30)})
	if err != nil {
		t.Fatal(err)
	}
	b := floorTo(at.UnixNano(), bucketNs)
	if err := st.AppendChanges(ctx, []twin.TimelineChunk{
		{Bucket: b, Key: 1, Min: at.UnixNano(), Max: at.UnixNano() + 5, Data: old},
		{Bucket: b, Key: 2, Min: moved.Updated.UnixNano(), Max: moved.Updated.UnixNano(), Data: blob},
	}); err != nil {
		t.Fatal(err)
	}
	rd, err := NewReader(twin.New(twin.Options{}), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	const (
		v1Old = `{"type":"Feature","id":"vehicles/v1","layer":"vehicles","version":7,"updated":"2026-05-01T08:00:10.123456789Z","observed":"2026-05-01T08:00:09.123456789Z","region":["cq","cq-yz"],"grid":"g1","geometry":{"type":"Point","coordinates":[106.5123457,29.5]},"properties":{"kind":"muck_truck","n":3,"plate":"渝A\u003c1\u003e","speed_kmh":42.5,"tags":["a","b"],"units":{"x":"y"}}}`
		v1New = `{"type":"Feature","id":"vehicles/v1","layer":"vehicles","version":8,"updated":"2026-05-01T08:00:30.123456789Z","region":[],"geometry":{"type":"Point","coordinates":[106.6,29.6]},"properties":{"kind":"muck_truck"}}`
		d1Old = `{"type":"Feature","id":"devices/d1","layer":"devices","version":1,"updated":"2026-05-01T08:00:10.123456789Z","region":[],"geometry":null,"properties":{"kind":"gas"}}`
	)
	wire := func(f *twin.Feature) string {
		if f == nil {
			return "removed"
		}
		b, err := f.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	layers := []twin.Layer{twin.Vehicles, twin.Devices, twin.Alerts}
	cs, err := rd.Changes(ctx, at.Add(-time.Second), at.Add(time.Minute), layers)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{v1Old, d1Old, "removed", v1New}
	if len(cs) != len(want) {
		t.Fatalf("%d changes, want %d: %v", len(cs), len(want), cs)
	}
	for i, c := range cs {
		if got := wire(c.Feature); got != want[i] {
			t.Errorf("change %d (%s seq %d):\n got %s\nwant %s", i, c.ID, c.Seq, got, want[i])
		}
	}
	snapshot := func(q time.Time) map[twin.ID]string {
		t.Helper()
		fs, err := rd.Snapshot(ctx, Query{At: q, Layers: layers})
		if err != nil {
			t.Fatal(err)
		}
		out := map[twin.ID]string{}
		for _, f := range fs {
			out[f.ID] = wire(f)
		}
		return out
	}
	d1 := twin.NewID(twin.Devices, "d1")
	if got := snapshot(at.Add(10 * time.Second)); len(got) != 2 || got[v1] != v1Old || got[d1] != d1Old {
		t.Fatalf("snapshot from the chunks: %v", got)
	}
	// A checkpoint at +30 s over both chunks, then a snapshot from it.
	ck := &ckptState{at: floorTo(at.UnixNano(), bucketNs) - 1, recs: map[twin.ID]*twin.TimelineRecord{}}
	ckAt := at.Add(30 * time.Second).UnixNano()
	if err := ck.advance(ctx, st, ckAt, bucketNs, nil); err != nil {
		t.Fatal(err)
	}
	cells, err := ck.encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutCheckpoint(ctx, ckAt, cells); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(at.Add(40 * time.Second)); len(got) != 2 || got[v1] != v1New || got[d1] != d1Old {
		t.Fatalf("snapshot from the checkpoint: %v", got)
	}
}
