// Package writer persists the twin: it reads the change feed on its own
// goroutine and writes batches to a twin.Store, so ingest never waits for
// the database.
//
// Batching: upserts are coalesced to the latest state per object, deletes
// are remembered per object, and telemetry samples (Change.Sample of Upsert
// and History changes) are appended in order. A batch is flushed
// FlushInterval after the previous flush ended (BusyInterval after a big
// one), or earlier once MaxBatch items are pending: under load the store
// sees one big batch per interval (for boltstore one transaction, one
// fsync), not a stream of small ones.
// With the flush the last persisted feed sequence is stored in meta key
// "feed_seq" (in the same transaction when the store is a BatchWriter).
//
// When the store fails (PostGIS restarting, network cut) the batch is kept
// and retried with exponential backoff, while the writer keeps reading the
// feed into the same batch, up to MaxPending items. Beyond that it stops
// reading: the feed itself is the next buffer. The writer is a required
// consumer of the feed (twin.Required), so the feed keeps what it has not
// read and, once that is a whole window, slows telemetry ingest rather than
// lose history. Only if the writer is cut loose (it hung for long, see
// twin.Feed) does it fall out of the feed's window (twin.ErrTooOld); then
// the exact sequence of changes is gone. The writer chooses to recover the STATE
// rather than fail: it re-upserts every current object of the twin (and,
// at the next flush, deletes stored objects the twin no longer has), and it
// logs the gap at error level and counts it, because the telemetry samples
// of the gap cannot be recovered and history has a hole there.
//
// A batch the store refuses for its data (twin.ErrBadData) is not retried
// whole: the bad rows are isolated and quarantined and the rest is written
// (see isolate.go). Ready reports, for /readyz, a writer that has not
// managed to persist pending changes for Options.StallAfter.
package writer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/prometheus/client_golang/prometheus"
)

// MetaFeedSeq is the meta key holding the last flushed feed sequence as an
// 8-byte big-endian uint64; the server passes it to Feed.SetLast at start.
const MetaFeedSeq = "feed_seq"

// ErrStopped is returned (wrapped) by Flush when Run has returned and its
// final flush failed.
var ErrStopped = errors.New("writer: stopped")

