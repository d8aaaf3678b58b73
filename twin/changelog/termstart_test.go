package changelog_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/twin"
)

// TestWritesAtTermStartAreLogged: a write taken the moment the twin starts
// leading is logged like any other. The publisher used to read where to
// start (the feed's head) on its own goroutine after the twin was opened
// for writes, so a write in between was taken as already logged and
// stayed tentative for the whole term: every later Committed waited on it
// (a PUT answered 503 after 15 s; acceptance TestForgedRegionsPropIsNoProofOfScope).
func TestWritesAtTermStartAreLogged(t *testing.T) {
	url := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := join(t, ctx, url, "a")
	// Writers spinning before the term starts: the first Put that the
	// twin takes lands as close to the term's start as it can.
	var wg, writers sync.WaitGroup
	var took atomic.Int64
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			stop := time.Now().Add(30 * time.Second) // never leading: the test fails below
			for i := 0; ctx.Err() == nil && time.Now().Before(stop); i++ {
				_, err := a.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "w"+strconv.Itoa(w)), Geometry: orb.Point{106, 29 + float64(i%100)/1000}})
				switch {
				case err == nil:
					took.Add(1)
					if took.Load() > 200 {
						return
					}
				case errors.Is(err, twin.ErrNotLeader):
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.node.Run(ctx) }()
	defer func() { cancel(); writers.Wait(); wg.Wait() }()
	writers.Wait()
	if took.Load() <= 200 {
		t.Fatalf("the twin took %d writes in 30 s; it never led", took.Load())
	}
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	seq, err := a.node.Committed(cctx)
	if err != nil {
		t.Fatalf("committed: %v (feed head %d, last %d): a change taken at the term's start was never logged", err, a.tw.Feed().Head(), a.tw.Feed().Last())
	}
	if seq < uint64(took.Load()) {
		t.Fatalf("committed %d, want at least %d", seq, took.Load())
	}
}
