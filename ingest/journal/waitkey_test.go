package journal

import (
	"testing"
	"time"
)

// TestWaitKeyOfMsgID: a plain message's id read back is the key its
// Submit caller waits under, names with '@' included.
func TestWaitKeyOfMsgID(t *testing.T) {
	for _, name := range []string{"v1", "a@b", "@", "渝A·12345", ""} {
		ts := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)
		if got, want := keyOfMsgID(MsgID(name, ts)), keyOf(name, ts); got != want {
			t.Fatalf("%q: %+v, want %+v", name, got, want)
		}
	}
	for _, id := range []string{"", "no-at", "v@x", "v@"} {
		if k := keyOfMsgID(id); k.name != "" {
			t.Fatalf("%q read as %+v", id, k)
		}
	}
}