// Options configure a Writer. Zero values take defaults.
type Options struct {
	FlushInterval time.Duration // default 200ms
	// BusyInterval replaces FlushInterval after a flush of at least
	// BusyItems items (default 1 s after 2,000): under a stream of
	// telemetry a longer wait coalesces more states per object (a vehicle
	// reporting 5 times a second is written once, not 5 times) and pays one
	// transaction instead of five, while a quiet twin is still persisted
	// within FlushInterval. Acknowledged telemetry does not wait for the
	// store (the change log holds it), so only the store's lag grows.
	BusyInterval time.Duration
	BusyItems    int
	BatchSize    int // items per store call for stores that are not BatchWriters; default 5000
	// MaxBatch flushes before FlushInterval is up once this many items are
	// pending; default 1<<18 (at 50,000 msgs/s a 200 ms batch is ~20,000).
	MaxBatch     int
	MaxPending   int           // items buffered while the store is away; default 1<<20
	RetryMin     time.Duration // first retry delay after a failed flush; default 100ms
	RetryMax     time.Duration // backoff cap; default 10s
	FlushTimeout time.Duration // bound on one flush attempt; default 30s
	// StallAfter is how long the writer may go without a successful flush
	// while changes wait to be persisted before Ready reports it; default
	// 30s (a flush of a huge batch may legitimately take seconds).
	StallAfter time.Duration
	// SeqBlock is how many feed sequence numbers one reservation covers
	// (see ReserveSeqs); default DefaultSeqBlock, at least 2*twin.SeqSlack.
	SeqBlock uint64
	// Backfill, if set, calls fn with the changes after..upto from the
	// change log (changelog.Node.Changes), oldest first; its error wraps
	// twin.ErrSeqGap when the log no longer holds them. A writer that
	// falls out of the feed's window reads there what the feed dropped,
	// telemetry samples included, instead of re-upserting every object and
	// leaving a hole in the history (resync). It is what a new leader's
	// writer meets when the old one's lagged by more than the follower's
	// window. Without it, or past the log's retention: resync.
	Backfill func(ctx context.Context, after, upto uint64, fn func(*twin.Change) error) error
	Logger   *slog.Logger // default slog.Default()
	// Registerer receives the writer's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.FlushInterval <= 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.BusyInterval <= 0 {
		o.BusyInterval = time.Second
	}
	o.BusyInterval = max(o.BusyInterval, o.FlushInterval)
	if o.BusyItems <= 0 {
		o.BusyItems = 2000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1 << 18
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1 << 20
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = 10 * time.Second
		if o.RetryMax < o.RetryMin {
			o.RetryMax = o.RetryMin
		}
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 30 * time.Second
	}
	if o.SeqBlock == 0 {
		o.SeqBlock = DefaultSeqBlock
	}
	o.SeqBlock = max(o.SeqBlock, 2*twin.SeqSlack)
	if o.StallAfter <= 0 {
		o.StallAfter = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// BatchWriter is a store that persists a whole flush in one atomic call
// (twin/boltstore: one transaction, one fsync): deletes, then upserts (a
// stored higher version wins), then samples, then meta metaKey = metaValue.
// The writer uses it instead of the separate Store calls when the store has
// it. It must be idempotent like those calls, since a failed flush is
// retried whole.
type BatchWriter interface {
	WriteBatch(ctx context.Context, deletes []twin.ID, upserts []*twin.Feature, samples []twin.Sample, metaKey string, metaValue []byte) error
}

// Writer moves feed changes into a store. Run owns all batch state; Flush
// and the metrics are safe to use from other goroutines.
type Writer struct {
	scan []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	tw   *twin.Twin
	st   twin.Store
	opts Options
	log  *slog.Logger
	m    metrics

	reqs     chan flushReq
	stopped  chan struct{}
	finalErr error // Run's result; written before stopped is closed
	// durable mirrors flushed for other goroutines (Flushed).
	durable atomic.Uint64

	// For Ready, from any goroutine.
	lastOK      atomic.Int64 // unix ns of the last successful flush (or of New)
	errMu       sync.Mutex
	lastErr     error // last flush error since the last success
	quarantined int   // rows quarantined in the current flush (Run goroutine)

	// Owned by the Run goroutine.
	ctx       context.Context // Run's, for Backfill
	logRetry  time.Time       // a failed Backfill is not tried again before this
	cur       *twin.Cursor    // required feed cursor while Run runs
	pos       uint64          // last feed seq read into the batch
	flushed   uint64          // last feed seq persisted
	upserts   map[twin.ID]*twin.Feature
	deletes   map[twin.ID]struct{}
	samples   []twin.Sample
	prune     bool // after a resync: delete stored objects the twin lacks
	seqStored bool // flushed has been written to meta
}

type flushReq struct {
	ctx  context.Context
	done chan error
}

// New makes a writer that persists every change after the feed's current
// last sequence: create it right after loading the twin from the store and
// before anything mutates the twin. Start it with Run.
func New(tw *twin.Twin, st twin.Store, opts Options) *Writer {
	opts.defaults()
	last := tw.Feed().Last()
	w := &Writer{tw: tw, st: st, opts: opts, log: opts.Logger.With("component", "writer"),
		m: newMetrics(opts.Registerer), reqs: make(chan flushReq), stopped: make(chan struct{}),
		pos: last, flushed: last, seqStored: true,
		upserts: map[twin.ID]*twin.Feature{}, deletes: map[twin.ID]struct{}{}}
	w.lastOK.Store(time.Now().UnixNano())
	w.durable.Store(last)
	return w
}

// ResumeAt makes the writer persist every change after seq instead of
// after the feed's last: a new leader of a replicated twin resumes where
// the store's last writer stopped (MetaFeedSeq), so no change is lost
// across a failover; what is still in its feed window (it installed those
// changes as a follower) is written, versioned upserts keep the newer
// state and history is idempotent. Call it before Run.
func (w *Writer) ResumeAt(seq uint64) {
	w.pos, w.flushed = seq, seq
	w.durable.Store(seq)
}

// Flushed returns the last feed sequence whose change is persisted: every
// change with Seq <= Flushed() is in the store. A durable log under ingest
// acknowledges a message only once the changes it caused are covered (see
// ingest/journal). Safe for concurrent use; it only grows.
func (w *Writer) Flushed() uint64 { return w.durable.Load() }

// setFlushed records that everything up to seq is persisted.
func (w *Writer) setFlushed(seq uint64) {
	w.flushed, w.seqStored = seq, true
	w.durable.Store(seq)
}

// Ready returns an error while the writer cannot make progress: changes
// wait to be persisted and no flush has succeeded for Options.StallAfter.
// It is the server's "writer" readiness check: a store that refuses every
// write, or is away, turns /readyz red, and it turns green again with the
// first successful flush. Safe for concurrent use.
func (w *Writer) Ready(context.Context) error {
	behind := w.tw.Feed().Last() - min(w.durable.Load(), w.tw.Feed().Last())
	if behind == 0 {
		return nil
	}
	age := time.Since(time.Unix(0, w.lastOK.Load()))
	if age < w.opts.StallAfter {
		return nil
	}
	w.errMu.Lock()
	last := w.lastErr
	w.errMu.Unlock()
	if last == nil {
		last = errors.New("no flush attempt finished")
	}
	return fmt.Errorf("writer: nothing persisted for %s, %d changes waiting: %w", age.Round(time.Second), behind, last)
}

// Run reads the feed and flushes until ctx is done, then makes one last
// flush attempt (bounded by FlushTimeout) and returns its error, if any.
// Call Run once.
func (w *Writer) Run(ctx context.Context) error {
	if w.tw.Feed().Limit() != 0 { // ReserveSeqs was called: keep reserving
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.reserve(rctx) }()
		defer func() { cancel(); <-done }()
	}
	w.finalErr = w.run(ctx)
	close(w.stopped)
	return w.finalErr
}

