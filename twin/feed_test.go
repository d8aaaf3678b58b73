package twin

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// TestSeqLimit: producers take sequence numbers only below the reservation
// (less the slack); the one that would cross it waits, the reserver is
// signalled, and a new limit lets it go on; once reservations end, a
// producer that needs a number gets ErrSeqExhausted.
func TestSeqLimit(t *testing.T) {
	tw := New(Options{FeedSize: 64})
	f := tw.Feed()
	f.SetLast(100)
	const room = 10
	f.SetLimit(100+SeqSlack+room, 5)
	put := func(i int) error {
		_, err := tw.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i)), Geometry: orb.Point{106, 29}})
		return err
	}
	for i := 0; i < room; i++ {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-f.NeedLimit():
	default:
		t.Fatal("reserver not signalled with fewer than the low-water mark left")
	}
	done := make(chan error, 1)
	go func() { done <- put(room) }()
	for f.SeqWaits() == 0 {
		select {
		case err := <-done:
			t.Fatalf("producer crossed the reservation: %v (last %d, limit %d)", err, f.Last(), f.Limit())
		case <-time.After(time.Millisecond):
		}
	}
	f.SetLimit(f.Last()+SeqSlack+1, 5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Last() != 100+room+1 {
		t.Fatalf("last = %d", f.Last())
	}
	f.EndReservations()
	if err := put(room + 1); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("put with no reservation left: %v, want ErrSeqExhausted", err)
	}
	if _, _, err := tw.ApplySample(Sample{ID: NewID(Vehicles, "v0"), Time: time.Now()}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("sample with no reservation left: %v", err)
	}
	// No limit (a twin without a store): never waits.
	free := New(Options{FeedSize: 16})
	for i := 0; i < 2*SeqSlack; i++ {
		if _, err := free.Put(&Feature{ID: NewID(Vehicles, fmt.Sprint("v", i%3))}); err != nil {
			t.Fatal(err)
		}
	}
}
