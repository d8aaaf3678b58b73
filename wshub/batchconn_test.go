package wshub

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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

// TestWriteFrame: frames built by writeFrame, of every length encoding
// (7-bit, 16-bit, 64-bit) and across batch boundaries, read back as the
// same messages by gorilla's client; once a close frame is on its way no
// frame is written.
func TestWriteFrame(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 200000, 3}
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &hijacker{ResponseWriter: w}
		up := websocket.Upgrader{}
		conn, err := up.Upgrade(hj, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		dl := time.Now().Add(10 * time.Second)
		hj.bc.begin()
		for i, n := range sizes {
			if i == 4 { // some frames outside a batch
				if err := hj.bc.flush(); err != nil {
					done <- err
					return
				}
			}
			if err := hj.bc.writeFrame(bytes.Repeat([]byte{byte('a' + i)}, n), dl); err != nil {
				done <- err
				return
			}
		}
		if err := hj.bc.flush(); err != nil {
			done <- err
			return
		}
		hj.bc.closing.Store(true)
		if err := hj.bc.writeFrame([]byte("late"), dl); !errors.Is(err, errClosing) {
			done <- fmt.Errorf("write after close: %w", err)
			return
		}
		done <- nil
		_, _, _ = conn.ReadMessage() // until the client goes
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, n := range sizes {
		typ, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d (%d bytes): %v", i, n, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(p, bytes.Repeat([]byte{byte('a' + i)}, n)) {
			t.Fatalf("message %d: type %d, %d bytes, want text of %d", i, typ, len(p), n)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestTryWriteFramesKeepsRest: the flusher's non-blocking write on a
// socket whose reader stopped takes what fits and keeps the rest
// buffered, and the writer's blocking flush later sends it: the reader
// gets every message, whole and in order.
func TestTryWriteFramesKeepsRest(t *testing.T) {
	sizes := []int{1, 125, 126, 4000, 65535, 65536, 70000}
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, sizes[i%len(sizes)]) }
	full := make(chan int, 1)
	read := make(chan struct{})
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &hijacker{ResponseWriter: w, sendBuffer: 16 << 10}
		conn, err := (&websocket.Upgrader{}).Upgrade(hj, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		b := hj.bc
		if b.raw == nil {
			done <- errors.New("no descriptor for a TCP socket")
			return
		}
		n := 0
		for ok := true; ok; n++ {
			if n > 10000 {
				done <- errors.New("the socket never filled")
				return
			}
			b.mu.Lock()
			ok = b.tryWriteFrames([][]byte{payload(n)})
			b.mu.Unlock()
		}
		if len(b.buf) == 0 {
			done <- errors.New("a write the socket did not take whole left nothing buffered")
			return
		}
		full <- n
		<-read
		done <- b.flush()
		_, _, _ = conn.ReadMessage() // until the client goes
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	select {
	case n = <-full:
	case err := <-done:
		t.Fatal(err)
	}
	close(read)
	for i := range n {
		typ, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d of %d: %v", i, n, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(p, payload(i)) {
			t.Fatalf("message %d: type %d, %d bytes, want text of %d", i, typ, len(p), len(payload(i)))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
