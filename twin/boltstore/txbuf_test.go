package boltstore

import "testing"

// TestTxBuf: a buffer given back is what the next take gets, empty; while
// one transaction has it another gets none (so two never share one); a
// smaller one does not replace it, nor does one over txBufKeep.
func TestTxBuf(t *testing.T) {
	var tb txBuf
	if b := tb.take(); b != nil {
		t.Fatalf("first take: %d bytes of capacity, want none", cap(b))
	}
	b := append(make([]byte, 0, 1024), "abc"...)
	tb.give(b)
	got := tb.take()
	if len(got) != 0 || cap(got) != 1024 || &got[:1][0] != &b[0] {
		t.Fatalf("take after give: len %d cap %d, want the given array, empty", len(got), cap(got))
	}
	if again := tb.take(); again != nil {
		t.Fatal("a second take while the first holds the buffer got it too")
	}
	tb.give(got)
	tb.give(make([]byte, 0, 16))
	if c := cap(tb.take()); c != 1024 {
		t.Fatalf("a smaller buffer replaced the kept one: cap %d", c)
	}
	tb.give(make([]byte, 0, txBufKeep+1))
	if b := tb.take(); b != nil {
		t.Fatalf("kept a buffer over txBufKeep (%d)", cap(b))
	}
}
