package writer_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/boot"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/writer"
	"github.com/paulmach/orb"
)

// TestSeqReservation: every seq the feed hands out is covered by the
// reservation already in the store when the change is made (so a crash at
// any moment cannot lead to its reuse), the reservation keeps ahead of a
// long stream, and a twin booted from the store after an unflushed stop
// continues above every seq handed out before.
func TestSeqReservation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tw := newTwin()
	if _, err := boot.Load(ctx, st, tw, locate.New()); err != nil {
		t.Fatal(err)
	}
	const block = 2 * twin.SeqSlack
	// FlushInterval an hour: feed_seq stays behind, as after kill -9.
	w := writer.New(tw, st, writer.Options{SeqBlock: block, FlushInterval: 1 << 62})
	if err := w.ReserveSeqs(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	hwm := func() uint64 {
		v, err := st.GetMeta(ctx, writer.MetaFeedHWM)
		if err != nil || len(v) != 8 {
			t.Fatalf("feed_hwm %x, %v", v, err)
		}
		return binary.BigEndian.Uint64(v)
	}
	var last uint64
	const n = 5 * block
	for i := 0; i < n; i++ {
		c, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", i%50)), Geometry: orb.Point{106, 29}})
		if err != nil {
			t.Fatal(err)
		}
		if h := hwm(); c.Seq > h {
			t.Fatalf("seq %d handed out above the stored reservation %d", c.Seq, h)
		}
		last = c.Seq
	}
	if last != n {
		t.Fatalf("last seq %d, want %d", last, n)
	}
	stop()
	t.Logf("writer: %v", <-done)
	stored := hwm()
	st.Close()

	// A new process on the same store.
	st, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tw2 := newTwin()
	if _, err := boot.Load(ctx, st, tw2, locate.New()); err != nil {
		t.Fatal(err)
	}
	w2 := writer.New(tw2, st, writer.Options{SeqBlock: block})
	if err := w2.ReserveSeqs(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := tw2.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "after"), Geometry: orb.Point{106, 29}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Seq <= last || c.Seq != stored+1 {
		t.Fatalf("first seq after restart %d; before it the feed handed out up to %d under reservation %d", c.Seq, last, stored)
	}
	if h := hwm(); h < c.Seq+block-1 {
		t.Fatalf("no new reservation at start: hwm %d", h)
	}
}
