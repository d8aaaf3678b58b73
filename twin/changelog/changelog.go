// Package changelog makes several servers one twin (issue 13): a JetStream
// stream, the change log (spine.ChangeStream), holds every twin.Change in
// order, and its stream sequence IS the change's feed seq on every server.
//
// One server at a time leads (the holder of the spine lease). The leader
// mutates its twin as a single server always did (telemetry, HTTP writes,
// rules, incidents, the demo); each change is tentative until the leader
// has published it to the log with Nats-Expected-Last-Sequence = seq-1
// (asynchronously, pipelined) and JetStream has confirmed it at exactly
// that stream sequence; then the feed commits it and only then do the
// feed's consumers (rules, notifications, store writer, websockets, tiles)
// see it. The expected-sequence check, and after a term's first record the
// expected previous record of the same term (Nats-Expected-Last-Msg-Id),
// is the fence: a deposed leader still publishing can never fork the log,
// its publish fails, and it steps down.
//
// Every other server follows: an ordered consumer of the log installs each
// change into its twin exactly as recorded (twin.Install: same seq, same
// version, no enrichment, no rules), so its feed, and so its websockets,
// tiles and locate index, carry the same seqs as the leader's.
//
// On promotion the new leader first installs the log to its end (its feed
// seq then equals the log's last seq), then opens its twin to writes and
// starts the leader's duties (Options.Lead: effects and the store writer).
// On demotion (lease lost, a publish refused or failed) it stops them,
// waits briefly for the log to take what is in flight, takes back the
// tentative changes the log did not take (twin.Fence: nobody saw them) and
// follows the log again.
//
// A follower that finds a gap (it fell out of the log's retention) or a
// record it cannot decode cannot make its twin right by itself: Run
// returns the error and the server exits, to be restarted and reload from
// the store (crash-only; see docs/ARCHITECTURE.md).
package changelog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/backoff"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

// Options configure a Node.
type Options struct {
	// LeaseKey is the spine lease whose holder leads. Required.
	LeaseKey string
	// Lead runs this server's leader duties (effects, the store writer)
	// until ctx ends, then stops them in order, calling drain after the
	// effects and before the store writer's final flush: drain waits until
	// the log holds every change made so far (or leadership is lost).
	// Required.
	Lead func(ctx context.Context, drain func(context.Context) error) error
	// OnLeader, if set, is told when this server starts and stops leading
	// (writes allowed / not).
	OnLeader   func(leading bool)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// MaxInFlight bounds publishes not yet confirmed; default 4096.
	MaxInFlight int
	// Published, if set, is handed each run this server published, once
	// JetStream has stored it and before its changes are committed (so
	// before any feed consumer sees them): the changes lo..hi, the body
	// as stored and how (twin.LogRunS2, twin.LogRunFramed). body is valid
	// only during the call. The replay recorder keeps the runs as its
	// own record of those changes (twin.AppendLogRun) rather than encode
	// and compress each change a second time.
	Published func(lo, hi uint64, flags byte, body []byte)
}

// Node is one server's membership of the twin: following or leading.
type Node struct {
	// bodies are record bodies JetStream has answered for (nats.go
	// copies a message as it publishes; it keeps it only for the
	// future): the next records are written into them instead of
	// allocating ~0.2 KB per change (a moving vehicle's binary record,
	// twin.AppendChange).
	bodies sync.Pool
	tw     *twin.Twin
	sp     *spine.Spine
	js     jetstream.JetStream
	opts   Options
	log    *slog.Logger
	m      metrics

	mu       sync.Mutex
	runCtx   context.Context
	fatal    context.CancelCauseFunc
	stopFol  context.CancelFunc
	folDone  chan struct{}
	pubErr   chan struct{} // closed when the current term's publisher failed
	pubFails error

	// Step-downs that took changes back, and the first seq taken back by
	// the last one: Committed must not mistake a later change that reused
	// a taken-back seq for its own.
	fences    atomic.Uint64
	fencedSeq atomic.Uint64

	// tail is the stream sequence of the log's last record this node
	// read or wrote: a leader's first publish expects it. A record holds
	// one change or a run of consecutive ones (RecordHeader), so stream
	// sequences and feed seqs differ; records carry their seqs, and a
	// feed seq is found in the log by a binary search (locate).
	tail atomic.Uint64
}

// BaseHeader marks a base record: its body is the feed seq the next
// record continues after. Written when the log starts (again) behind the
// store, so seqs go on above everything the store, and so any client,
// has seen.
const BaseHeader = "Twin-Log-Base"

