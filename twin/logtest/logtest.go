// Package logtest stands in for the change log (twin/changelog) in the
// tests of what reads it back: the store writer and the replay recorder
// read there what their feed no longer holds (their Options.Backfill). A
// Log keeps a twin's changes as the change log holds them: encoded and
// decoded again (twin.MarshalChange), so without Old, as a reader of the
// real log gets them. The real log's own reading is tested against a real
// JetStream in twin/changelog.
package logtest

import (
	"context"
	"sync"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// Log is the changes of one twin, kept by Keep.
type Log struct {
	tw      *twin.Twin
	mu      sync.Mutex
	seen    uint64
	changes []twin.Change
	calls   int
}

// New makes an empty log of tw's changes.
func New(tw *twin.Twin) *Log { return &Log{tw: tw} }

// Keep takes the changes tw's feed holds after the last one kept. Call it
// after every change, before the feed's window drops it.
func (l *Log) Keep(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	cs, err := l.tw.Feed().Since(l.seen, 0)
	if err != nil {
		t.Fatalf("logtest: the feed dropped changes after %d before they were kept: %v", l.seen, err)
	}
	for i := range cs {
		b, err := twin.MarshalChange(&cs[i])
		if err != nil {
			t.Fatal(err)
		}
		c, err := twin.UnmarshalChange(b)
		if err != nil {
			t.Fatal(err)
		}
		l.changes = append(l.changes, c)
		l.seen = c.Seq
	}
}

// Changes is a Backfill: fn with each kept change after..upto, oldest
// first.
func (l *Log) Changes(_ context.Context, after, upto uint64, fn func(*twin.Change) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	for i := range l.changes {
		if c := &l.changes[i]; c.Seq > after && c.Seq <= upto {
			if err := fn(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// Calls is how many times Changes was called.
func (l *Log) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}
