package twin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FeedCollector exports the feed's state and each named consumer's lag
// (Follow) to Prometheus, read at scrape time. now is the clock of the
// twin (Change.Time comes from it).
type FeedCollector struct {
	f   *Feed
	now func() time.Time

	lag, lagSec, cuts, last, window, capacity, seqWaits, roomWaits, roomSec *prometheus.Desc
}

var _ prometheus.Collector = (*FeedCollector)(nil)

// NewFeedCollector makes a collector for f.
func NewFeedCollector(f *Feed, now func() time.Time) *FeedCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &FeedCollector{f: f, now: now,
		lag: d("twin_feed_consumer_lag_changes",
			"Changes appended to the feed that the consumer has not processed yet.", "consumer", "mode"),
		lagSec: d("twin_feed_consumer_lag_seconds",
			"Age of the oldest change the consumer has not processed (0 when caught up).", "consumer", "mode"),
		cuts: d("twin_feed_consumer_cut_total",
			"Times a required consumer was cut loose because it stopped reading while the feed was at its hard cap (it then skips or resyncs).", "consumer", "mode"),
		last:     d("twin_feed_last_seq", "Sequence number of the newest change."),
		window:   d("twin_feed_window_changes", "Changes held in memory for consumers."),
		capacity: d("twin_feed_capacity_changes", "Changes the feed keeps while no required consumer lags (--feed-size); it holds up to eight times that for a lagging required consumer (producers wait at four)."),
		seqWaits: d("twin_feed_seq_waits_total", "Mutations that waited for the store writer to persist a new sequence reservation."),
		roomWaits: d("twin_feed_backpressure_waits_total",
			"Telemetry samples that waited because a required consumer (rules, writer) was four windows behind."),
		roomSec: d("twin_feed_backpressure_seconds_total", "Total time telemetry samples waited for a required consumer."),
	}
}

// Describe implements prometheus.Collector.
func (c *FeedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lag, c.lagSec, c.cuts, c.last, c.window, c.capacity, c.seqWaits, c.roomWaits, c.roomSec} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *FeedCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, s := range c.f.Consumers() {
		mode := "best_effort"
		if s.Required {
			mode = "required"
		}
		age := 0.0
		if !s.Oldest.IsZero() {
			age = max(0, now.Sub(s.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), s.Name, mode)
		ch <- prometheus.MustNewConstMetric(c.lagSec, prometheus.GaugeValue, age, s.Name, mode)
		ch <- prometheus.MustNewConstMetric(c.cuts, prometheus.CounterValue, float64(s.Cuts), s.Name, mode)
	}
	st := c.f.Stats()
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(st.Last))
	ch <- prometheus.MustNewConstMetric(c.window, prometheus.GaugeValue, float64(st.Window))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(st.Capacity))
	ch <- prometheus.MustNewConstMetric(c.seqWaits, prometheus.CounterValue, float64(st.SeqWaits))
	ch <- prometheus.MustNewConstMetric(c.roomWaits, prometheus.CounterValue, float64(st.RoomWaits))
	ch <- prometheus.MustNewConstMetric(c.roomSec, prometheus.CounterValue, st.RoomWait.Seconds())
}
