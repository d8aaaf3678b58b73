// Package tcpproxy is a TCP proxy a test can cut (every link closed, new
// ones refused) and restore: a database or broker going away under running
// code, mid-stream, without stopping the real server behind it (the writer's
// outage test in-process, two twin servers losing PostgreSQL in acceptance).
// It can also hold its links: nothing is forwarded, nothing is closed, and
// what was sent meanwhile arrives late, at once, when they are let go (a
// stalled route; a client's buffered publishes after a reconnect).
package tcpproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards connections on a loopback port to an upstream address.
type Proxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	cut      bool
	held     chan struct{} // closed when links may forward; a new one while held (SetHeld)
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// New starts a proxy to upstream on a free loopback port; it stops when
// the test ends.
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}, held: make(chan struct{})}
	close(p.held)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.SetCut(true)
		p.SetHeld(false)
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port, to give the code under test.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			<-held
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// SetCut closes every open link and refuses new ones (true), or lets new
// links through again (false).
func (p *Proxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// SetHeld stops forwarding on every link, keeping them open (true): bytes
// read meanwhile wait and go on, in order, when the links are let go
// (false).
func (p *Proxy) SetHeld(held bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.held: // forwarding
		if held {
			p.held = make(chan struct{})
		}
	default:
		if !held {
			close(p.held)
		}
	}
}
