package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// TestUntilOK: tried again until it succeeds; ctx's error once ctx ends.
func TestUntilOK(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := 0
	err := untilOK(context.Background(), log, "test", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("store away")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("untilOK: %v after %d calls, want nil after 3", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = untilOK(ctx, log, "test", func(context.Context) error {
		cancel()
		return errors.New("store away")
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("untilOK after ctx ended: %v, want context.Canceled", err)
	}
}

// TestRestartedUntilDone: a run that fails as it starts is started again;
// the last run's error (a final flush failing at shutdown) is returned.
func TestRestartedUntilDone(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	final := errors.New("final flush failed")
	runs := 0
	err := restartedUntilDone(log, "test", func(ctx context.Context) error {
		runs++
		if runs == 1 {
			return errors.New("store away")
		}
		cancel()
		<-ctx.Done()
		return final
	})(ctx)
	if runs != 2 || !errors.Is(err, final) {
		t.Fatalf("%d runs, %v; want 2 and the final flush's error", runs, err)
	}
}
