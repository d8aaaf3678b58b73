package timeline

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records, bytes, errors, gaps, checkpoints prometheus.Counter
	backfilled                                prometheus.Counter
	runsKept, runsDropped                     prometheus.Counter
	flushSeconds, ckptSeconds                 prometheus.Histogram
	ckptObjects                               prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_records_total",
			Help: "Change records and building versions written to the replay timeline."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_chunk_bytes_total",
			Help: "Compressed bytes of change chunks written to the replay timeline."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_errors_total",
			Help: "Failed timeline writes (retried)."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_gaps_total",
			Help: "Times the recorder lost changes (the feed no longer held them) and recorded the current state instead."}),
		backfilled: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_backfilled_changes_total",
			Help: "Changes the recorder read from the change log because the feed no longer held them (after a crash, or on a new leader)."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_checkpoints_total",
			Help: "Replay checkpoints built (rebuilt ones included)."}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_timeline_flush_seconds",
			Help: "Duration of one timeline flush.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		ckptSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_timeline_checkpoint_seconds",
			Help: "Duration of building one checkpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		runsKept: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_log_runs_total",
			Help: "Change-log runs stored in the replay timeline as the change log published them (runs.go)."}),
		runsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_timeline_log_runs_dropped_total",
			Help: "Change-log runs not kept because the recorder lagged; their changes were recorded one by one."}),
		ckptObjects: prometheus.NewGauge(prometheus.GaugeOpts{Name: "twin_timeline_checkpoint_objects",
			Help: "Objects in the last checkpoint built."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.bytes, m.errors, m.gaps, m.backfilled, m.checkpoints, m.flushSeconds, m.ckptSeconds, m.ckptObjects, m.runsKept, m.runsDropped)
	}
	return m
}

type readMetrics struct {
	snapshotSeconds prometheus.Histogram
}

func newReadMetrics(reg prometheus.Registerer) *readMetrics {
	m := &readMetrics{snapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twin_timeline_snapshot_seconds",
		Help: "Duration of one replay snapshot (GET /api/snapshot, websocket at).", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)})}
	if reg != nil {
		reg.MustRegister(m.snapshotSeconds)
	}
	return m
}