func (w *Writer) run(ctx context.Context) error {
	// A required consumer: the feed keeps what the writer has not read.
	cur := w.tw.Feed().Follow("writer", twin.Required, w.pos)
	w.cur, w.ctx = cur, ctx
	defer cur.Close()
	// A timer re-armed after each flush (not a ticker): a slow flush is
	// followed by a full interval of batching, never by an immediate second
	// flush of the few items that arrived meanwhile.
	tick := time.NewTimer(w.opts.FlushInterval)
	defer tick.Stop()
	var retryAt time.Time
	backoff := w.opts.RetryMin
	attempt := func(ctx context.Context) error {
		n := w.pending()
		if err := w.flush(ctx); err != nil {
			retryAt = time.Now().Add(backoff)
			tick.Reset(backoff)
			level := slog.LevelWarn
			if ctx.Err() != nil {
				// Run is stopping: the final flush takes the batch now.
				level = slog.LevelDebug
			}
			w.log.Log(ctx, level, "flush failed; keeping the batch and retrying", "err", err,
				"pending", w.pending(), "retry_in", backoff)
			backoff = min(2*backoff, w.opts.RetryMax)
			return err
		}
		retryAt, backoff = time.Time{}, w.opts.RetryMin
		if n >= w.opts.BusyItems {
			tick.Reset(w.opts.BusyInterval)
		} else {
			tick.Reset(w.opts.FlushInterval)
		}
		return nil
	}
	for {
		w.read()
		if w.pending() >= w.opts.MaxBatch && time.Now().After(retryAt) {
			_ = attempt(ctx)
			w.read()
		}
		select {
		case <-ctx.Done():
			// ctx is done: the final flush keeps its values, not its
			// cancellation.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.FlushTimeout)
			defer cancel()
			w.read()
			if err := w.flush(fctx); err != nil {
				return fmt.Errorf("writer: final flush, %d items not persisted: %w", w.pending(), err)
			}
			return nil
		case <-cur.C(): // read at the top of the loop
		case <-tick.C:
			if time.Now().After(retryAt) {
				_ = attempt(ctx)
			} else {
				tick.Reset(time.Until(retryAt))
			}
		case req := <-w.reqs:
			// The Flush caller's context bounds its flush, not Run's.
			req.done <- w.flushAll(req.ctx, attempt) //nolint:contextcheck // see above
		}
	}
}

// flushAll persists everything in the feed up to its last sequence at the
// time of the call.
func (w *Writer) flushAll(ctx context.Context, attempt func(context.Context) error) error {
	target := w.tw.Feed().Last()
	for {
		w.read()
		if err := attempt(ctx); err != nil {
			return err
		}
		if w.flushed >= target {
			return nil
		}
	}
}

// Flush persists every change made before the call, or returns the store's
// error (the batch is kept and Run keeps retrying). Used for graceful
// shutdown and in tests. Safe to call from any goroutine. After Run has
// returned it reports the outcome of Run's final flush: nil when everything
// was persisted, else an error wrapping ErrStopped.
func (w *Writer) Flush(ctx context.Context) error {
	req := flushReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case w.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stopped:
		if w.finalErr != nil {
			return fmt.Errorf("%w: %w", ErrStopped, w.finalErr)
		}
		return nil
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) pending() int { return len(w.upserts) + len(w.deletes) + len(w.samples) }

