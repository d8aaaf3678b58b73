package indicators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// Options configure a Service. Zero values take defaults.
type Options struct {
	Clock  clock.Clock  // gauges' sampling time; default the twin's clock
	Logger *slog.Logger // default slog.Default()
	// Registerer receives the consumer's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// FlushEvery is how often gauges are sampled and changed buckets are
	// written; default 1 s.
	FlushEvery time.Duration
	// Location is the city's time zone, where days start; default
	// Asia/Shanghai (UTC+8, no daylight saving).
	Location *time.Location
	// MaxSamples bounds the durations kept per bucket for exact medians;
	// default 4096.
	MaxSamples int
	// Keep is how long clean buckets stay in memory after their start
	// (older late events load them from the store); default 48 h.
	Keep time.Duration
}

// Service is the indicators consumer and its read side. Make it with New;
// Run consumes the feed (on the leader only: it is the one writer of the
// figures); Series reads them (on any server: from the store, plus what
// this server's consumer has not flushed yet).
type Service struct {
	scan []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	tw   *twin.Twin
	st   twin.IndicatorStore
	opts Options
	log  *slog.Logger
	m    metrics

	mu    sync.Mutex
	agg   *aggregator
	after uint64       // last feed seq applied
	cur   *twin.Cursor // while Run runs
}

// New makes the service over the twin and the store. It reads nothing
// yet: Run loads the consumer's state.
func New(tw *twin.Twin, st twin.IndicatorStore, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = tw.Clock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = time.Second
	}
	if opts.Location == nil {
		opts.Location = time.FixedZone("CST", 8*3600)
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = 4096
	}
	if opts.Keep <= 0 {
		opts.Keep = 48 * time.Hour
	}
	s := &Service{tw: tw, st: st, opts: opts, log: opts.Logger.With("component", "indicators"), m: newMetrics(opts.Registerer)}
	s.agg = newAggregator(opts.Location, opts.MaxSamples, s.loadBucket)
	return s
}

// loadBucket reads one bucket from the store (a late event for a bucket no
// longer in memory). Called with s.mu held, from Run's goroutine.
func (s *Service) loadBucket(k bkey) (*figures, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Unix(k.start, 0)
	rows, err := s.st.Indicators(ctx, k.region, k.step, start, start.Add(time.Second))
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	return decodeFigures(rows[0].Data)
}

// Start loads the consumer's stored state: its position and the summaries
// of the objects it has counted. Run calls it; tests may call it first.
func (s *Service) start(ctx context.Context) error {
	pos, objs, err := s.st.IndicatorState(ctx)
	if err != nil {
		return fmt.Errorf("indicators: load state: %w", err)
	}
	load := s.loadBucket
	if pos == 0 && len(objs) == 0 {
		// Nothing stored yet: the first reconciliation counts the whole
		// store's history into empty buckets without asking the store for
		// each one.
		load = nil
	}
	s.agg = newAggregator(s.opts.Location, s.opts.MaxSamples, load)
	for id, b := range objs {
		var o objSum
		if err := json.Unmarshal(b, &o); err != nil {
			s.log.Error("indicators: undecodable object summary; the object is counted again from its props", "id", id, "err", err)
			continue
		}
		s.agg.restore(id, &o)
	}
	s.log.Info("indicators: state loaded", "stored_position", pos, "objects", len(objs))
	return nil
}

// reconcile brings every summary up to the twin's current objects:
// events the consumer missed (it was down, or cut loose) are counted at
// the times the objects record; objects gone are removed. Idempotent.
// Caller holds s.mu.
func (s *Service) reconcile() int {
	now := s.opts.Clock.Now()
	seen := map[string]struct{}{}
	var all []*twin.Feature
	for _, l := range trackedLayers {
		s.tw.Range(l, func(f *twin.Feature) bool { all = append(all, f); return true })
	}
	changed := 0
	for _, f := range all {
		id := f.ID.String()
		seen[id] = struct{}{}
		before := s.agg.objs[id]
		s.agg.apply(id, f, now)
		if !before.equal(s.agg.objs[id]) {
			changed++
		}
	}
	for id := range s.agg.objs {
		if _, ok := seen[id]; !ok {
			s.agg.apply(id, nil, now)
			changed++
		}
	}
	return changed
}

// Run consumes the feed until ctx ends: a required consumer (the feed
// keeps what it has not read), writing changed buckets, the changed
// summaries and its position every FlushEvery in one store call, then a
// last flush when ctx ends. Start it on the cluster's leader only.
func (s *Service) Run(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	defer s.close()
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	for {
		s.drain()
		select {
		case <-ctx.Done():
			s.drain()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := s.Flush(fctx)
			cancel()
			return err
		case <-s.cur.C():
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("indicators: flush failed; kept and retried", "err", err)
			}
		}
	}
}