// RecordHeader marks a record holding a run of consecutive changes; its
// value is "first-last" (feed seqs), its body each change
// (twin.MarshalChange) after its length (uvarint). A record without it
// holds one change, its body the change itself (what a server wrote
// before runs; a run of one is still written so). The leader writes what
// is tentative as runs of up to maxRecordChanges changes and
// maxRecordBytes (one change may be bigger: it goes alone), so JetStream
// stores, replicates and acknowledges a record per run, not per change.
const RecordHeader = "Twin-Changes"

const (
	maxRecordChanges = 256
	maxRecordBytes   = 256 << 10
)

// EncodingHeader names how a record's body is compressed: absent for
// none, "s2" for S2 (github.com/klauspost/compress/s2, Snappy's faster
// successor). The leader compresses a record when that saves an eighth
// of it: a run of a moving fleet's changes goes from ~270 to ~70 B a
// change, so JetStream copies, hashes, writes and replicates a quarter of
// the bytes (at 20k changes/s the embedded server's read loop and stream
// copied ~13 MB/s, a quarter of the server's allocations, and the disk
// took ~4 MB/s for the log; issue 16 goals 1 and 6). S2 rather than zstd:
// ~0.2 µs a change to encode, a third of zstd's fastest level, for about
// the same ratio on these records. A server that predates the header
// cannot read such a record: upgrade the servers of one twin together.
const EncodingHeader = "Twin-Encoding"

// compressMin is the least body worth compressing (a lone small change
// is sent as it is).
const compressMin = 512

// maxDecoded bounds what a compressed record may decode to
// (twin.MaxLogRunBytes, where the replay timeline reads the same runs).
const maxDecoded = twin.MaxLogRunBytes

// compressRecord replaces m's body with its S2 encoding, written into
// dst, when that is an eighth smaller, and reports whether it did.
func compressRecord(m *nats.Msg, dst *[]byte) bool {
	if len(m.Data) < compressMin {
		return false
	}
	enc := s2.Encode((*dst)[:cap(*dst)], m.Data)
	if len(enc) > len(m.Data)-len(m.Data)/8 {
		return false
	}
	*dst = enc
	m.Data = enc
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header[EncodingHeader] = []string{"s2"}
	return true
}

