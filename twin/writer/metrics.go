package writer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	pending prometheus.Gauge
	flushed prometheus.Counter
	errors  prometheus.Counter
	resyncs prometheus.Counter
	// backfilled counts changes read from the change log (Options.Backfill).
	backfilled prometheus.Counter
	// quarantined counts rows the store refused for their data.
	quarantined prometheus.Counter
	seconds     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "twin_writer_pending_items",
			Help: "Upserts, deletes and samples read from the feed and not yet persisted."}),
		flushed: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_writer_flushed_items_total",
			Help: "Items persisted to the store."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_writer_flush_errors_total",
			Help: "Failed flush attempts (the batch is kept and retried)."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_writer_resyncs_total",
			Help: "Times the writer fell out of the feed window and re-upserted the whole twin (history has a gap)."}),
		backfilled: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_writer_backfilled_changes_total",
			Help: "Changes the writer read from the change log because the feed no longer held them (instead of a resync)."}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_writer_quarantined_total",
			Help: "Rows (object states, deletes, samples) the store refused for their data, set aside in its quarantine instead of blocking the batch."}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_writer_flush_seconds",
			Help: "Duration of flush attempts.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
	}
	if reg != nil {
		reg.MustRegister(m.pending, m.flushed, m.errors, m.resyncs, m.backfilled, m.quarantined, m.seconds)
	}
	return m
}
