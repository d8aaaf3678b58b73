package broker

import (
	"log/slog"
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is mochi's TCP listener with a safer shutdown order: it stops
// accepting before it disconnects clients, and closes any connection accepted
// while closing. mochi's own listener disconnects clients first, so a client
// reconnecting at once could land on the dying listener and wait for a
// CONNACK that never comes (until its connect timeout).
type tcpListener struct {
	id, addr string
	log      *slog.Logger

	// clients, if set, lists the server's clients. Close disconnects
	// them itself rather than through mochi's closeListenerClients, whose
	// GetByListener takes the clients' read lock twice (it calls Len under
	// RLock): a client connecting or leaving in between queues a writer,
	// the second RLock waits behind it, and shutdown deadlocks (seen as a
	// goroutine leak in the ingest tests).
	clients func() map[string]*mqtt.Client
	// disconnect ends one client (mochi's Server.DisconnectClient).
	disconnect func(*mqtt.Client)

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	// conns are the accepted connections whose establish has not returned,
	// and serving counts them. Close waits for serving to reach zero: mochi's
	// attachClient adds to its clients WaitGroup from the establish
	// goroutine, and an Add racing the Wait that Server.Close does right
	// after closing the listeners is a data race (seen under -race in
	// TestBrokerRestartResumes). The Add happens under mu while closed is
	// false, so no establish can start once Close has begun.
	conns   map[net.Conn]struct{}
	serving sync.WaitGroup
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, addr string) *tcpListener { return &tcpListener{id: id, addr: addr} }

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

// Address returns the bound address (the real port after Init).
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Init binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		if l.conns == nil {
			l.conns = make(map[net.Conn]struct{})
		}
		l.conns[conn] = struct{}{}
		l.serving.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.serving.Done()
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("client connection ended", "error", err)
			}
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting, disconnects the listener's clients, closes any
// connection still in its CONNECT handshake, and returns once every
// connection it accepted is done being served.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.mu.Unlock()
	if l.clients == nil || l.disconnect == nil {
		closeClients(l.id)
	} else {
		for _, cl := range l.clients() {
			if cl.Net.Listener == l.id && !cl.Closed() {
				l.disconnect(cl)
			}
		}
	}
	// A connection not yet a client (its CONNECT unread) is not in the
	// clients list; closing it ends its establish. Closing one that was
	// just disconnected above is harmless.
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.serving.Wait()
}