// recordData returns a record's body as it was before compression.
func recordData(h nats.Header, data []byte) ([]byte, error) {
	switch enc := h.Get(EncodingHeader); enc {
	case "":
		return data, nil
	case "s2":
		out, err := twin.LogRunData(twin.LogRunS2, data, nil)
		if err != nil {
			return nil, fmt.Errorf("changelog: compressed record: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("changelog: record encoding %q unknown (a newer server's?)", enc)
	}
}

// recordRange returns the feed seqs a record holds, lo..hi; for a base
// record lo = hi = the base (the next change is base+1).
func recordRange(h nats.Header, data []byte) (lo, hi uint64, base bool, err error) {
	if v := h.Get(BaseHeader); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		return seq, seq, true, err
	}
	if v := h.Get(RecordHeader); v != "" {
		a, b, ok := strings.Cut(v, "-")
		lo, err1 := strconv.ParseUint(a, 10, 64)
		hi, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || hi < lo {
			return 0, 0, false, fmt.Errorf("changelog: bad %s %q", RecordHeader, v)
		}
		return lo, hi, false, nil
	}
	data, err = recordData(h, data)
	if err != nil {
		return 0, 0, false, err
	}
	c, err := twin.UnmarshalChange(data)
	return c.Seq, c.Seq, false, err
}

// decodeRecord returns the changes of a record that is not a base record,
// checked to be consecutive.
func decodeRecord(h nats.Header, data []byte) ([]twin.Change, error) {
	if h.Get(RecordHeader) == "" {
		// One change: its seq is its own (recordRange would decode and
		// read it a first time).
		data, err := recordData(h, data)
		if err != nil {
			return nil, err
		}
		c, err := twin.UnmarshalChange(data)
		return []twin.Change{c}, err
	}
	lo, hi, _, err := recordRange(h, data)
	if err != nil {
		return nil, err
	}
	if data, err = recordData(h, data); err != nil {
		return nil, err
	}
	out := make([]twin.Change, 0, hi-lo+1)
	for len(data) > 0 {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, fmt.Errorf("changelog: record %d-%d: truncated", lo, hi)
		}
		c, err := twin.UnmarshalChange(data[k : k+int(l)])
		if err != nil {
			return nil, err
		}
		if c.Seq != lo+uint64(len(out)) {
			return nil, fmt.Errorf("changelog: record %d-%d holds seq %d at %d", lo, hi, c.Seq, len(out))
		}
		out = append(out, c)
		data = data[k+int(l):]
	}
	if uint64(len(out)) != hi-lo+1 {
		return nil, fmt.Errorf("changelog: record %d-%d holds %d changes", lo, hi, len(out))
	}
	return out, nil
}

// record builds one record's body as its changes are encoded: each change
// framed by its length, written once into the body (no slice per change,
// no copy into the message at the end).
type record struct {
	body   *[]byte // the pooled slice data was taken from, if any
	data   []byte  // uvarint length + encoding, per change
	first  int     // where the first change's encoding starts in data
	n      int     // changes in the record
	lo, hi uint64  // their seqs
}

// add appends the encoding b of change seq; a new body is body[:0]
// when body is not nil and big enough, else made with room for hint bytes.
func (r *record) add(seq uint64, b []byte, hint int, body *[]byte) {
	if r.n == 0 {
		need := max(hint, len(b)+binary.MaxVarintLen32)
		if body != nil && cap(*body) >= need {
			r.data, r.body = (*body)[:0], body
		} else {
			r.data = make([]byte, 0, need)
		}
		r.lo = seq
	}
	r.data = binary.AppendUvarint(r.data, uint64(len(b)))
	if r.n == 0 {
		r.first = len(r.data)
	}
	r.data = append(r.data, b...)
	r.n++
	r.hi = seq
}

// size is the body's length so far (about what the changes weigh).
func (r *record) size() int { return len(r.data) }

// msg makes the record message: a lone change as it is, several framed
// with the record header naming their seqs.
func (r *record) msg() *nats.Msg {
	m := nats.NewMsg(spine.ChangeSubject)
	if r.n == 1 {
		m.Data = r.data[r.first:]
		return m
	}
	m.Data = r.data
	m.Header[RecordHeader] = []string{strconv.FormatUint(r.lo, 10) + "-" + strconv.FormatUint(r.hi, 10)}
	return m
}

// refresh reads the log's newest record. It returns the feed seq of the
// log's last change (the head a leader must reach; this twin's head when
// the log holds no record) and sets tail to the log's last stream seq.
func (n *Node) refresh(ctx context.Context) (uint64, error) {
	// The stream's last seq first: a record stored after this read is
	// either the one read next or makes the first publish fail.
	_, last, err := n.sp.ChangeLogState(ctx)
	if err != nil {
		return 0, err
	}
	m, err := n.sp.ChangeLogLast(ctx)
	if err != nil {
		return 0, err
	}
	if m == nil {
		n.tail.Store(last)
		return n.tw.Feed().Head(), nil
	}
	_, hi, _, err := recordRange(m.Header, m.Data)
	if err != nil {
		return 0, fmt.Errorf("changelog: newest record %d: %w", m.Sequence, err)
	}
	// The record read, not the stream's last seq read after it: a record
	// stored in between (a deposed leader's run still arriving) is not
	// installed, so a first publish expecting the later seq would give its
	// changes' seqs a second time. Expecting this record's, it fails, and
	// the next term reads again.
	n.tail.Store(m.Sequence)
	return hi, nil
}

// locate returns the stream seq to read from for the changes after
// feed seq after: the record holding after+1 (or, when the log holds
// nothing later, the stream seq after its last record).
func (n *Node) locate(ctx context.Context, after uint64) (uint64, error) {
	first, last, err := n.sp.ChangeLogState(ctx)
	if err != nil {
		return 0, err
	}
	if first > last || last == 0 {
		return last + 1, nil
	}
	st, err := n.js.Stream(ctx, spine.ChangeStream)
	if err != nil {
		return 0, fmt.Errorf("changelog: stream: %w", err)
	}
	rng := func(seq uint64) (lo, hi uint64, base bool, err error) {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return 0, 0, false, fmt.Errorf("changelog: record %d: %w", seq, err)
		}
		return recordRange(m.Header, m.Data)
	}
	want := after + 1
	// The last record whose first seq is at most want (a base record B
	// counts as B: its next change is B+1).
	lo, hi := first, last
	found := uint64(0)
	for lo <= hi {
		mid := lo + (hi-lo)/2
		l, _, base, err := rng(mid)
		if err != nil {
			return 0, err
		}
		if base {
			l++ // holds no change; B+1 comes after it
		}
		if l <= want {
			found, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	if found == 0 {
		return first, nil // the log starts after want: the consumer finds the gap
	}
	_, h, base, err := rng(found)
	if err != nil {
		return 0, err
	}
	if !base && h < want {
		return found + 1, nil // want is past the log's end
	}
	return found, nil
}

// writeBase empties the log and writes a base record: the next change is
// base+1.
func (n *Node) writeBase(ctx context.Context, base uint64) error {
	if err := n.sp.PurgeChangeLog(ctx); err != nil {
		return err
	}
	_, last, err := n.sp.ChangeLogState(ctx)
	if err != nil {
		return err
	}
	m := nats.NewMsg(spine.ChangeSubject)
	m.Header.Set(BaseHeader, strconv.FormatUint(base, 10))
	m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(last, 10))
	pa, err := n.js.PublishMsg(ctx, m, jetstream.WithExpectStream(spine.ChangeStream))
	if err != nil {
		return fmt.Errorf("changelog: write base %d: %w", base, err)
	}
	n.tail.Store(pa.Sequence)
	n.tw.Feed().SetLast(base)
	n.log.Info("change log (re)started above the store", "base", base, "stream_seq", pa.Sequence)
	return nil
}

type metrics struct {
	published prometheus.Counter
	records   prometheus.Counter
	installed prometheus.Counter
	rewound   prometheus.Counter
	leader    prometheus.Gauge
	terms     prometheus.Counter
}

// New makes a node for tw, which must be replicated (tw.Replicate).
func New(tw *twin.Twin, sp *spine.Spine, opts Options) (*Node, error) {
	if opts.LeaseKey == "" || opts.Lead == nil {
		return nil, errors.New("changelog: Options needs LeaseKey and Lead")
	}
	if !tw.Replicated() {
		return nil, errors.New("changelog: the twin is not replicated (call Replicate after loading it)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4096
	}
	// Its own JetStream context: the change log's pending publishes are
	// bounded apart from telemetry's.
	js, err := jetstream.New(sp.Conn(), jetstream.WithPublishAsyncMaxPending(opts.MaxInFlight), jetstream.WithPublishAsyncTimeout(sp.AckTimeout()))
	if err != nil {
		return nil, fmt.Errorf("changelog: jetstream: %w", err)
	}
	n := &Node{tw: tw, sp: sp, js: js, opts: opts, log: opts.Logger.With("component", "changelog")}
	n.m = metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_changelog_published_total", Help: "Changes this server published to the change log as leader (confirmed at their seq)"}),
		records:   prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_changelog_records_total", Help: "Records (log messages, each a run of changes) this server published to the change log as leader, confirmed; published_total / records_total is the changes per record"}),
		installed: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_changelog_installed_total", Help: "Changes this server installed from the change log as follower"}),
		rewound:   prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_changelog_rewound_total", Help: "Tentative changes taken back at a step-down (the log did not take them)"}),
		leader:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "twin_changelog_leader", Help: "1 while this server leads the twin"}),
		terms:     prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_changelog_terms_total", Help: "Times this server became leader"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(n.m.published, n.m.records, n.m.installed, n.m.rewound, n.m.leader, n.m.terms)
	}
	return n, nil
}

