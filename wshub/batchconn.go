package wshub

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// batchMax bounds what a batch gathers before it is written out (bytes), so
// one drain never holds more than this per client.
const batchMax = 64 << 10

// batchConn is the socket under a client's websocket.Conn. Between begin
// and flush it gathers the frames gorilla writes into one buffer, so the
// writer draining n queued deltas makes one write syscall instead of n:
// with 200 clients at 20,000 msgs/s, per-frame writes were a third of the
// server's CPU. Outside a batch (pings, the upgrade response) writes go
// straight through, after anything still buffered, so frames never
// reorder. Close writes out what is buffered (a close frame queued by
// another goroutine) before closing. Safe for concurrent use.
//
// gorilla sets the write deadline before every frame; during a batch a
// later deadline is only recorded, and set on the socket right before the
// write that carries the frames, since setting it on the poller costs more
// than buffering a small frame. An earlier deadline (the close frame's,
// from another goroutine) goes through at once: it must cut short a write
// blocked on a client that stopped reading.
type batchConn struct {
	net.Conn
	mu    sync.Mutex // guards buf and the writes to the socket
	batch atomic.Bool
	buf   []byte
	// dmu guards deadline, the write deadline last asked for, and set,
	// what the socket has. It is never held across a write, so a
	// deadline can be set while a write blocks.
	dmu           sync.Mutex
	deadline, set time.Time
	// closing is set before a close frame is written (client.close, or
	// the reply to the peer's close); writeFrame refuses from then on, so
	// no data frame follows a close frame on the wire.
	closing atomic.Bool
	// raw is the socket's descriptor for the hub's flusher (tryWrite),
	// nil when the connection is not a plain socket (TLS, a pipe).
	raw syscall.RawConn
}

// errClosing is writeFrame's answer once a close frame is on its way.
var errClosing = errors.New("websocket: close sent")

// writeFrame appends one unfragmented, unmasked text frame (RFC 6455 §5.2:
// a server's frames are not masked) carrying payload to the batch, with
// the write deadline dl for the write that carries it. It is the delta
// writer's path: gorilla's WriteMessage copies each payload twice, takes
// its own locks and sets the deadline per frame, which at ~7 deliveries a
// message was a fifth of the writers' CPU. Only between begin and flush;
// frames written through gorilla (snapshots, control frames) go through
// Write and keep their order with these.
func (b *batchConn) writeFrame(payload []byte, dl time.Time) error {
	return b.writeFrames([][]byte{payload}, dl)
}

// writeFrames is writeFrame for several payloads in order, under one
// round of the locks (a writer drains its deltas in runs of them).
func (b *batchConn) writeFrames(payloads [][]byte, dl time.Time) error {
	b.extendDeadline(dl)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range payloads {
		if err := b.appendFrameLocked(p); err != nil {
			return err
		}
	}
	if !b.batch.Load() {
		return b.flushLocked()
	}
	return nil
}

// appendFrameLocked appends one text frame to the buffer, writing the
// buffer out first when the frame would take it over batchMax (and after,
// when the frame alone is larger). Caller holds mu.
func (b *batchConn) appendFrameLocked(payload []byte) error {
	if b.closing.Load() {
		return errClosing
	}
	if n := len(payload); len(b.buf) > 0 && len(b.buf)+maxFrameHeader+n > batchMax {
		if err := b.flushLocked(); err != nil {
			return err
		}
	}
	b.buf = appendFrame(b.buf, payload)
	if len(b.buf) > batchMax {
		return b.flushLocked()
	}
	return nil
}

// extendDeadline records dl as the deadline of the next write when it is
// later than the one recorded: the client's writer calls it when it
// drains, so that what the flusher left buffered (it writes without a
// deadline) goes out under the drain's deadline, not an expired one.
func (b *batchConn) extendDeadline(dl time.Time) {
	b.dmu.Lock()
	if dl.After(b.deadline) {
		b.deadline = dl
	}
	b.dmu.Unlock()
}

