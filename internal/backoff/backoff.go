// Package backoff is the wait between two tries of something that failed
// and will be tried again (NATS or the store away, a leader's duty that
// stopped): it doubles from a first wait up to a most, and ends early when
// the caller's context does. One type, so each retry loop does not write
// its own sleep, doubling and cap.
package backoff

import (
	"context"
	"time"
)

// Backoff is a doubling wait. Set First and Most; the zero wait state
// starts at First. Not safe for concurrent use.
type Backoff struct {
	First, Most time.Duration
	d           time.Duration // the next wait; 0 before the first
}

// Next is the wait the next Wait sleeps (for a log line before it).
func (b *Backoff) Next() time.Duration { return max(b.d, b.First) }

// Wait sleeps the next wait and doubles it (up to Most); false if ctx
// ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	d := b.Next()
	b.d = min(2*d, b.Most)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reset makes the next wait First again (after a success).
func (b *Backoff) Reset() { b.d = 0 }