// read moves feed changes into the batch until the feed is drained or
// MaxPending is reached, then releases them in the feed: the batch holds
// them from now on.
func (w *Writer) read() {
	defer func() {
		w.m.pending.Set(float64(w.pending()))
		if w.cur != nil {
			w.cur.Done(w.pos)
		}
	}()
	for {
		room := w.opts.MaxPending - w.pending()
		if room <= 0 {
			return
		}
		cs, err := w.tw.Feed().SinceAppend(w.scan[:0], w.pos, min(room, w.opts.BatchSize))
		w.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			if w.opts.Backfill != nil {
				if time.Now().Before(w.logRetry) {
					return // the log failed just now: not at every feed signal
				}
				err := w.fromLog()
				switch {
				case err == nil:
					continue // the feed holds the rest now, or the log gives more
				case errors.Is(err, errBatchFull):
					return // the run loop flushes, and the next read goes on
				case !errors.Is(err, twin.ErrSeqGap):
					if w.ctx.Err() == nil {
						w.logRetry = time.Now().Add(logRetryAfter)
						w.log.Warn("writer: reading the change log failed; trying again", "err", err, "from_seq", w.pos+1, "retry_in", logRetryAfter)
					}
					return
				}
				w.log.Error("writer: the change log no longer holds what the feed dropped", "err", err)
			}
			w.resync()
			continue
		}
		if len(cs) == 0 {
			return
		}
		for i := range cs {
			w.add(&cs[i])
		}
		w.pos = cs[len(cs)-1].Seq
	}
}

// logRetryAfter is how long a writer whose read of the change log failed
// waits before the next try (the feed's signals come far more often).
const logRetryAfter = time.Second

// errBatchFull stops a read from the change log at MaxBatch pending items.
var errBatchFull = errors.New("writer: batch full")

// fromLog reads the changes after pos that the feed no longer holds from
// the change log (Options.Backfill) into the batch, up to the feed's last
// seq at the call or until the batch holds MaxBatch items (errBatchFull:
// flush, then read on from pos).
func (w *Writer) fromLog() error {
	from := w.pos
	err := w.opts.Backfill(w.ctx, w.pos, w.tw.Feed().Last(), func(c *twin.Change) error {
		w.add(c)
		w.pos = c.Seq
		if w.pending() >= w.opts.MaxBatch {
			return errBatchFull
		}
		return nil
	})
	if w.pos > from {
		w.m.backfilled.Add(float64(w.pos - from))
		w.log.Info("writer: read from the change log what the feed no longer held", "from_seq", from+1, "to_seq", w.pos)
	}
	return err
}

func (w *Writer) add(c *twin.Change) {
	id := c.ID()
	switch c.Kind {
	case twin.Upsert:
		// A delete earlier in the batch stays: it is flushed before the
		// upserts, so a re-created object (version restarting at 1) is not
		// refused by the stored higher version of its previous life.
		w.upserts[id] = c.New
	case twin.Remove:
		delete(w.upserts, id)
		w.deletes[id] = struct{}{}
	}
	if c.Sample != nil && (c.Kind == twin.Upsert || c.Kind == twin.History) {
		w.samples = append(w.samples, *c.Sample)
	}
}

// resync recovers from falling out of the feed window: see the package doc.
func (w *Writer) resync() {
	from := w.pos
	w.pos = w.tw.Feed().Last() // changes after this are read again from the feed
	lost := len(w.samples)
	n := 0
	for _, l := range twin.StoredLayers {
		w.tw.Range(l, func(f *twin.Feature) bool {
			w.upserts[f.ID] = f
			n++
			return true
		})
	}
	w.prune = true
	w.m.resyncs.Inc()
	w.log.Error("writer fell out of the feed window: telemetry history between these sequence numbers is LOST; re-upserting every current object",
		"from_seq", from, "to_seq", w.pos, "objects", n, "buffered_samples_kept", lost)
}

// flush writes the batch: deletes, then upserts, then samples, each in
// chunks of BatchSize, then the feed sequence. On error nothing is dropped;
// every step is idempotent, so the retry repeats it whole.
func (w *Writer) flush(ctx context.Context) error {
	if w.pending() == 0 && !w.prune && w.seqStored && w.flushed == w.pos {
		w.succeeded()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.FlushTimeout)
	defer cancel()
	start, from := time.Now(), w.flushed
	w.quarantined = 0
	err := w.write(ctx)
	if errors.Is(err, twin.ErrBadData) {
		err = w.isolate(ctx, err)
		if err == nil {
			err = w.writeSeq(ctx)
		}
	}
	w.m.seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		w.m.errors.Inc()
		w.errMu.Lock()
		w.lastErr = err
		w.errMu.Unlock()
		return err
	}
	w.succeeded()
	w.log.Debug("flushed", "from_seq", from, "to_seq", w.pos, "upserts", len(w.upserts), "deletes", len(w.deletes), "samples", len(w.samples),
		"quarantined", w.quarantined, "took", time.Since(start))
	w.m.flushed.Add(float64(w.pending() - w.quarantined))
	clear(w.upserts)
	clear(w.deletes)
	w.samples = w.samples[:0]
	w.prune = false
	w.m.pending.Set(0)
	return nil
}