// SetWriteDeadline records t; it sets it on the socket unless a batch is
// gathering and t is later than what the socket has.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	b.deadline = t
	if b.batch.Load() && !b.set.IsZero() && !t.Before(b.set) {
		return nil
	}
	b.set = t
	return b.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines at once.
func (b *batchConn) SetDeadline(t time.Time) error {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	b.deadline, b.set = t, t
	return b.Conn.SetDeadline(t)
}

// applyDeadline sets the recorded deadline on the socket before a write.
func (b *batchConn) applyDeadline() error {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	if b.deadline.Equal(b.set) {
		return nil
	}
	b.set = b.deadline
	return b.Conn.SetWriteDeadline(b.deadline)
}

// Write buffers p during a batch, else writes it (after the buffer).
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batch.Load() {
		if len(b.buf)+len(p) > batchMax {
			if err := b.flushLocked(); err != nil {
				return 0, err
			}
		}
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	if err := b.applyDeadline(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

// begin starts gathering writes.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batch.Store(true)
	b.mu.Unlock()
}

// flush ends the batch and writes what it gathered, under the write
// deadline the last frame set.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batch.Store(false)
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.applyDeadline(); err != nil {
		return err
	}
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 2*batchMax {
		b.buf = nil // a large snapshot went through: do not keep its buffer
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// tryWriteFrames is the flusher's write (Hub.flushLoop): it frames
// payloads into the buffer and writes it with one non-blocking write
// syscall, so one goroutine can write every client's deltas in turn and
// none waits on a socket that is full. It reports whether the buffer went
// out whole; what did not stays buffered, ahead of any later frame, for
// the client's writer to write with its deadline. Caller holds mu (the
// flusher takes it with TryLock: a writer blocked on a full socket holds
// it) and has checked raw != nil and that nothing was buffered.
func (b *batchConn) tryWriteFrames(payloads [][]byte) bool {
	for _, p := range payloads {
		if b.closing.Load() {
			return false
		}
		b.buf = appendFrame(b.buf, p)
	}
	var n int
	var werr error
	err := b.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b.buf)
			if werr != syscall.EINTR {
				return true // never wait for the socket: EAGAIN is the writer's
			}
		}
	})
	if n > 0 {
		b.buf = b.buf[:copy(b.buf, b.buf[n:])]
	}
	return err == nil && werr == nil && len(b.buf) == 0
}

// maxFrameHeader is the longest header appendFrame writes.
const maxFrameHeader = 10

// appendFrame appends one unfragmented, unmasked text frame (RFC 6455
// §5.2: a server's frames are not masked) carrying payload to buf.
func appendFrame(buf, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		buf = append(buf, 0x81, byte(n))
	case n <= 0xffff:
		buf = append(buf, 0x81, 126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, 0x81, 127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return append(buf, payload...)
}

// Close writes out what is buffered, then closes the socket. When a write
// is blocked on the socket (a client that stopped reading) it closes at
// once, which ends that write, instead of waiting out its deadline.
func (b *batchConn) Close() error {
	if b.mu.TryLock() {
		_ = b.flushLocked()
		b.mu.Unlock()
	}
	return b.Conn.Close()
}

// hijacker hands gorilla's upgrader a batchConn around the hijacked socket,
// after setting the socket's send buffer to sendBuffer bytes (when > 0).
type hijacker struct {
	http.ResponseWriter
	sendBuffer int
	bc         *batchConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if h.sendBuffer > 0 {
		setSendBuffer(c, h.sendBuffer)
	}
	h.bc = &batchConn{Conn: c}
	// Only a connection that is itself the socket (or says so, as the
	// server's connection limiter does) is written to by descriptor: a
	// TLS connection's bytes are not the socket's.
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.bc.raw = raw
		}
	}
	return h.bc, rw, nil
}

// setSendBuffer sets SO_SNDBUF on the TCP socket under c, looking through
// wrappers that expose it with NetConn (as tls.Conn and the server's
// connection limiter do). Best effort: other sockets keep the kernel's.
func setSendBuffer(c net.Conn, n int) {
	for range 8 {
		if s, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
			_ = s.SetWriteBuffer(n)
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}
