package gctune

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{140 * mb, 512 * mb, 366}, // the demo city: 512 MB of headroom is GOGC 366
		{600 * mb, 512 * mb, 100}, // a large heap keeps its own proportion
		{1 * mb, 512 * mb, 1000},  // capped
		{0, 512 * mb, 100},        // nothing live read yet
		{140 * mb, 0, 100},        // off
	} {
		if got := Percent(tc.live, tc.floor, 100, 1000); got != tc.want {
			t.Errorf("Percent(%d MB live, %d MB floor) = %d, want %d", tc.live/mb, tc.floor/mb, got, tc.want)
		}
	}
}

// TestRunRaisesAndRestores: with a floor far above this test's live heap,
// Run raises GOGC (the gauge says so) and sets it back when it ends.
func TestRunRaisesAndRestores(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test; unset now: Run must see no GOGC of the operator's
	os.Unsetenv("GOGC")
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	runtime.GC()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{MinHeadroom: 1 << 40, Every: time.Millisecond, Registerer: reg}) }()
	deadline := time.Now().Add(10 * time.Second)
	for gauge(reg) != 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("twin_gc_percent %v, want 1000", gauge(reg))
		}
		time.Sleep(time.Millisecond)
	}
	if p := debug.SetGCPercent(1000); p != 1000 {
		t.Fatalf("GOGC in force %d, want 1000", p)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("GOGC after Run %d, want its base 100", p)
	}
}

// gauge is twin_gc_percent, -1 before Run registers it.
func gauge(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "twin_gc_percent" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestRunLeavesExplicitGOGC: GOGC in the environment is the operator's.
func TestRunLeavesExplicitGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	reg := prometheus.NewRegistry()
	if err := Run(context.Background(), Options{MinHeadroom: 1 << 40, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Gather(); len(n) != 0 {
		t.Fatalf("registered %d metrics with GOGC set; want none", len(n))
	}
}
