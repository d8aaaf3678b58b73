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

// TestWaitNotify: outcomes reach the longest-waiting entry of a line
// first (the same line twice: applied, then duplicate), a call is woken
// once all its entries are answered, and what is left of a call that
// stops waiting is removed, so nothing stays registered.
func TestWaitNotify(t *testing.T) {
	j := &Journal{waiters: map[waitKey][]waiter{}}
	ts := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	a := []Entry{{Name: "v1", TS: ts}, {Name: "v1", TS: ts}, {Name: "v2", TS: ts}}
	b := []Entry{{Name: "v1", TS: ts}, {Name: "v3", TS: ts}}
	wa, wb := j.wait(a), j.wait(b)
	if n := j.nwait.Load(); n != 5 {
		t.Fatalf("%d waiting, want 5", n)
	}
	j.notify(keyOf("v1", ts), result{outcome: "applied"})
	j.notify(keyOf("v1", ts), result{outcome: "duplicate"})
	j.notify(keyOf("v9", ts), result{outcome: "applied"}) // nobody waits: dropped
	select {
	case <-wa.done:
		t.Fatal("a woken with v2 unanswered")
	default:
	}
	j.notify(keyOf("v2", ts), result{outcome: "history"})
	select {
	case <-wa.done:
	default:
		t.Fatal("a not woken with every entry answered")
	}
	if got := [3]string{wa.out[0].outcome, wa.out[1].outcome, wa.out[2].outcome}; got != [3]string{"applied", "duplicate", "history"} {
		t.Fatalf("a's outcomes %v", got)
	}
	j.notify(keyOf("v1", ts), result{outcome: "duplicate"}) // b's first entry
	j.unwait(b, wb)                                         // b stops waiting for v3
	if n := j.nwait.Load(); n != 0 || len(j.waiters) != 0 {
		t.Fatalf("%d waiting, %d keys left", n, len(j.waiters))
	}
	if wb.out[0].outcome != "duplicate" || wb.out[1].outcome != "" {
		t.Fatalf("b's outcomes %+v", wb.out)
	}
	select {
	case <-wb.done:
	default:
		t.Fatal("b's done not closed once settled")
	}
	j.unwait(a, wa) // a second unwait of a settled call changes nothing
}
