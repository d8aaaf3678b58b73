package locate

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// TestFollowReplacesOnSkeletonChange (issue 11 item 11): redrawing,
// removing or adding a street re-places the objects it covers at once,
// each with one Upsert on the feed; objects elsewhere are untouched.
func TestFollowReplacesOnSkeletonChange(t *testing.T) {
	regions, _ := syntheticCity()
	l := New()
	tw := twin.New(twin.Options{Enricher: l, FeedSize: 1 << 16})
	l.Reset(regions, nil)
	tw.Load(regions)
	s1 := regionFeature(LevelStreet, "500101001", "500101", cell(0, 0))
	p := s1.Geometry.Bound().Center()
	far := cell(3, 3).Bound().Center()
	for name, at := range map[string]orb.Point{"v": p, "far": far} {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, name), Geometry: at, Props: twin.NewProps(map[string]any{})}); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := tw.Get(twin.NewID(twin.Vehicles, "v"))
	if !v.InRegion("500101001") {
		t.Fatalf("vehicle placed in %v", v.Region())
	}
	farBefore, _ := tw.Get(twin.NewID(twin.Vehicles, "far"))
	fl := NewFollower(l, tw, slog.New(slog.NewTextHandler(io.Discard, nil)))

	// Remove the street: the vehicle keeps its district only.
	seq := tw.Feed().Last()
	if _, err := tw.Delete(s1.ID); err != nil {
		t.Fatal(err)
	}
	if n := fl.drain(); n != 1 {
		t.Fatalf("re-placed %d objects, want 1", n)
	}
	v, _ = tw.Get(v.ID)
	if !slices.Equal(v.Region(), []string{"500000", "500101"}) {
		t.Fatalf("after removing its street the vehicle is in %v", v.Region())
	}
	upserts := 0
	cs, _ := tw.Feed().Since(seq, 100)
	for _, c := range cs {
		if c.ID() == v.ID && c.Kind == twin.Upsert {
			upserts++
		}
	}
	if upserts != 1 {
		t.Fatalf("%d upserts of the vehicle on the feed, want 1", upserts)
	}
	// A new street under another code takes it in.
	moved := regionFeature(LevelStreet, "500101099", "500101", cell(0, 0))
	if _, err := tw.Put(moved); err != nil {
		t.Fatal(err)
	}
	fl.drain()
	v, _ = tw.Get(v.ID)
	if !v.InRegion("500101099") {
		t.Fatalf("after adding a street the vehicle is in %v", v.Region())
	}
	if f, _ := tw.Get(farBefore.ID); f.Version != farBefore.Version {
		t.Fatalf("an object far from the change was rewritten")
	}
	// A prop change that keeps geometry and code re-places nothing.
	moved.Props.Set("name", "renamed")
	if _, err := tw.Put(moved); err != nil {
		t.Fatal(err)
	}
	if n := fl.drain(); n != 0 {
		t.Fatalf("a rename re-placed %d objects", n)
	}
}

// TestFollowRuns: Run picks up a change without a call to drain.
func TestFollowRuns(t *testing.T) {
	regions, _ := syntheticCity()
	l := New()
	tw := twin.New(twin.Options{Enricher: l, FeedSize: 1 << 16})
	l.Reset(regions, nil)
	tw.Load(regions)
	p := cell(0, 0).Bound().Center()
	if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v"), Geometry: p, Props: twin.NewProps(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	fl := NewFollower(l, tw, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() { done <- fl.Run(ctx) }()
	defer func() { cancel(); t.Logf("follower: %v", <-done) }()
	if _, err := tw.Delete(twin.NewID(twin.Regions, "500101001")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := tw.Get(twin.NewID(twin.Vehicles, "v"))
		if !v.InRegion("500101001") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not re-place the vehicle")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