// open loads the stored state, follows the feed from its end and
// reconciles the summaries with the twin (changes made meanwhile are
// applied again by drain: harmless, counting is idempotent).
func (s *Service) open(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.cur = s.tw.Feed().Follow("indicators", twin.Required, s.tw.Feed().Last())
	s.after = s.tw.Feed().Last()
	n := s.reconcile()
	s.agg.load = s.loadBucket
	s.mu.Unlock()
	s.log.Info("indicators: reconciled with the twin", "objects_changed", n)
	return nil
}

// close stops following the feed (nothing is flushed: Run flushes first).
func (s *Service) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Close()
	s.cur = nil
}

// drain applies every change in the feed after the last one applied.
func (s *Service) drain() {
	for {
		s.mu.Lock()
		cs, err := s.tw.Feed().SinceAppend(s.scan[:0], s.after, 2048)
		s.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			// Cut loose (hung for long): the changes are gone, the objects
			// are not; reconciling counts what they record.
			last := s.tw.Feed().Last()
			s.m.resyncs.Inc()
			s.log.Warn("indicators: fell out of the feed window; reconciling with the twin", "from", s.after, "to", last)
			s.after = last
			s.reconcile()
			s.cur.Done(s.after)
			s.mu.Unlock()
			continue
		}
		if len(cs) == 0 {
			s.mu.Unlock()
			return
		}
		for i := range cs {
			c := &cs[i]
			if c.Kind == twin.History || !tracked(c.ID().Layer) || unchanged(c) {
				continue
			}
			s.agg.apply(c.ID().String(), c.New, c.Time)
		}
		s.after = cs[len(cs)-1].Seq
		s.cur.Done(s.after)
		s.m.changes.Add(float64(len(cs)))
		s.mu.Unlock()
	}
}

// Flush samples the gauges at the clock's now and writes every changed
// bucket and summary with the position, in one store call. On failure
// everything stays pending for the next flush.
func (s *Service) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	s.agg.sampleGauges(now)
	if len(s.agg.dirty) == 0 && len(s.agg.objDirty) == 0 {
		return nil
	}
	rows, objs, keys, err := s.agg.takeDirty(encodeFigures, s.after)
	if err != nil {
		return fmt.Errorf("indicators: encode: %w", err)
	}
	if err := s.st.PutIndicators(ctx, rows, objs, s.after); err != nil {
		s.m.flushErrors.Inc()
		return fmt.Errorf("indicators: write: %w", err)
	}
	s.agg.clean(keys, objs, now.Add(-s.opts.Keep))
	s.m.flushes.Inc()
	s.m.rows.Add(float64(len(rows)))
	s.m.position.Set(float64(s.after))
	return nil
}

// Caught reports whether the consumer has applied every change up to seq.
func (s *Service) Caught(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.after >= seq
}

// unchanged reports a device or worker change that moves no figure (a
// reading or a position inside the same regions: most of the feed), so it
// costs no summary. The summary reflects Old, since every change is applied
// in order after a reconciliation.
func unchanged(c *twin.Change) bool {
	if c.Old == nil || c.New == nil || (c.New.ID.Layer != twin.Devices && c.New.ID.Layer != twin.Workers) {
		return false
	}
	return c.Old.Prop("status") == c.New.Prop("status") && slices.Equal(c.Old.Region(), c.New.Region())
}

func encodeFigures(g *figures) ([]byte, error) { return json.Marshal(g) }

func encodeSum(o *objSum) ([]byte, error) { return json.Marshal(o) }

func decodeFigures(b []byte) (*figures, error) {
	var g figures
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("indicators: decode bucket: %w", err)
	}
	return &g, nil
}

type metrics struct {
	changes, flushes, flushErrors, rows, resyncs prometheus.Counter
	position                                     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_indicators_changes_total",
			Help: "Feed changes read by the indicators consumer."}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_indicators_flushes_total",
			Help: "Indicator writes (buckets, summaries and position in one store call)."}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_indicators_flush_errors_total",
			Help: "Indicator writes the store refused or could not take; kept and retried."}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_indicators_rows_written_total",
			Help: "Indicator bucket rows written."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_indicators_resyncs_total",
			Help: "Times the indicators consumer fell out of the feed window and reconciled with the twin."}),
		position: prometheus.NewGauge(prometheus.GaugeOpts{Name: "twin_indicators_position",
			Help: "Feed sequence the stored indicators include."}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.flushes, m.flushErrors, m.rows, m.resyncs, m.position)
	}
	return m
}
