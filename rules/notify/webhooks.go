package notify

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// webhooks posts alerts to the configured URLs with retry and exponential
// backoff, at most 32 deliveries at once; a 33rd waits for a slot
// (back-pressure on the notifier, never a drop).
type webhooks struct {
	urls     []string
	client   *http.Client
	failures prometheus.Counter
	log      *slog.Logger
	sem      chan struct{}
	wg       sync.WaitGroup
	retries  int
	backoff  time.Duration
}

func newWebhooks(urls []string, c *http.Client, failures prometheus.Counter, log *slog.Logger, backoff time.Duration) *webhooks {
	return &webhooks{urls: urls, client: c, failures: failures, log: log, sem: make(chan struct{}, 32), retries: 4, backoff: backoff}
}

func (w *webhooks) send(ctx context.Context, body []byte) {
	for _, u := range w.urls {
		select {
		case w.sem <- struct{}{}:
		case <-ctx.Done():
			w.failures.Inc()
			w.log.Warn("notify: stopping; webhook not sent", "url", u)
			continue
		}
		w.wg.Add(1)
		go func(u string) {
			defer func() { <-w.sem; w.wg.Done() }()
			w.post(u, body)
		}(u)
	}
}

func (w *webhooks) post(u string, body []byte) {
	d := w.backoff
	var last error
	for i := 0; i < w.retries; i++ {
		if i > 0 {
			time.Sleep(d) // real time: the far end's recovery is real
			d *= 2
		}
		resp, err := w.client.Post(u, "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
	}
	w.failures.Inc()
	w.log.Warn("notify: webhook failed", "url", u, "err", last)
}

// wait blocks until in-flight deliveries end.
func (w *webhooks) wait() { w.wg.Wait() }

// metrics of the notifier.
type metrics struct {
	published, failures, dropped, resyncs, webhookFailures, unheard prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_notify_published_total",
			Help: "Alert and owner messages published to MQTT."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_rules_publish_failures_total",
			Help: "MQTT alert/notification publish attempts that failed (each is retried)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_notify_dropped_total",
			Help: "Messages given up at shutdown (never while running)."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_notify_resyncs_total",
			Help: "Times the notifier fell out of the feed window and republished changed alerts from the twin."}),
		webhookFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_webhook_failures_total",
			Help: "Webhook deliveries that failed after every retry."}),
		unheard: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_notify_unheard_total",
			Help: "Alert changes not published because nothing subscribed to their topic on the embedded broker (and no webhook is set)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.failures, m.dropped, m.resyncs, m.webhookFailures, m.unheard} {
			if err := reg.Register(c); err != nil {
				slog.Default().Warn("notify: register metric", "err", err)
			}
		}
	}
	return m
}

func (m metrics) publishedN() float64 {
	var d dto.Metric
	_ = m.published.Write(&d)
	return d.GetCounter().GetValue()
}
