// Package timeline keeps the city's past for replay (issue 17, CONTRACT §5
// GET /api/snapshot and §6 "at"): the Recorder writes every change of the
// live layers to the store's twin.Timeline and builds full-state
// checkpoints; the Reader answers "every object as it was at time T" and
// "the changes between T1 and T2, in order".
//
// Time of a change is the object's own Updated (the telemetry's timestamp
// for tracked objects), so a replay of timestamped telemetry is exact
// whatever the wall clock did while it was applied; a removal takes the
// server's time. The state at T is, per object, the record with the highest
// feed seq among those at or before T.
//
// Two kinds of layers:
//   - checkpointed (vehicles, workers, devices, alerts, incidents, tasks,
//     directives): every change is a record in a change chunk (one
//     compressed blob per time bucket per recorder flush); every
//     Options.Interval a checkpoint holds the full state of these layers,
//     one blob per 0.1° map cell. A snapshot at T reads the checkpoint's
//     cells in view and the chunks since it: O(objects in view + changes
//     since the checkpoint), never the whole history.
//   - versioned (buildings: 50,000 per demo scale, rarely changing, only
//     their risk colour does): a building that changed keeps its versions,
//     looked up per object; a building unchanged since T is the twin's
//     current one. A snapshot reads the twin's buildings in view.
//
// A checkpoint at Tk is built once the wall clock is Lateness past Tk; a
// change that arrives later with a time at or before Tk deletes the stale
// checkpoints in the same store transaction, and the recorder rebuilds
// them from the previous one. Retention: change chunks older than
// Options.Retention are dropped (a snapshot further back is the checkpoint
// before it, i.e. exact to Options.Interval), checkpoints older than
// Options.CheckpointRetention too.
//
// The recorder is a required consumer of the feed on the server that
// writes the store (the cluster's lease holder): start it with Run where
// the store writer runs.
package timeline

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
	"github.com/prometheus/client_golang/prometheus"
)

// MetaSeq is the meta key of the last feed seq the recorder persisted
// (8 bytes big-endian).
const MetaSeq = "timeline_seq"

// skeleton lists the layers that are not replayed: the city's static
// frame, drawn from the live tiles. Buildings are replayed by versions;
// every other layer (vehicles, workers, devices, alerts, incidents, and
// tasks and directives when the twin has them) is checkpointed.
var skeleton = []twin.Layer{twin.Regions, twin.Grids, twin.Roads, twin.Bridges, twin.Rivers}

// checkpointed lists the layers kept by change chunks and checkpoints.
var checkpointed = func() []twin.Layer {
	var out []twin.Layer
	for _, l := range twin.Layers {
		if l != twin.Buildings && !slices.Contains(skeleton, l) {
			out = append(out, l)
		}
	}
	return out
}()

// Replayable reports whether GET /api/snapshot and the websocket replay
// serve layer l: the checkpointed layers and buildings. The other layers
// (regions, grids, roads, bridges, rivers) are the city's skeleton, drawn
// from the live tiles.
func Replayable(l twin.Layer) bool { return isCheckpointed(l) || l == twin.Buildings }

// ReplayableLayers lists them, for error messages and defaults.
func ReplayableLayers() []twin.Layer { return append(slices.Clone(checkpointed), twin.Buildings) }

func isCheckpointed(l twin.Layer) bool { return slices.Contains(checkpointed, l) }