// succeeded records a flush that left nothing read from the feed unpersisted.
func (w *Writer) succeeded() {
	w.lastOK.Store(time.Now().UnixNano())
	w.errMu.Lock()
	w.lastErr = nil
	w.errMu.Unlock()
}

// writeSeq stores the feed sequence alone (after an isolated batch).
func (w *Writer) writeSeq(ctx context.Context) error {
	w.seqStored = false
	v := binary.BigEndian.AppendUint64(nil, w.pos)
	var err error
	if bw, ok := w.st.(BatchWriter); ok {
		err = bw.WriteBatch(ctx, nil, nil, nil, MetaFeedSeq, v)
	} else {
		err = w.st.PutMeta(ctx, MetaFeedSeq, v)
	}
	if err != nil {
		return fmt.Errorf("writer: put %s: %w", MetaFeedSeq, err)
	}
	w.setFlushed(w.pos)
	return nil
}

func (w *Writer) write(ctx context.Context) error {
	if w.prune {
		if err := w.pruneStore(ctx); err != nil {
			return err
		}
	}
	ids := make([]twin.ID, 0, len(w.deletes))
	for id := range w.deletes {
		ids = append(ids, id)
	}
	if bw, ok := w.st.(BatchWriter); ok {
		fs := make([]*twin.Feature, 0, len(w.upserts))
		for _, f := range w.upserts {
			fs = append(fs, f)
		}
		w.seqStored = false
		if err := bw.WriteBatch(ctx, ids, fs, w.samples, MetaFeedSeq, binary.BigEndian.AppendUint64(nil, w.pos)); err != nil {
			return fmt.Errorf("writer: write batch: %w", err)
		}
		w.setFlushed(w.pos)
		return nil
	}
	if len(ids) > 0 {
		for i := 0; i < len(ids); i += w.opts.BatchSize {
			if err := w.st.Delete(ctx, ids[i:min(i+w.opts.BatchSize, len(ids))]); err != nil {
				return fmt.Errorf("writer: delete: %w", err)
			}
		}
	}
	fs := make([]*twin.Feature, 0, min(len(w.upserts), w.opts.BatchSize))
	for _, f := range w.upserts {
		fs = append(fs, f)
		if len(fs) == w.opts.BatchSize {
			if err := w.st.Upsert(ctx, fs); err != nil {
				return fmt.Errorf("writer: upsert: %w", err)
			}
			fs = fs[:0]
		}
	}
	if len(fs) > 0 {
		if err := w.st.Upsert(ctx, fs); err != nil {
			return fmt.Errorf("writer: upsert: %w", err)
		}
	}
	for i := 0; i < len(w.samples); i += w.opts.BatchSize {
		if err := w.st.AppendHistory(ctx, w.samples[i:min(i+w.opts.BatchSize, len(w.samples))]); err != nil {
			return fmt.Errorf("writer: append history: %w", err)
		}
	}
	w.seqStored = false
	if err := w.st.PutMeta(ctx, MetaFeedSeq, binary.BigEndian.AppendUint64(nil, w.pos)); err != nil {
		return fmt.Errorf("writer: put %s: %w", MetaFeedSeq, err)
	}
	w.setFlushed(w.pos)
	return nil
}

// pruneStore deletes stored objects that the twin no longer has (deleted
// during a feed gap).
func (w *Writer) pruneStore(ctx context.Context) error {
	var gone []twin.ID
	err := w.st.Load(ctx, func(f *twin.Feature) error {
		if _, ok := w.tw.Get(f.ID); !ok {
			gone = append(gone, f.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writer: prune after resync: %w", err)
	}
	if len(gone) > 0 {
		if err := w.st.Delete(ctx, gone); err != nil {
			return fmt.Errorf("writer: prune after resync: %w", err)
		}
		w.log.Warn("deleted stored objects removed from the twin during the feed gap", "count", len(gone))
	}
	return nil
}