// Start aligns the log with the store and installs the log's changes the
// store does not have yet. storeSeq is the last seq the store holds
// (writer.MetaFeedSeq), floor the lowest seq the log may continue at
// (any seq ever handed out before the log existed: writer.MetaFeedHWM).
// Call it after loading the twin and Replicate, before Run and serving.
func (n *Node) Start(ctx context.Context, storeSeq, floor uint64) error {
	first, last, err := n.sp.ChangeLogState(ctx)
	if err != nil {
		return err
	}
	feed := n.tw.Feed()
	if first > last || last == 0 { // no record
		if last == 0 && storeSeq == 0 && floor == 0 {
			feed.SetLast(0) // a new twin
			return nil
		}
		// A new log on an old store, or one whose records all aged out.
		return n.writeBase(ctx, max(storeSeq, floor))
	}
	logLast, err := n.refresh(ctx)
	if err != nil {
		return err
	}
	st, err := n.js.Stream(ctx, spine.ChangeStream)
	if err != nil {
		return fmt.Errorf("changelog: stream: %w", err)
	}
	fm, err := st.GetMsg(ctx, first)
	if err != nil {
		return fmt.Errorf("changelog: oldest record %d: %w", first, err)
	}
	logFirst, _, _, err := recordRange(fm.Header, fm.Data)
	if err != nil {
		return fmt.Errorf("changelog: oldest record %d: %w", first, err)
	}
	switch {
	case logLast < storeSeq:
		n.log.Warn("the change log is behind the store (a lost log?); restarting it above the store", "log_last", logLast, "store_seq", storeSeq)
		return n.writeBase(ctx, max(storeSeq, floor))
	case logFirst > storeSeq+1:
		n.log.Error("the change log no longer holds changes the store lacks (the store's writer was down longer than the log's retention); continuing from the log's oldest change: objects changed in between may be stale until their next change",
			"store_seq", storeSeq, "log_first", logFirst)
		feed.SetLast(logFirst - 1)
	default:
		feed.SetLast(storeSeq)
	}
	if feed.Head() < logLast {
		t0 := time.Now()
		if err := n.installUntil(ctx, logLast); err != nil {
			return err
		}
		n.log.Info("caught up from the change log", "from", storeSeq+1, "to", logLast, "took", time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// Run follows the log and competes for the lease until ctx ends. It
// returns an error when the twin cannot be kept right (a gap in the log);
// the server must then exit and reload.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n.mu.Lock()
	n.runCtx, n.fatal = ctx, cancel
	n.mu.Unlock()
	n.startFollow(ctx)
	err := n.sp.RunLeader(ctx, n.opts.LeaseKey, n.lead, nil)
	n.stopFollow()
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

func (n *Node) die(err error) {
	n.log.Error("the twin cannot follow the change log; stopping this server so it reloads from the store", "err", err)
	n.mu.Lock()
	f := n.fatal
	n.mu.Unlock()
	f(err)
}

// startFollow runs the follower until stopFollow or until ctx (Run's
// context: a term's context ends before the follower's life does) ends.
func (n *Node) startFollow(ctx context.Context) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	n.stopFol, n.folDone = cancel, done
	go func() {
		defer close(done)
		if err := n.follow(ctx); err != nil && ctx.Err() == nil {
			n.die(err)
		}
	}()
}

func (n *Node) stopFollow() {
	n.mu.Lock()
	cancel, done := n.stopFol, n.folDone
	n.stopFol, n.folDone = nil, nil
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// follow installs the log's changes after the feed's head until ctx ends.
func (n *Node) follow(ctx context.Context) error {
	return n.consume(ctx, 0)
}

// installUntil installs the log up to last (inclusive).
func (n *Node) installUntil(ctx context.Context, last uint64) error {
	if n.tw.Feed().Head() >= last {
		return nil
	}
	return n.consume(ctx, last)
}

// consume installs log records from the feed's head on; with until > 0 it
// returns once the head reaches until.
func (n *Node) consume(ctx context.Context, until uint64) error {
	// Finding the head's record and creating the consumer ask JetStream;
	// while a NATS node restarts or the stream's leader moves they time
	// out. That is no reason to stop the server (it used to: the twin
	// "fell out of step" when it had not): try again until it answers.
	// Anything else (a record it cannot read) is final.
	var start uint64
	var cons jetstream.Consumer
	wait := backoff.Backoff{First: 100 * time.Millisecond, Most: 5 * time.Second}
	for {
		var err error
		start, err = n.locate(ctx, n.tw.Feed().Head())
		if err == nil {
			cons, err = n.js.OrderedConsumer(ctx, spine.ChangeStream, jetstream.OrderedConsumerConfig{
				DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(start, 1)})
			if err != nil {
				err = fmt.Errorf("changelog: consumer from %d: %w", start, err)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			break
		}
		if !unreachable(err) {
			return err
		}
		n.log.Warn("change log not reachable; trying again", "err", err, "retry_in", wait.Next())
		if !wait.Wait(ctx) {
			return nil
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("changelog: consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			n.log.Warn("change log consumer", "err", err)
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("changelog: record metadata: %w", err)
		}
		n.tail.Store(md.Sequence.Stream)
		if v := m.Headers().Get(BaseHeader); v != "" {
			// A base record: valid only where this twin stands.
			base, err := strconv.ParseUint(v, 10, 64)
			if err != nil || base != n.tw.Feed().Head() {
				return fmt.Errorf("%w: the log restarts after %s, this twin is at %d", twin.ErrSeqGap, v, n.tw.Feed().Head())
			}
			continue
		}
		cs, err := decodeRecord(m.Headers(), m.Data())
		if err != nil {
			return fmt.Errorf("changelog: record %d: %w", md.Sequence.Stream, err)
		}
		// The first record read may begin before this twin's head: those
		// changes are installed already (Install ignores them).
		for _, c := range cs {
			ok, err := n.tw.Install(c)
			if err != nil {
				return err
			}
			if ok {
				n.m.installed.Inc()
			}
		}
		if until > 0 && cs[len(cs)-1].Seq >= until {
			return nil
		}
	}
}

// lead is one leadership term, run while this server holds the lease.
func (n *Node) lead(lctx context.Context) error { //nolint:contextcheck // the publisher outlives the term's context on purpose: it drains what the stopping duties made
	n.stopFollow()
	n.mu.Lock()
	runCtx := n.runCtx
	n.mu.Unlock()
	defer n.startFollow(runCtx) //nolint:contextcheck // the follower outlives the term: it runs on Run's context
	// Install the log to its end: the feed's head then equals the log's
	// last seq, so this term's first publish expects exactly it.
	last, err := n.refresh(lctx)
	if err != nil {
		return err
	}
	if err := n.installUntil(lctx, last); err != nil {
		return err
	}
	if lctx.Err() != nil {
		return nil
	}
	n.tw.Lead()
	n.m.leader.Set(1)
	n.m.terms.Inc()
	n.log.Info("leading the twin", "seq", n.tw.Feed().Head())

	ectx, stopDuties := context.WithCancelCause(lctx)
	defer stopDuties(nil)
	pctx, stopPub := context.WithCancel(context.WithoutCancel(lctx))
	failed := make(chan struct{})
	n.mu.Lock()
	n.pubErr, n.pubFails = failed, nil
	n.mu.Unlock()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		if err := n.publish(pctx); err != nil {
			n.mu.Lock()
			n.pubFails = err
			n.mu.Unlock()
			close(failed)
			n.log.Error("change log refused or lost a publish; stepping down", "err", err)
			stopDuties(err)
		}
	}()
	if n.opts.OnLeader != nil {
		n.opts.OnLeader(true)
		stopNotify := context.AfterFunc(ectx, func() { n.opts.OnLeader(false) })
		defer func() {
			if stopNotify() {
				n.opts.OnLeader(false)
			}
		}()
	}
	err = n.opts.Lead(ectx, n.drain)
	stopPub()
	<-pubDone
	n.m.leader.Set(0)
	from := n.tw.Feed().Last() + 1
	rewound, ferr := n.tw.Fence()
	if rewound > 0 {
		n.fencedSeq.Store(from)
		n.fences.Add(1)
		n.m.rewound.Add(float64(rewound))
		n.log.Warn("took back changes the change log did not take", "changes", rewound, "seq", n.tw.Feed().Head())
	}
	if ferr != nil {
		n.die(ferr)
	}
	n.log.Info("no longer leading; following the change log", "seq", n.tw.Feed().Head())
	if c := context.Cause(ectx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// drain waits until the log holds every change made so far, the
// publisher failed, or ctx ends.
func (n *Node) drain(ctx context.Context) error {
	n.mu.Lock()
	failed := n.pubErr
	n.mu.Unlock()
	feed := n.tw.Feed()
	cur := feed.Subscribe()
	defer cur.Close()
	target := feed.Head()
	for feed.Last() < target {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-failed:
			n.mu.Lock()
			err := n.pubFails
			n.mu.Unlock()
			return err
		case <-cur.C():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// commitDepth is how many records may await JetStream's answer before the
// publisher waits for one (publish's group commit); the changes made
// meanwhile go in the next record. Two, not one as the telemetry log's
// group commit (journal.CommitDepth): a change's commit is on the path to
// every websocket, and at two a change that just missed a record does not
// also wait for the one before it.
const commitDepth = 2

type inflight struct {
	lo, hi uint64 // the record's changes
	stream uint64 // the stream seq it must be stored at
	f      jetstream.PubAckFuture
	body   *[]byte // the record's body, reused once JetStream answered
	flags  byte    // how body holds the changes (Options.Published)
}

// publish sends tentative changes to the log in seq order, what is
// tentative at once as records of runs of changes (recordMsg), and
// commits a record's changes once JetStream confirms it at the stream
// seq after the previous record's, until ctx ends (then it waits for the
// confirmations in flight). Each record expects the previous one as the
// log's last (Nats-Expected-Last-Sequence): the fence. Any refusal is
// returned: the caller steps down, since the log, not this server, now
// decides what comes next.
func (n *Node) publish(ctx context.Context) error {
	feed := n.tw.Feed()
	// The last change the log holds: every change after it is tentative
	// and only this publisher commits. Not the head: the twin takes writes
	// from Lead on, so by the time this goroutine runs the head may hold
	// some, and starting after them left them tentative for the term.
	pos := feed.Last()
	expect := n.tail.Load() // the log's last record (installed to its end)
	q := make(chan inflight, n.opts.MaxInFlight)
	ackErr := make(chan error, 1)
	ackDone := make(chan struct{})
	// Group commit: records sent and answered (confirmed or failed), and a
	// wake-up for the publisher waiting for an answer.
	var sent uint64
	var answered atomic.Uint64
	wake := make(chan struct{}, 1)
	go func() {
		defer close(ackDone)
		var failed bool
		for it := range q {
			if failed {
				continue
			}
			select {
			case pa := <-it.f.Ok():
				if pa.Sequence != it.stream {
					failed = true
					ackErr <- fmt.Errorf("changelog: changes %d-%d stored at %d, not %d", it.lo, it.hi, pa.Sequence, it.stream)
					continue
				}
				n.tail.Store(pa.Sequence)
				if n.opts.Published != nil {
					n.opts.Published(it.lo, it.hi, it.flags, *it.body)
				}
				feed.Commit(it.hi)
				n.m.published.Add(float64(it.hi - it.lo + 1))
				n.m.records.Inc()
				if it.body != nil {
					n.bodies.Put(it.body)
				}
			case err := <-it.f.Err():
				failed = true
				ackErr <- fmt.Errorf("changelog: publish %d-%d: %w", it.lo, it.hi, err)
			}
			answered.Add(1)
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	finish := func(err error) error {
		close(q)
		<-ackDone
		if err == nil {
			select {
			case err = <-ackErr:
			default:
			}
		}
		return err
	}
	var rec record
	var scratch []byte // one change's encoding, reused
	hint := 16 << 10   // the last record's size, to size the next
	// Each record has an id of this term's, and every record after the
	// term's first also expects the term's previous one as the log's last
	// (Nats-Expected-Last-Msg-Id): the expected stream seq alone is no
	// fence for records in flight. A deposed leader's queued records
	// (a stalled link, a client flushing its buffer after a reconnect)
	// each expect a later seq, and once the new leader's records bring the
	// log to one of them, that one and the rest of the run were stored
	// after the new leader's (TestStalePublishesCannotInterleave). A
	// record can now follow only its own term's last one; the term's first
	// expects the seq it read at the start, which any later record moved.
	term := nuid.Next()
	var prevID string
	send := func() error {
		if rec.n == 0 {
			return nil
		}
		lo, hi := rec.lo, rec.hi
		m := rec.msg()
		body := rec.body
		if body == nil {
			body = new([]byte)
		}
		*body = rec.data
		zb, _ := n.bodies.Get().(*[]byte)
		if zb == nil {
			zb = new([]byte)
		}
		// The raw body frames even a lone change (record.add): as
		// published, only a compressed lone change is unframed.
		flags := twin.LogRunFramed
		if compressRecord(m, zb) {
			// The compressed copy is what goes, and is kept until
			// JetStream answers; the raw body can take the next record.
			n.bodies.Put(body)
			body = zb
			flags = twin.LogRunS2
			if rec.n > 1 {
				flags |= twin.LogRunFramed
			}
		} else {
			n.bodies.Put(zb)
		}
		m.Header[jetstream.ExpectedLastSeqHeader] = []string{strconv.FormatUint(expect, 10)}
		id := term + "." + strconv.FormatUint(lo, 10) // lo: unique in the term
		m.Header[jetstream.MsgIDHeader] = []string{id}
		if prevID != "" {
			m.Header[jetstream.ExpectedLastMsgIDHeader] = []string{prevID}
		}
		prevID = id
		f, err := n.js.PublishMsgAsync(m, jetstream.WithExpectStream(spine.ChangeStream), jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("changelog: publish %d-%d: %w", lo, hi, err)
		}
		expect++
		sent++
		select {
		case q <- inflight{lo: lo, hi: hi, stream: expect, f: f, body: body, flags: flags}:
		case err := <-ackErr:
			return err
		}
		pos = hi
		hint = min(rec.size()+rec.size()/8, maxRecordBytes+maxRecordBytes/8)
		rec = record{}
		return nil
	}
	var cs []twin.Change // the scan buffer, reused
	for {
		// Group commit: while commitDepth records await JetStream, the
		// changes made meanwhile gather for the next record instead of
		// each going as soon as it is made. Idle, a change goes at once;
		// busy, records grow with the rate and JetStream's round trip,
		// and the log's work per record (a store write, the PubAck, every
		// follower's delivery, the replay recorder's run) is paid for
		// many changes. At 30k changes/s through MQTT a record held about
		// seven changes before, twelve with this.
		for sent-answered.Load() >= commitDepth {
			select {
			case <-ctx.Done():
				return finish(nil)
			case err := <-ackErr:
				return finish(err)
			case <-wake:
			}
		}
		var err error
		cs, err = feed.TentativeAppend(cs[:0], pos, 512)
		if err != nil {
			return finish(fmt.Errorf("changelog: tentative changes after %d: %w", pos, err))
		}
		for i := range cs {
			c := &cs[i]
			b, err := twin.AppendChange(scratch[:0], c)
			if b == nil {
				return finish(err)
			}
			scratch = b
			if err != nil {
				n.log.Error("change logged without some props", "err", err)
			}
			if rec.n > 0 && (rec.n == maxRecordChanges || rec.size()+len(b) > maxRecordBytes) {
				if err := send(); err != nil {
					return finish(err)
				}
			}
			var body *[]byte
			if rec.n == 0 {
				body, _ = n.bodies.Get().(*[]byte)
			}
			rec.add(c.Seq, b, hint, body)
		}
		// What was tentative goes now: a record never waits for more.
		if err := send(); err != nil {
			return finish(err)
		}
		if len(cs) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return finish(nil)
		case err := <-ackErr:
			return finish(err)
		case <-feed.Appended():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Committed waits until every change this server made so far is in the
// log and returns the log's seq then; an error when leadership was lost
// first (the changes were taken back). For the relay's answers.
func (n *Node) Committed(ctx context.Context) (uint64, error) {
	feed := n.tw.Feed()
	f0 := n.fences.Load()
	target := feed.Head()
	cur := feed.Subscribe()
	defer cur.Close()
	lost := errors.New("changelog: leadership lost; the write was taken back")
	for {
		if n.fences.Load() != f0 && n.fencedSeq.Load() <= target {
			return 0, lost
		}
		last := feed.Last()
		if last >= target {
			return last, nil
		}
		if feed.Head() < target {
			return 0, lost
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-cur.C():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Reached waits until this server's twin has seq (installed or committed).
func (n *Node) Reached(ctx context.Context, seq uint64) error {
	feed := n.tw.Feed()
	cur := feed.Subscribe()
	defer cur.Close()
	for feed.Last() < seq {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cur.C():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// unreachable is spine.Unreachable (the follower retries what it says).
func unreachable(err error) bool { return spine.Unreachable(err) }

// Changes calls fn with each change of the log after feed seq after, up to
// upto (inclusive), oldest first; fn must not keep c past the call. The
// error wraps twin.ErrSeqGap when the log no longer holds them all (aged
// out of its retention, or restarted above them by a base record).
//
// It is how a consumer that must see every change catches up when the feed
// no longer holds where it stopped: the replay recorder after a kill -9
// (its last flush behind the store writer's, whose seq the feed restarts
// at) or on a new leader whose feed began after it.
func (n *Node) Changes(ctx context.Context, after, upto uint64, fn func(c *twin.Change) error) error {
	if upto <= after {
		return nil
	}
	_, last, err := n.sp.ChangeLogState(ctx)
	if err != nil {
		return err
	}
	seq, err := n.locate(ctx, after)
	if err != nil {
		return err
	}
	st, err := n.js.Stream(ctx, spine.ChangeStream)
	if err != nil {
		return fmt.Errorf("changelog: stream: %w", err)
	}
	next := after + 1
	for ; seq <= last && next <= upto; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged under us: the next record says whether that is a gap
		}
		if err != nil {
			return fmt.Errorf("changelog: record %d: %w", seq, err)
		}
		if v := m.Header.Get(BaseHeader); v != "" {
			if base, err := strconv.ParseUint(v, 10, 64); err != nil || base != next-1 {
				return fmt.Errorf("%w: the log restarts after %s; change %d is not in it", twin.ErrSeqGap, v, next)
			}
			continue
		}
		cs, err := decodeRecord(m.Header, m.Data)
		if err != nil {
			return fmt.Errorf("changelog: record %d: %w", seq, err)
		}
		for i := range cs {
			c := &cs[i]
			switch {
			case c.Seq < next:
				continue
			case c.Seq > next:
				return fmt.Errorf("%w: the log holds %d, not %d", twin.ErrSeqGap, c.Seq, next)
			case c.Seq > upto:
				return nil
			}
			if err := fn(c); err != nil {
				return err
			}
			next++
		}
	}
	if next <= upto {
		return fmt.Errorf("%w: the log ends before %d (wanted up to %d)", twin.ErrSeqGap, next, upto)
	}
	return nil
}
