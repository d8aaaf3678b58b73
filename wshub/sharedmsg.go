package wshub

import (
	"sync"
	"sync/atomic"
)

// sharedMsg is a routed delta's encoding, queued for every client whose
// view it falls in and reused once each of them has written it. Encoded
// anew for every change, the deltas were a fifth of what the server
// allocates at 20,000 msgs/s with 200 websockets (~8 MB/s), and what is
// allocated sets how often the GC runs, whose marks are what that
// benchmark's worst latencies are made of on one core (issue 16 goal 6).
//
// refs counts the router's reference (from encoding to the end of
// route) and one per queued item. A client releases its item's only
// where it is done with the bytes: after the flusher or its writer has
// copied them into the socket's batch. Where a client lets an item go
// otherwise (coalesced, dropped for a resync, closed) it keeps its
// reference, and the message is left to the GC: a message is never
// reused early, at worst not reused.
type sharedMsg struct {
	b    []byte
	refs atomic.Int32
}

// hold adds a queued item's reference.
func (m *sharedMsg) hold() { m.refs.Add(1) }

// msgPool recycles sharedMsgs.
type msgPool struct{ p sync.Pool }

// maxPooledMsg bounds the messages kept for reuse: a building's delta
// can be large, and a pool of them would pin that much per message.
const maxPooledMsg = 4 << 10

// get returns an empty message holding one reference (the caller's).
func (mp *msgPool) get() *sharedMsg {
	m, _ := mp.p.Get().(*sharedMsg)
	if m == nil {
		m = &sharedMsg{}
	}
	m.b = m.b[:0]
	m.refs.Store(1)
	return m
}

// release drops one reference to m (nil is ignored); the last one gives
// m back to the pool.
func (mp *msgPool) release(m *sharedMsg) {
	if m == nil {
		return
	}
	switch n := m.refs.Add(-1); {
	case n > 0:
	case n == 0:
		mp.put(m)
	default:
		panic("wshub: a routed delta released more often than it was held")
	}
}

// put gives m back for reuse; nobody may hold a reference to it.
func (mp *msgPool) put(m *sharedMsg) {
	if cap(m.b) > maxPooledMsg {
		return
	}
	mp.p.Put(m)
}
