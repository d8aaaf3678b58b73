package backoff

import (
	"context"
	"testing"
	"time"
)

// TestDoublesToMostAndResets: the waits double from First, stop at Most,
// start again at First after Reset, and a done context ends a wait.
func TestDoublesToMostAndResets(t *testing.T) {
	b := Backoff{First: time.Millisecond, Most: 5 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
		if !b.Wait(context.Background()) {
			t.Fatal("Wait returned false with a live context")
		}
	}
	want := []time.Duration{1, 2, 4, 5, 5}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if b.Next() != time.Millisecond {
		t.Fatalf("after Reset the next wait is %v, want 1ms", b.Next())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b = Backoff{First: time.Hour, Most: time.Hour}
	if b.Wait(ctx) {
		t.Fatal("Wait returned true with a done context")
	}
}
