package rules

import (
	"context"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"go.uber.org/goleak"

	"github.com/citytwin/citytwin/twin"
)

// TestRunFollowsFeed runs the engine as the server does and waits, on the
// feed itself, for the alert it writes; Run must end with its context and
// leave no goroutine behind.
func TestRunFollowsFeed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFixture(t, gasA)
	f.put(twin.Devices, "r1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	cur := f.tw.Feed().Subscribe()
	defer cur.Close()
	seen := f.tw.Feed().Last()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.e.Run(ctx) }()
	if _, _, err := f.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Devices, "r1"), Time: f.clk.Now(), Values: twin.ReadingsOf(map[string]float64{"ch4": 40})}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case <-cur.C():
		case <-timeout:
			t.Fatal("no alert from Run")
		}
		cs, err := f.tw.Feed().Since(seen, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			seen = c.Seq
			if c.ID().Layer == twin.Alerts && c.New != nil && c.New.Prop("subject") == "devices/r1" {
				found = true
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
