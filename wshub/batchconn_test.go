package wshub

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
)

// recConn records each Write call on a socket.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
	closed bool
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recConn) Close() error { r.closed = true; return nil }

// TestBatchConn: frames written during a batch reach the socket in one
// write, in order, at flush; writes outside a batch go through after what
// is buffered; a batch larger than batchMax is written in parts; Close
// writes out a buffered (close) frame first.
func TestBatchConn(t *testing.T) {
	rc := &recConn{}
	b := &batchConn{Conn: rc}
	b.begin()
	for _, s := range []string{"a", "bb", "ccc"} {
		if n, err := b.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatal(n, err)
		}
	}
	if len(rc.writes) != 0 {
		t.Fatalf("written before flush: %q", rc.writes)
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 1 || rc.writes[0] != "abbccc" {
		t.Fatalf("flush: %q", rc.writes)
	}
	if _, err := b.Write([]byte("ping")); err != nil || len(rc.writes) != 2 || rc.writes[1] != "ping" {
		t.Fatalf("write-through: %q %v", rc.writes, err)
	}
	rc.writes = nil
	b.begin()
	big := bytes.Repeat([]byte("x"), batchMax/2+1)
	for _, p := range [][]byte{big, big, []byte("tail")} {
		if _, err := b.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	b.flush()
	if len(rc.writes) != 2 || len(rc.writes[0]) != len(big) || !strings.HasSuffix(rc.writes[1], "xtail") {
		t.Fatalf("large batch written as %d writes", len(rc.writes))
	}
	rc.writes = nil
	b.begin()
	if _, err := b.Write([]byte("close-frame")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil || !rc.closed || len(rc.writes) != 1 || rc.writes[0] != "close-frame" {
		t.Fatalf("close: %q closed=%v %v", rc.writes, rc.closed, err)
	}
}
