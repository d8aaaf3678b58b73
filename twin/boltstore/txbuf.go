package boltstore

import "sync"

// txBuf is memory for the values of write transactions, reused from one
// transaction to the next. bbolt keeps a Put's value until Commit copies
// it into pages and lets go of it when Update returns, so what one
// transaction's Puts were given is free once Update has returned. Without
// it the history's values (about a megabyte a flush at 20,000 samples/s)
// and the replay's change chunks (copied once more to put their time
// range in front) were made anew every flush: about a tenth of what the
// server allocates under telemetry, and what is allocated sets how often
// the GC runs, whose marks on a one-core server are what the websocket
// fan-out's worst latencies are made of (issue 16 goal 6).
//
// A transaction takes the buffer before Update and gives it back after
// Update has returned, never inside: another transaction could not take
// it before this one's commit, but a second use inside the same
// transaction would write over values bbolt still holds.
type txBuf struct {
	mu sync.Mutex
	b  []byte
}

// txBufKeep is the largest buffer kept between transactions: one grown
// by a backlog's flush is let go rather than held for good.
const txBufKeep = 8 << 20

// take returns the kept buffer, empty (nil when another transaction has
// it, or none was kept).
func (t *txBuf) take() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b[:0]
	t.b = nil
	return b
}

// give keeps b for the next transaction, once the one that used it has
// ended (Update returned).
func (t *txBuf) give(b []byte) {
	if cap(b) > txBufKeep {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if cap(b) > cap(t.b) {
		t.b = b[:0]
	}
}
