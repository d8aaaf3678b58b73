package changelog

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

// TestRecordsAndLocate: records of runs of changes and of one change
// (the format written before runs) decode to their changes, and locate
// finds the record holding any seq, or the end of the log.
func TestRecordsAndLocate(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ctx := context.Background()
	sp, err := spine.Open(ctx, spine.Options{URL: ns.ClientURL(), Name: "t", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	tw := twin.New(twin.Options{})
	tw.Replicate()
	n, err := New(tw, sp, Options{LeaseKey: "applier", Lead: func(context.Context, func(context.Context) error) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
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

// recordMsg makes (through record, as the leader does) the record of consecutive changes lo..hi (their
// encodings in blobs).
func recordMsg(blobs [][]byte, lo, hi uint64) *nats.Msg {
	var r record
	for i, b := range blobs {
		r.add(lo+uint64(i), b, 0, nil)
	}
	r.hi = hi
	return r.msg()
}
