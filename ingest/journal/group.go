package journal

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Committer journals entries from many senders (the MQTT 5 subscriber
// connections and the embedded broker's handover) as shared log messages,
// by group commit: while CommitDepth log messages await JetStream's
// PubAck, what the senders add gathers in one open group, published as
// one log message as soon as one of them is answered (or when it reaches
// MaxBatch or MaxBatchBytes). A lone entry on an idle log goes at once;
// under load the groups grow with the rate and the log's round trip, so
// the log's per-message work (a store write, a delivery and an ack each,
// on the server that stores the stream and on the applier) is paid once
// per group rather than once per socket read of each connection. Through
// Mosquitto at 30k msgs/s those reads held about six messages each, and
// the log's per-message work was over a third of the server's CPU per
// telemetry message.
//
// Every group Add returns is eventually done: confirmed (Err nil), or
// failed with the context Run was given once it ends (the senders then
// leave those messages unacknowledged, for the broker to deliver again).
type Committer struct {
	j     *Journal
	depth int

	mu       sync.Mutex
	full     []*Group // closed to new entries, awaiting their turn, in order
	open     *Group   // collecting; nil when none is
	inflight int      // published, not yet confirmed
	stopped  error    // set once Run has ended: Add fails at once
	wake     chan struct{}
	// free holds the entry slices of confirmed groups for new ones: a
	// group grown from nil to 25-30 entries by append copied its entries
	// five times, 4 % of the server's CPU at 25k msgs/s through Mosquitto.
	free [][]Entry
}

// maxFree bounds Committer.free: enough for the CommitDepth groups in
// flight, the open one and a full one waiting; more would only hold
// memory.
const maxFree = 4

// CommitDepth is how many groups may await their PubAck at once. One
// groups the most: through Mosquitto at 30k msgs/s a log message held 25
// entries at 1 and 11 at 2 (six, one per socket read, before). It costs
// an entry that just missed a group at most one more round trip to the
// log, which stores and answers in order anyway, so a slow answer holds
// up what comes after it at any depth.
const CommitDepth = 1

// NewCommitter makes a Committer on j; call Run to publish what is added.
func NewCommitter(j *Journal, depth int) *Committer {
	if depth <= 0 {
		depth = CommitDepth
	}
	return &Committer{j: j, depth: depth, wake: make(chan struct{}, 1)}
}

// Group is entries journaled together as one log message.
type Group struct {
	es   []Entry
	size int
	f    jetstream.PubAckFuture
	done chan struct{}
	err  error // valid once done is closed
}

// Done is closed once the log holds the group's entries, or the
// Committer gave up on them (Err).
func (g *Group) Done() <-chan struct{} { return g.done }

// Err is nil when the log holds the group's entries; valid once Done is
// closed.
func (g *Group) Err() error { return g.err }

// Span is a run of the entries given to Add that went into group G: N of
// them, in order.
type Span struct {
	G *Group
	N int
}

// errStopped fails groups added after Run ended without a context error.
var errStopped = errors.New("journal: committer stopped")

// Add gives es to the open group (opening new ones as groups fill) and
// appends to dst where they went, in order. It never waits for the log:
// a sender that must not acknowledge its messages before the log has
// them waits on each span's group, in the order of its messages.
func (c *Committer) Add(es []Entry, dst []Span) []Span {
	c.mu.Lock()
	if c.stopped != nil {
		g := &Group{done: make(chan struct{}), err: c.stopped}
		close(g.done)
		c.mu.Unlock()
		return append(dst, Span{g, len(es)})
	}
	for len(es) > 0 {
		g := c.open
		if g == nil {
			g = &Group{done: make(chan struct{})}
			if k := len(c.free); k > 0 {
				g.es, c.free = c.free[k-1], c.free[:k-1]
			}
			c.open = g
		}
		n := 0
		for _, e := range es {
			size := entrySize(e)
			if len(g.es) > 0 && (len(g.es) >= MaxBatch || g.size+size > MaxBatchBytes) {
				break
			}
			g.es = append(g.es, e)
			g.size += size
			n++
		}
		if n == 0 { // g is full: it waits its turn and the next one opens
			c.full = append(c.full, g)
			c.open = nil
			continue
		}
		if k := len(dst); k > 0 && dst[k-1].G == g {
			dst[k-1].N += n
		} else {
			dst = append(dst, Span{g, n})
		}
		es = es[n:]
	}
	ready := c.inflight < c.depth
	c.mu.Unlock()
	if ready {
		c.signal()
	}
	return dst
}

// entrySize is what an entry counts for toward MaxBatchBytes (BatchLen
// and the Committer's groups).
func entrySize(e Entry) int {
	return len(e.Payload) + len(e.Name) + len(e.Topic) + len(e.Source) + 16
}

func (c *Committer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run publishes groups until ctx ends; confirms (with the journal's
// retries) run on a second goroutine, in publish order, and stop waiting
// when ctx ends. Then every group not confirmed, and every later Add,
// fails with ctx's error.
func (c *Committer) Run(ctx context.Context) {
	confirm := make(chan *Group, c.depth)
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		for g := range confirm {
			if _, err := c.j.ConfirmBatch(ctx, g.f, g.es); err != nil {
				g.err = err
			}
			// The senders wait on done and read err, never the entries:
			// the slice goes back for a new group, its payloads let go.
			es := g.es
			g.es, g.f = nil, nil
			clear(es)
			close(g.done)
			c.mu.Lock()
			c.inflight--
			if len(c.free) < maxFree {
				c.free = append(c.free, es[:0])
			}
			c.mu.Unlock()
			c.signal()
		}
	}()
	for {
		select {
		case <-ctx.Done():
		case <-c.wake:
		}
		if ctx.Err() != nil {
			break
		}
		for {
			c.mu.Lock()
			g := c.next()
			if g == nil {
				c.mu.Unlock()
				break
			}
			c.inflight++
			c.mu.Unlock()
			f, err := c.j.AppendBatch(g.es)
			if err != nil {
				f = nil // ConfirmBatch publishes it again, with retries
			}
			g.f = f
			confirm <- g
		}
	}
	close(confirm)
	<-confirmed
	err := ctx.Err()
	if err == nil {
		err = errStopped
	}
	c.mu.Lock()
	c.stopped = err
	left := c.full
	if c.open != nil {
		left = append(left, c.open)
	}
	c.full, c.open = nil, nil
	c.mu.Unlock()
	for _, g := range left {
		g.err = err
		close(g.done)
	}
}

// next takes the group to publish now, if one may go: a full one first,
// then the open one. Caller holds mu.
func (c *Committer) next() *Group {
	if c.inflight >= c.depth {
		return nil
	}
	if len(c.full) > 0 {
		g := c.full[0]
		c.full[0] = nil
		c.full = c.full[1:]
		return g
	}
	g := c.open
	if g == nil || len(g.es) == 0 {
		return nil
	}
	c.open = nil
	return g
}
