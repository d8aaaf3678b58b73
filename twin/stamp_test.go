package twin

import (
	"testing"
	"time"
)

// TestStamp: a stamp keeps the instant (read back in UTC, whatever zone
// it was made in) and the zero time is the zero stamp.
func TestStamp(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	for _, tm := range []time.Time{
		time.Date(2026, 11, 23, 8, 0, 0, 123456789, cst),
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	} {
		s := StampOf(tm)
		if got := s.Time(); !got.Equal(tm) || got.Location() != time.UTC || s.UnixNano() != tm.UnixNano() || s.IsZero() {
			t.Errorf("%v: stamp %d reads back %v", tm, s, got)
		}
	}
	if s := StampOf(time.Time{}); !s.IsZero() || !s.Time().IsZero() {
		t.Errorf("zero time: stamp %d, reads back %v", s, s.Time())
	}
}
