package storetest

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// testTimeline: change chunks come back by bucket range in order and are
// idempotent per key; a chunk older than a checkpoint deletes it (and the
// later ones); checkpoints read whole or by cell; versions answer "newest
// at or before"; pruning keeps each object's last version before the cut.
func testTimeline(t *testing.T, st twin.Store) {
	closeStore(t, st)
	tl, ok := st.(twin.Timeline)
	if !ok {
		t.Fatalf("%T does not implement twin.Timeline", st)
	}
	ctx := context.Background()
	chunk := func(bucket int64, key uint64, lo, hi int64, data string) twin.TimelineChunk {
		return twin.TimelineChunk{Bucket: bucket, Key: key, Min: lo, Max: hi, Data: []byte(data)}
	}
	if err := tl.AppendChanges(ctx, []twin.TimelineChunk{chunk(60, 2, 61, 70, "b"), chunk(0, 1, -5, 50, "a"), chunk(120, 1, 120, 130, "c")}); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendChanges(ctx, []twin.TimelineChunk{chunk(60, 2, 61, 70, "b")}); err != nil { // retried flush
		t.Fatal(err)
	}
	scan := func(from, to int64) (out []string) {
		t.Helper()
		if err := tl.ScanChanges(ctx, from, to, func(c twin.TimelineChunk) error {
			out = append(out, string(c.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := scan(0, 60); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("scan [0,60]: %v", got)
	}
	if got := scan(-100, math.MaxInt64); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("scan all: %v", got)
	}

	for _, at := range []int64{100, 200, 300} {
		if err := tl.PutCheckpoint(ctx, at, map[uint32][]byte{1: []byte("one"), 2: []byte("two")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tl.PutCheckpoint(ctx, 400, nil); err != nil { // empty still counts
		t.Fatal(err)
	}
	last := func(at int64) int64 {
		t.Helper()
		v, ok, err := tl.LastCheckpoint(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return -1
		}
		return v
	}
	if last(99) != -1 || last(100) != 100 || last(250) != 200 || last(math.MaxInt64) != 400 {
		t.Fatalf("last checkpoint: %d %d %d %d", last(99), last(100), last(250), last(math.MaxInt64))
	}
	var cells []uint32
	if err := tl.ScanCheckpoint(ctx, 200, nil, func(c uint32, d []byte) error { cells = append(cells, c); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(cells)
	if !slices.Equal(cells, []uint32{1, 2}) {
		t.Fatalf("checkpoint cells %v", cells)
	}
	var got []string
	if err := tl.ScanCheckpoint(ctx, 200, []uint32{2, 9}, func(c uint32, d []byte) error { got = append(got, string(d)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"two"}) {
		t.Fatalf("cell 2: %v", got)
	}
	// A late change at 250 makes the checkpoints at 300 and 400 stale.
	if err := tl.AppendChanges(ctx, []twin.TimelineChunk{chunk(240, 9, 250, 250, "late")}); err != nil {
		t.Fatal(err)
	}
	if last(math.MaxInt64) != 200 {
		t.Fatalf("after a late change the newest checkpoint is %d, want 200", last(math.MaxInt64))
	}

	id := twin.NewID(twin.Buildings, "b1")
	other := twin.NewID(twin.Buildings, "b10")
	vs := []twin.TimelineVersion{{ID: id, At: 10, Seq: 1, Data: []byte("v1")}, {ID: id, At: 20, Seq: 2, Data: []byte("v2")},
		{ID: id, At: 30, Seq: 3, Data: []byte("v3")}, {ID: other, At: 5, Seq: 1, Data: []byte("o1")}}
	if err := tl.PutVersions(ctx, vs); err != nil {
		t.Fatal(err)
	}
	if err := tl.PutVersions(ctx, vs[:1]); err != nil {
		t.Fatal(err)
	}
	at := func(id twin.ID, t0 int64) string {
		t.Helper()
		v, ok, err := tl.VersionAt(ctx, id, t0)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ""
		}
		return string(v.Data)
	}
	if at(id, 9) != "" || at(id, 10) != "v1" || at(id, 25) != "v2" || at(id, math.MaxInt64) != "v3" || at(other, 100) != "o1" {
		t.Fatalf("version at: %q %q %q %q %q", at(id, 9), at(id, 10), at(id, 25), at(id, math.MaxInt64), at(other, 100))
	}

	if err := tl.PruneTimeline(ctx, 60, 200, 25); err != nil {
		t.Fatal(err)
	}
	if got := scan(-100, math.MaxInt64); !slices.Equal(got, []string{"b", "c", "late"}) && !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("after prune: %v", got)
	}
	if last(150) != -1 || last(200) != 200 {
		t.Fatalf("checkpoints after prune: %d %d", last(150), last(200))
	}
	if at(id, 15) != "" || at(id, 25) != "v2" || at(id, 30) != "v3" || at(other, 100) != "o1" {
		t.Fatalf("versions after prune: %q %q %q %q", at(id, 15), at(id, 25), at(id, 30), at(other, 100))
	}
}