// Options configure a Recorder and a Reader. Zero values take defaults.
type Options struct {
	// Interval between checkpoints; default 5 min.
	Interval time.Duration
	// Lateness is how long after Tk the checkpoint at Tk is built; default 1 min.
	Lateness time.Duration
	// Retention keeps change chunks (every change) this long; default
	// 48 h. Older snapshots are exact to Interval.
	Retention time.Duration
	// CheckpointRetention keeps checkpoints and building versions this
	// long; default 7 days (about 0.2 GB a day at demo scale 1).
	CheckpointRetention time.Duration
	// Bucket is the time span of one change chunk key; default 1 min.
	Bucket time.Duration
	// FlushInterval between writes of recorded changes; default 1 s.
	FlushInterval time.Duration
	// MaxPending stops reading the feed (which then keeps the changes) while
	// this many records wait for a store that is away; default 1<<18.
	MaxPending int
	// BuildEvery is how often missing or stale checkpoints are looked
	// for; default 10 s.
	BuildEvery time.Duration
	// Pause is how long a flush sleeps between its steps (every 512
	// records encoded, every 256 KB compressed; twin.EncodeRecordsPaced),
	// leaving the core to the goroutines people wait on (the websocket
	// path) and to the network poller, which on a busy single core only
	// runs when it idles or every 10 ms: a flush of a second's 20k changes
	// was one ~50 ms stretch. Default 500 µs, which makes a flush about
	// twice as long in wall time for the same CPU; negative: no pauses.
	Pause time.Duration
	// Backfill, if set, calls fn with the changes after..upto from the
	// change log (changelog.Node.Changes), oldest first; its error wraps
	// twin.ErrSeqGap when the log no longer holds them. The recorder
	// reads there what the feed no longer holds when it starts: after a
	// kill -9 its last flush may be behind the store writer's, and the
	// feed restarts at the writer's seq. Without it (or past the log's
	// retention) those versions are lost, and the recording resumes from
	// the current state.
	Backfill   func(ctx context.Context, after, upto uint64, fn func(*twin.Change) error) error
	Clock      clock.Clock  // default the wall clock
	Logger     *slog.Logger // default slog.Default()
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Minute
	}
	if o.Lateness <= 0 {
		o.Lateness = time.Minute
	}
	if o.Retention <= 0 {
		o.Retention = 48 * time.Hour
	}
	if o.CheckpointRetention <= 0 {
		o.CheckpointRetention = 7 * 24 * time.Hour
	}
	o.CheckpointRetention = max(o.CheckpointRetention, o.Retention)
	if o.Bucket <= 0 {
		o.Bucket = time.Minute
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1 << 18
	}
	o.MaxPending = min(o.MaxPending, 1<<30) // indexes in int32 (chunkKey)
	if o.BuildEvery <= 0 {
		o.BuildEvery = 10 * time.Second
	}
	if o.Pause == 0 {
		o.Pause = 500 * time.Microsecond
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// ErrNoTimeline is returned when the store does not keep a timeline.
var ErrNoTimeline = errors.New("timeline: the store keeps no timeline")

// Recorder writes the live layers' changes to the store's timeline and
// builds its checkpoints. Create with NewRecorder, start with Run.
type Recorder struct {
	scan []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	tw   *twin.Twin
	st   twin.Store
	tl   twin.Timeline
	opts Options
	log  *slog.Logger
	m    *metrics

	// Owned by Run.
	pos      uint64
	pending  []twin.TimelineRecord
	order    []chunkKey        // flush's scratch: pending's chunk order
	objects  map[twin.ID]int32 // flush's scratch: pending's objects, by first record
	ids      []twin.ID         // flush's scratch: the objects in that order
	byID     []int32           // flush's scratch: the objects in ID order
	rank     []int32           // flush's scratch: each object's place in ID order
	grouped  []chunkKey        // flush's scratch: order, grouped (groupKeys)
	counts   []int32           // flush's scratch: records per group (groupKeys)
	raw      []byte            // flush's scratch: a chunk's records before compression
	versions []twin.TimelineVersion
	seen     map[twin.ID]struct{} // buildings whose previous version is recorded
	// cache is the last checkpoint built, kept for the next build when
	// it holds at most maxCachedState records. Without it the next build
	// streams from the stored checkpoint (buildStreamed): kept, a million
	// vehicles' state was ~360 MB of the server's heap for good (issue 16
	// goal 4).
	cache     *ckptState
	maxCached int // maxCachedState; tests lower it
	lastPrune time.Time
	peak      int    // recent flushes' largest record count, decaying (nextPeak)
	pause     func() // between a flush's steps (Options.Pause); nil: none

	// Change-log runs (runs.go): offered by the change log's publisher
	// (Offer, under offerMu), the one being read, and those to be stored
	// as they are at the next flush (Run's).
	offerMu      sync.Mutex
	offers       []offered
	offeredBytes int
	run          openRun
	kept         []keptRun
	keptRecords  int // the records the kept runs stand for
	// bodies holds run bodies no run owns any more (dropped, or stored),
	// for Offer's next copies; chunkBuf is the kept runs' chunks of the
	// flush being written (keptChunks). Both are reused: a copy of every
	// run and a chunk of every flush, made anew, were ~3 MB/s of garbage
	// at 20,000 changes/s (issue 16 goal 6: what is allocated sets how
	// often the GC runs).
	bodies   sync.Pool // of *[]byte
	chunkBuf []byte
}

// NewRecorder makes a recorder over the twin's feed; st must implement
// twin.Timeline. Create it right after loading the twin, like the writer.
func NewRecorder(tw *twin.Twin, st twin.Store, opts Options) (*Recorder, error) {
	opts.defaults()
	tl, ok := st.(twin.Timeline)
	if !ok {
		return nil, fmt.Errorf("%w (%T)", ErrNoTimeline, st)
	}
	r := &Recorder{tw: tw, st: st, tl: tl, opts: opts, log: opts.Logger.With("component", "timeline"),
		m: newMetrics(opts.Registerer), seen: map[twin.ID]struct{}{}, maxCached: maxCachedState}
	r.pause = r.pauser()
	return r, nil
}

// Run records until ctx is done, then flushes what it holds (bounded by
// 10 s) and returns. Call it once.
func (r *Recorder) Run(ctx context.Context) error {
	if err := r.start(ctx); err != nil {
		return err
	}
	cur := r.tw.Feed().Follow("timeline", twin.Required, r.pos)
	defer cur.Close()
	flush := time.NewTicker(r.opts.FlushInterval)
	defer flush.Stop()
	build := time.NewTicker(r.opts.BuildEvery)
	defer build.Stop()
	r.checkpoints(ctx)
	for {
		if behind := r.read(cur); behind {
			if err := r.catchUp(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("timeline fell out of the feed window and the change log no longer holds the gap; its versions are lost", "from_seq", r.pos, "err", err)
				r.m.gaps.Inc()
				r.pos = r.tw.Feed().Last()
			}
			continue
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			r.read(cur)
			if err := r.flush(fctx); err != nil {
				return fmt.Errorf("timeline: final flush, %d records not persisted: %w", len(r.pending), err)
			}
			return nil
		case <-cur.C():
		case <-flush.C:
			if err := r.flush(ctx); err != nil {
				r.log.Warn("timeline flush failed; keeping the records and retrying", "err", err, "pending", len(r.pending))
			}
		case <-build.C:
			// Flush first: a checkpoint built before the pending records
			// are written would be deleted by their flush at once.
			if err := r.flush(ctx); err == nil {
				r.checkpoints(ctx)
			}
		}
	}
}

// start finds where to resume. On a first start, or when the feed no
// longer holds the changes after the last recorded seq (a crash before
// the last flush), the current state of the checkpointed layers is
// recorded as a base at the current time: the timeline begins there (or
// resumes with that gap: the versions in it are lost).
func (r *Recorder) start(ctx context.Context) error {
	last := r.tw.Feed().Last()
	v, err := r.st.GetMeta(ctx, MetaSeq)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	if len(v) == 8 {
		r.pos = min(binary.BigEndian.Uint64(v), last)
		err := r.catchUp(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Error("timeline: the feed no longer holds the changes after the last recorded one; recording the current state (the versions in between are lost)",
			"recorded_seq", r.pos, "feed_last", last, "err", err)
		r.m.gaps.Inc()
	}
	// Changes after pos are read from the feed again and win by seq. A
	// base record is timed now, or at the object's Updated when later: the
	// timeline begins at the start of the recording, not at each object's
	// last change, which may be long before.
	//
	// The base is written in parts of baseChunk records, each its own
	// chunks, and the recorded seq only after the last part: holding a
	// million records and their encoding at once took ~400 MB of heap at
	// a million vehicles, and the server's RSS kept it (issue 16 goal 4).
	r.pos = r.tw.Feed().Last()
	now := r.opts.Clock.Now().UnixNano()
	n, part := 0, uint64(0)
	for _, l := range checkpointed {
		r.tw.Range(l, func(f *twin.Feature) bool {
			r.pending = append(r.pending, twin.FeatureRecord(f, max(now, f.Updated.UnixNano()), r.pos))
			n++
			if len(r.pending) < baseChunk {
				return true
			}
			err = r.writePending(ctx, basePartKey(r.pos, part))
			part++
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	if err := r.writePending(ctx, basePartKey(r.pos, part)); err != nil {
		return err
	}
	r.log.Info("timeline recording starts", "objects", n, "seq", r.pos, "parts", part+1)
	return r.putSeq(ctx)
}

// catchUp makes the feed hold the changes after pos: it reads those the
// feed no longer holds from the change log (Options.Backfill) and flushes
// them, until the feed holds the rest (it may move on while the log is
// read: then again from there). It returns an error wrapping
// twin.ErrSeqGap when they are lost; a log that does not answer is asked
// again until ctx ends.
func (r *Recorder) catchUp(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		if _, err := r.tw.Feed().Since(r.pos, 1); err == nil {
			return nil
		}
		if r.opts.Backfill == nil {
			return fmt.Errorf("%w: the feed begins after %d and there is no change log to read", twin.ErrSeqGap, r.pos)
		}
		from, upto := r.pos, r.tw.Feed().Last()
		err := r.opts.Backfill(ctx, r.pos, upto, func(c *twin.Change) error {
			r.addLogged(c)
			r.pos = c.Seq
			if len(r.pending) < r.opts.MaxPending {
				return nil
			}
			return r.flush(ctx)
		})
		if err == nil {
			err = r.flush(ctx)
		}
		if r.pos > from {
			r.m.backfilled.Add(float64(r.pos - from))
			r.log.Info("timeline: read from the change log what the feed no longer held", "from_seq", from+1, "to_seq", r.pos)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, twin.ErrSeqGap), ctx.Err() != nil:
			return err
		}
		r.log.Warn("timeline: reading the change log failed; trying again", "err", err, "from_seq", r.pos+1, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// baseChunk is the number of base records written at a time.
const baseChunk = 1 << 15

// basePartKey is the chunk key of part k of the base recorded at seq: the
// seq in the low 48 bits, as every flush's key, and k above, so that the
// parts, all in one bucket, do not overwrite each other. A later flush's
// key is a later seq with nothing above (2^48 changes are ~9 years at a
// million a second), so it meets no base part; a retried base at the same
// seq rewrites the same parts.
func basePartKey(seq, k uint64) uint64 {
	if k == 0 {
		return seq
	}
	return seq&(1<<48-1) | k<<48
}

// read moves feed changes into the pending records. It reports behind
// when the feed cut the recorder loose and the change log can give what
// it dropped (Run then calls catchUp).
func (r *Recorder) read(cur *twin.Cursor) (behind bool) {
	defer cur.Done(r.pos)
	for len(r.pending)+r.keptRecords < r.opts.MaxPending {
		cs, err := r.tw.Feed().SinceAppend(r.scan[:0], r.pos, 4096)
		r.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			// Cut loose by the feed: read the rest from the change log
			// (Run calls catchUp), or lose it, as a gap at start.
			behind = r.opts.Backfill != nil
			if !behind {
				r.log.Error("timeline fell out of the feed window; versions of the gap are lost", "from_seq", r.pos)
				r.m.gaps.Inc()
				r.pos = r.tw.Feed().Last()
			}
			if r.run.body != nil {
				// What it read of the run before the gap: pending (the
				// run's body holds changes the recorder never read).
				r.pending = append(r.pending, r.run.recs...)
				r.release(r.run.body)
				clear(r.run.recs)
				r.run = openRun{recs: r.run.recs[:0]}
			}
			return behind
		}
		if len(cs) == 0 {
			return false
		}
		for i := range cs {
			r.take(&cs[i])
		}
		r.pos = cs[len(cs)-1].Seq
	}
	return false
}

func (r *Recorder) add(c *twin.Change) {
	id := c.ID()
	switch {
	case c.Kind == twin.History:
		return
	case id.Layer == twin.Buildings:
		if c.Kind != twin.Upsert || c.Old == nil {
			return // an import: the twin's current building is its state since
		}
		if _, ok := r.seen[id]; !ok {
			r.seen[id] = struct{}{}
			r.version(c.Old)
		}
		r.version(c.New)
		// In the change chunks too, for the websocket replay's deltas
		// (checkpoints leave buildings out).
		r.pending = append(r.pending, twin.FeatureRecord(c.New, c.New.Updated.UnixNano(), c.Seq))
	case !isCheckpointed(id.Layer):
		return
	default:
		r.pending = append(r.pending, twin.ChangeRecord(c))
	}
}

// addLogged is add for a change read from the change log, which does not
// carry an upsert's previous state (twin.UnmarshalChange): a building's
// new version is recorded, as add does for an edit. The version before
// it is unknown here: a building first changed in the stretch read is not
// in the replay before that change (buildings are in no checkpoint).
func (r *Recorder) addLogged(c *twin.Change) {
	if c.Kind == twin.Upsert && c.Old == nil && c.New != nil && c.New.ID.Layer == twin.Buildings {
		r.version(c.New)
		r.pending = append(r.pending, twin.FeatureRecord(c.New, c.New.Updated.UnixNano(), c.Seq))
		return
	}
	r.add(c)
}

func (r *Recorder) version(f *twin.Feature) {
	rec := twin.FeatureRecord(f, f.Updated.UnixNano(), f.Version)
	blob, err := twin.EncodeRecords([]twin.TimelineRecord{rec})
	if err != nil {
		r.log.Error("timeline: version not recorded", "err", err)
		return
	}
	r.versions = append(r.versions, twin.TimelineVersion{ID: f.ID, At: rec.Time, Seq: f.Version, Data: blob})
}

// pause sleeps Options.Pause between a flush's steps (nil: none). A
// sleep, not runtime.Gosched: a goroutine that yields is run again before
// the network poller is asked whether a socket has data, while one that
// sleeps lets the core idle, and the poller runs then.
func (r *Recorder) pauser() func() {
	if r.opts.Pause < 0 {
		return nil
	}
	return func() { time.Sleep(r.opts.Pause) }
}

// step pauses between two steps of a flush (Options.Pause).
func (r *Recorder) step() {
	if r.pause != nil {
		r.pause()
	}
}

// bucketOf is the start of t's chunk bucket.
func (r *Recorder) bucketOf(t int64) int64 { return floorTo(t, int64(r.opts.Bucket)) }

func floorTo(t, step int64) int64 {
	q := t / step
	if t < 0 && t%step != 0 {
		q--
	}
	return q * step
}

// flush writes the pending records (one chunk per bucket they fall in,
// keyed by the last feed seq, so a retry rewrites the same chunks) and
// versions, then the recorded seq. Each flush adds new chunks: nothing
// stored is rewritten (a key repeats only when a failed flush is retried).
func (r *Recorder) flush(ctx context.Context) error {
	if err := r.writePending(ctx, r.pos); err != nil {
		return err
	}
	return r.putSeq(ctx)
}

// recorded is the last seq whose change is stored once the pending
// records and kept runs are: pos, or before the open run, whose records
// are held until it ends.
func (r *Recorder) recorded() uint64 {
	if r.run.body != nil {
		return r.run.lo - 1
	}
	return r.pos
}

// maxKeptPending is the capacity of the pending records always kept for
// the next flush. A larger one is kept while a flush fills at least half
// of it (a steady rate above maxKeptPending records a flush: 50k updates
// a second let it go and grew it again from nothing every flush, copying
// the records a dozen times, ~3 % of the server's CPU, issue 16 goal 1);
// one grown by a store away for long (MaxPending records) is let go
// rather than held for good.
const maxKeptPending = 1 << 16

// keepPending reports whether a pending slice of capacity c, of which the
// recent flushes used up to n (nextPeak), is kept for the next.
func keepPending(c, n int) bool { return c <= max(maxKeptPending, 2*n) }

// nextPeak is the recent flushes' peak record count after a flush of n:
// it decays by a sixteenth a flush rather than follow each flush, since a
// small flush among large ones (the checkpoint tick's, a few ms after the
// last) let the slice go and the next grew it again from nothing, ~8 MB a
// second of garbage at 50k updates a second (issue 16 goal 1); a slice
// grown by a backlog (MaxPending) is let go a dozen flushes after it.
func nextPeak(peak, n int) int { return max(n, peak-peak/16) }

// writePending writes the pending records and versions as chunks keyed
// key, and empties them; the recorded seq is the caller's.
func (r *Recorder) writePending(ctx context.Context, key uint64) error {
	if len(r.pending) == 0 && len(r.versions) == 0 && len(r.kept) == 0 {
		return nil
	}
	start := time.Now()
	// A chunk's records: those of one object side by side (by ID, then
	// seq), which compress to about two thirds of the size in time order,
	// in less time; the readers order by time and seq themselves. Sorted
	// by bucket first, a chunk is a run of pending.
	r.sortPending()
	r.step()
	var chunks []twin.TimelineChunk
	for rest := r.pending; len(rest) > 0; {
		b := r.bucketOf(rest[0].Time)
		n := 1
		for n < len(rest) && r.bucketOf(rest[n].Time) == b {
			n++
		}
		blob, lo, hi, err := r.encode(rest[:n])
		if err != nil {
			return err
		}
		rest = rest[n:]
		if blob == nil {
			continue
		}
		chunks = append(chunks, twin.TimelineChunk{Bucket: b, Key: key, Min: lo, Max: hi, Data: blob})
		r.m.bytes.Add(float64(len(blob)))
	}
	for _, c := range r.keptChunks(key) {
		chunks = append(chunks, c)
		r.m.bytes.Add(float64(len(c.Data)))
	}
	r.step()
	if err := r.tl.AppendChanges(ctx, chunks); err != nil {
		r.m.errors.Inc()
		return err
	}
	if err := r.tl.PutVersions(ctx, r.versions); err != nil {
		r.m.errors.Inc()
		return err
	}
	r.m.records.Add(float64(len(r.pending) + len(r.versions) + r.keptRecords))
	r.m.runsKept.Add(float64(len(r.kept)))
	for _, k := range r.kept {
		r.release(k.body)
	}
	clear(r.kept)
	r.kept, r.keptRecords = r.kept[:0], 0
	r.m.flushSeconds.Observe(time.Since(start).Seconds())
	clear(r.pending) // the features they hold may leave the twin
	r.peak = nextPeak(r.peak, len(r.pending))
	r.pending, r.versions = r.pending[:0], r.versions[:0]
	if !keepPending(cap(r.pending), r.peak) {
		r.pending, r.order, r.raw, r.grouped, r.counts = nil, nil, nil, nil, nil
		r.objects, r.ids, r.byID, r.rank = nil, nil, nil, nil
	}
	return nil
}

// chunkKey is a pending record's place in chunk order and its index,
// sorted in its place: no pointers, so the sort's swaps are 24 bytes
// without write barriers (sorting the 128-byte records themselves was a
// third of the recorder's CPU in a server at 14k msgs/s), and the object
// is its rank in ID order among the flush's objects, so the sort compares
// integers and never reaches into the records (a string compare through
// the record per step was most of the sort's cost, ~2 % of the server's
// CPU at 35k updates/s; issue 16 goal 1).
type chunkKey struct {
	bucket int64
	seq    uint64
	object int32 // first the object's index in objects, then its rank
	i      int32 // < Options.MaxPending
}

// sortPending puts the pending records in chunk order: by bucket, ID,
// seq. Each record moves once.
func (r *Recorder) sortPending() {
	ps := r.pending
	keys := r.order[:0]
	if r.objects == nil {
		r.objects = map[twin.ID]int32{}
	}
	ids := r.ids[:0]
	for i := range ps {
		o, ok := r.objects[ps[i].ID]
		if !ok {
			o = int32(len(ids))
			r.objects[ps[i].ID] = o
			ids = append(ids, ps[i].ID)
		}
		keys = append(keys, chunkKey{bucket: r.bucketOf(ps[i].Time), seq: ps[i].Seq, object: o, i: int32(i)})
	}
	// Rank the objects by ID: rank[o] is object o's place.
	byID := r.byID[:0]
	for o := range ids {
		byID = append(byID, int32(o))
	}
	slices.SortFunc(byID, func(a, b int32) int { return cmpID(ids[a], ids[b]) })
	rank := slices.Grow(r.rank[:0], len(ids))[:len(ids)]
	for at, o := range byID {
		rank[o] = int32(at)
	}
	for i := range keys {
		keys[i].object = rank[keys[i].object]
	}
	if grouped, ok := r.groupKeys(keys, len(ids)); ok {
		// The permutation below reads keys, the grouped order: swap the
		// two scratch slices.
		keys, r.grouped = grouped, keys
	} else {
		slices.SortFunc(keys, func(a, b chunkKey) int {
			if a.bucket != b.bucket {
				return cmp.Compare(a.bucket, b.bucket)
			}
			if a.object != b.object {
				return cmp.Compare(a.object, b.object)
			}
			return cmp.Compare(a.seq, b.seq)
		})
	}
	// Position p takes the record at keys[p].i: follow each cycle of that
	// permutation once, marking the positions done.
	for start := range keys {
		if keys[start].i < 0 {
			continue
		}
		tmp := ps[start]
		for j := start; ; {
			k := int(keys[j].i)
			keys[j].i = -1
			if k == start {
				ps[j] = tmp
				break
			}
			ps[j] = ps[k]
			j = k
		}
	}
	clear(r.objects) // keeps no ID's strings alive
	clear(ids)
	r.order, r.ids, r.byID, r.rank = keys, ids[:0], byID, rank
}

// maxGroupBuckets is the most buckets a flush's records may span for
// groupKeys to order them; more (telemetry with scattered old times) are
// sorted.
const maxGroupBuckets = 16

// groupKeys returns keys in chunk order (bucket, object rank, seq) in
// linear time, a counting sort by (bucket, object) that keeps the order
// within a group: the feed's records come in seq order, so that is the
// seq order. It reports false, doing nothing, when the seqs are not
// ascending or the records span more than maxGroupBuckets buckets or far
// more groups than records. A comparison sort of the keys was ~2 % of the
// server's CPU at 150k updates/s (issue 16 goal 1). objects is the number
// of object ranks.
func (r *Recorder) groupKeys(keys []chunkKey, objects int) ([]chunkKey, bool) {
	var buckets [maxGroupBuckets]int64
	nb := 0
	for i := range keys {
		if i > 0 && keys[i].seq <= keys[i-1].seq {
			return nil, false
		}
		if nb > 0 && buckets[nb-1] == keys[i].bucket {
			continue
		}
		if !slices.Contains(buckets[:nb], keys[i].bucket) {
			if nb == maxGroupBuckets {
				return nil, false
			}
			buckets[nb] = keys[i].bucket
			nb++
		}
	}
	groups := nb * objects
	if groups > 4*len(keys)+1024 {
		return nil, false
	}
	bs := buckets[:nb]
	slices.Sort(bs)
	group := func(k chunkKey) int {
		b, _ := slices.BinarySearch(bs, k.bucket)
		return b*objects + int(k.object)
	}
	counts := slices.Grow(r.counts[:0], groups+1)[:groups+1]
	clear(counts)
	for _, k := range keys {
		counts[group(k)+1]++
	}
	for g := 1; g <= groups; g++ {
		counts[g] += counts[g-1]
	}
	out := slices.Grow(r.grouped[:0], len(keys))[:len(keys)]
	for _, k := range keys {
		g := group(k)
		out[counts[g]] = k
		counts[g]++
	}
	r.counts = counts
	return out, true
}

// encode makes one chunk's blob and its time range; a record that cannot
// be encoded (a value the encoder refuses) is left out and logged, never
// holding the others back. blob is nil when none is left.
func (r *Recorder) encode(rs []twin.TimelineRecord) (blob []byte, lo, hi int64, err error) {
	blob, err = twin.EncodeRecordsPaced(&r.raw, rs, r.pause)
	if err != nil {
		good := rs[:0:0]
		for _, rec := range rs {
			if _, err := twin.EncodeRecords([]twin.TimelineRecord{rec}); err != nil {
				r.log.Error("timeline: change not recorded", "id", rec.ID, "seq", rec.Seq, "err", err)
				continue
			}
			good = append(good, rec)
		}
		if rs = good; len(rs) == 0 {
			return nil, 0, 0, nil
		}
		if blob, err = twin.EncodeRecords(rs); err != nil {
			return nil, 0, 0, err
		}
	}
	lo, hi = rs[0].Time, rs[0].Time
	for _, rec := range rs[1:] {
		lo, hi = min(lo, rec.Time), max(hi, rec.Time)
	}
	return blob, lo, hi, nil
}

func (r *Recorder) putSeq(ctx context.Context) error {
	if err := r.st.PutMeta(ctx, MetaSeq, binary.BigEndian.AppendUint64(nil, r.recorded())); err != nil {
		r.m.errors.Inc()
		return fmt.Errorf("timeline: %w", err)
	}
	return nil
}

// cmpRecord orders records by time, then seq: the order of replay.
func cmpRecord(a, b twin.TimelineRecord) int {
	if a.Time != b.Time {
		if a.Time < b.Time {
			return -1
		}
		return 1
	}
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// cmpObject orders records by object, then seq: the order of a chunk's
// records (sortPending) and a checkpoint cell's.
func cmpObject(a, b twin.TimelineRecord) int {
	if c := cmpID(a.ID, b.ID); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}

// maxCachedState is the largest checkpoint state the recorder keeps
// between builds (records).
const maxCachedState = 1 << 16

// maxBuilds and buildBudget bound the checkpoints built per round, so
// recording goes on while a long stretch is rebuilt.
const (
	maxBuilds   = 48
	buildBudget = 2 * time.Second
)

// checkpoints builds the missing checkpoints up to now - Lateness, and
// prunes once an hour.
func (r *Recorder) checkpoints(ctx context.Context) {
	now := r.opts.Clock.Now()
	if now.Sub(r.lastPrune) > time.Hour {
		r.lastPrune = now
		n := now.UnixNano()
		if err := r.tl.PruneTimeline(ctx, r.bucketOf(n-int64(r.opts.Retention)), n-int64(r.opts.CheckpointRetention),
			n-int64(r.opts.CheckpointRetention)); err != nil {
			r.log.Warn("timeline prune failed", "err", err)
		}
	}
	step := int64(r.opts.Interval)
	target := floorTo(now.Add(-r.opts.Lateness).UnixNano(), step)
	last, ok, err := r.tl.LastCheckpoint(ctx, target)
	if err != nil {
		r.log.Warn("timeline checkpoint", "err", err)
		return
	}
	if ok && last == target {
		return
	}
	var st *ckptState
	if ok {
		if r.cache == nil || r.cache.at != last {
			// Not in memory: build from the stored checkpoint, a cell
			// at a time.
			r.cache = nil
			r.streamCheckpoints(ctx, last, target, step)
			return
		}
		st = r.cache
	} else {
		// No checkpoint yet: the first one covers every change before it.
		first, any, err := earliest(ctx, r.tl)
		if err != nil || !any {
			return
		}
		at := max(floorTo(first, step)+step, floorTo(now.Add(-r.opts.CheckpointRetention).UnixNano(), step))
		if at > target {
			return
		}
		st = &ckptState{at: math.MinInt64, recs: map[twin.ID]*twin.TimelineRecord{}}
		if err := st.advance(ctx, r.tl, at-step, int64(r.opts.Bucket), nil); err != nil {
			r.log.Warn("timeline checkpoint", "err", err)
			return
		}
	}
	// st changes in place: a failed step leaves it half-advanced, so it is
	// the cache only between a written checkpoint and the next step.
	r.cache = nil
	defer func() {
		if r.cache != nil && len(r.cache.recs) > r.maxCached {
			r.cache = nil
		}
	}()
	// Building runs on the goroutine that reads the feed: a long rebuild
	// (late data made many checkpoints stale) goes on at the next round
	// rather than hold the feed for long.
	roundStart := time.Now()
	for i := 0; i < maxBuilds && st.at < target && time.Since(roundStart) < buildBudget; i++ {
		start := time.Now()
		r.cache = nil
		if err := st.advance(ctx, r.tl, st.at+step, int64(r.opts.Bucket), nil); err != nil {
			r.log.Warn("timeline checkpoint", "err", err)
			return
		}
		blobs, err := st.encode()
		if err != nil {
			r.log.Error("timeline checkpoint", "err", err)
			return
		}
		if err := r.tl.PutCheckpoint(ctx, st.at, blobs); err != nil {
			r.log.Warn("timeline checkpoint", "err", err)
			return
		}
		r.cache = st
		r.m.checkpoints.Inc()
		r.m.ckptSeconds.Observe(time.Since(start).Seconds())
		r.m.ckptObjects.Set(float64(len(st.recs)))
	}
}

// streamCheckpoints builds the checkpoints after prev up to target from
// the stored ones (buildStreamed), within the bounds of one round.
func (r *Recorder) streamCheckpoints(ctx context.Context, prev, target, step int64) {
	roundStart := time.Now()
	for i := 0; i < maxBuilds && prev < target && time.Since(roundStart) < buildBudget; i++ {
		start := time.Now()
		n, err := r.buildStreamed(ctx, prev, prev+step)
		if err != nil {
			r.log.Warn("timeline checkpoint", "err", err)
			return
		}
		prev += step
		r.m.checkpoints.Inc()
		r.m.ckptSeconds.Observe(time.Since(start).Seconds())
		r.m.ckptObjects.Set(float64(n))
	}
}

// earliest returns the time of the oldest stored change.
func earliest(ctx context.Context, tl twin.Timeline) (int64, bool, error) {
	first, found := int64(math.MaxInt64), false
	stop := errors.New("stop")
	err := tl.ScanChanges(ctx, math.MinInt64, math.MaxInt64, func(c twin.TimelineChunk) error {
		if found && c.Bucket > first {
			return stop
		}
		first, found = min(first, c.Min), true
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return 0, false, err
	}
	return first, found, nil
}
