// Package notify is CityTwin's one way out for alerts: a consumer of the
// twin's feed that publishes every new or changed alert, whoever wrote it
// (the rules engine, the incident service's SLA clock, an operator's ack),
// to MQTT twin/alerts/{severity}/{rule} and to webhooks, and tells the
// responsible persons of the object an alert concerns on
// twin/notify/{person} when it opens or escalates.
//
// Nothing is dropped while the server runs: publishing blocks (it never
// holds up ingest, only this consumer) and retries a failing broker with
// backoff, counting each failure; a consumer that falls out of the feed
// window republishes the latest state of every alert that changed meanwhile.
// Only what is still queued when the server stops is given up, and counted.
//
// Tasks (governance/tasks: directives' targets, rectification, enforcement)
// go out the same way: the persons a task names (`persons`) hear on
// twin/notify/{person} when it is issued, reminded near its due time,
// escalated and closed, and webhooks receive each such event.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/twin"
)

// Publisher sends one MQTT message (the ingest client implements it).
type Publisher interface {
	Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error
}

// Listened is what a Publisher may also tell: whether anything subscribes
// to a topic now. The embedded broker knows. An alert is published not
// retained, which a broker drops when nobody subscribes, so the notifier
// does not encode one that neither MQTT nor a webhook would receive (an
// alert with its 50-entry history, once per firing: 5 % of the server's
// CPU with 10,000 geofences firing; issue 16 goal 1). An external broker
// cannot tell, and gets every alert.
type Listened interface {
	Listened(topic string) bool
}

// Options configure a Notifier. Zero values take defaults.
type Options struct {
	Publisher  Publisher // nil: nothing goes to MQTT
	Webhooks   []string  // URLs that receive every published alert as a JSON POST
	HTTPClient *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	// Workers publish in parallel (an alert's messages always go through
	// the same worker, in order); default 16.
	Workers int
	// Backoff is the first wait before retrying a failed publish; it
	// doubles up to 5 s. Default 200 ms.
	Backoff time.Duration
}

// Notifier follows the feed and publishes alerts. Make it with New, start
// it with Run.
type Notifier struct {
	scan  []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	tw    *twin.Twin
	opts  Options
	log   *slog.Logger
	m     metrics
	hook  *webhooks
	after uint64
	seen  map[twin.ID]summary     // last published state per alert
	tasks map[twin.ID]taskSummary // last notified state per task that changed since the start
	queue []chan msg              // per worker; nil until Run starts them
	wg    sync.WaitGroup
}

// summary is what decides whether an alert change is news.
type summary struct {
	state, severity, tier string
	count                 float64
}

// taskSummary is what decides whether a task change is news.
type taskSummary struct {
	state, tier, reminded string
}

func summarizeTask(f *twin.Feature) taskSummary {
	return taskSummary{f.Prop("state"), f.Prop("tier"), f.Prop("reminded_at")}
}

func summarize(f *twin.Feature) summary {
	n, _ := f.Number("count")
	return summary{f.Prop("state"), f.Prop("severity"), f.Prop("tier"), n}
}

type msg struct {
	topic   string
	payload []byte
}

// New makes a Notifier that publishes changes after the feed's current end;
// alerts already in the twin count as published.
func New(tw *twin.Twin, opts Options) *Notifier {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 200 * time.Millisecond
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	n := &Notifier{tw: tw, opts: opts, log: opts.Logger, m: newMetrics(opts.Registerer), seen: map[twin.ID]summary{},
		tasks: map[twin.ID]taskSummary{}}
	n.hook = newWebhooks(opts.Webhooks, opts.HTTPClient, n.m.webhookFailures, opts.Logger, opts.Backoff)
	n.after = tw.Range(twin.Alerts, func(f *twin.Feature) bool {
		n.seen[f.ID] = summarize(f)
		return true
	})
	return n
}

// Resume makes the next Run publish changes after the feed's current end,
// counting the alerts now in the twin as published (a server that starts
// leading a replicated twin: the previous leader published them). Call it
// while Run is not running.
func (n *Notifier) Resume() {
	seen := map[twin.ID]summary{}
	n.after = n.tw.Range(twin.Alerts, func(f *twin.Feature) bool {
		seen[f.ID] = summarize(f)
		return true
	})
	n.seen = seen
}

// Run publishes until ctx ends, then publishes the alert changes made until
// then and what is queued (each message tried once more, bounded) and
// waits for webhook deliveries.
func (n *Notifier) Run(ctx context.Context) error {
	n.queue = make([]chan msg, n.opts.Workers)
	for i := range n.queue {
		n.queue[i] = make(chan msg, 256)
		n.wg.Add(1)
		go n.worker(ctx, n.queue[i])
	}
	cur := n.tw.Feed().Subscribe()
	defer cur.Close()
	for {
		n.drain(ctx)
		select {
		case <-ctx.Done():
			// Stopping (after the rules stopped): what they wrote last still
			// goes out, each message tried once.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			n.drain(fctx)
			cancel()
			for _, q := range n.queue {
				close(q)
			}
			n.wg.Wait()
			n.hook.wait()
			return nil
		case <-cur.C():
		}
	}
}

// Drain publishes, synchronously, every alert change since the last call
// (tests and tools that drive the twin by hand; Run does it continuously).
// It returns the number of alert messages published to MQTT.
func (n *Notifier) Drain(ctx context.Context) int {
	before := n.m.publishedN()
	n.drain(ctx)
	n.hook.wait()
	return int(n.m.publishedN() - before)
}

func (n *Notifier) drain(ctx context.Context) {
	for ctx.Err() == nil {
		cs, err := n.tw.Feed().SinceAppend(n.scan[:0], n.after, 1024)
		n.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			n.m.resyncs.Inc()
			n.log.Warn("notify: fell behind the feed; republishing every alert that changed meanwhile")
			n.after = n.resync(ctx)
			continue
		}
		if len(cs) == 0 {
			return
		}
		for i := range cs {
			c := &cs[i]
			if c.Kind == twin.Upsert && c.New.ID.Layer == twin.Alerts {
				n.alert(ctx, c.New)
			} else if c.Kind == twin.Remove && c.Old.ID.Layer == twin.Alerts {
				delete(n.seen, c.Old.ID)
			} else if c.Kind == twin.Upsert && c.New.ID.Layer == twin.Tasks {
				n.task(ctx, c.Old, c.New, true)
			} else if c.Kind == twin.Remove && c.Old.ID.Layer == twin.Tasks {
				delete(n.tasks, c.Old.ID)
			}
		}
		n.after = cs[len(cs)-1].Seq
	}
}

// resync compares every alert with what was last published.
func (n *Notifier) resync(ctx context.Context) uint64 {
	var all []*twin.Feature
	seq := n.tw.Range(twin.Alerts, func(f *twin.Feature) bool { all = append(all, f); return true })
	for _, f := range all {
		n.alert(ctx, f)
	}
	all = all[:0]
	n.tw.Range(twin.Tasks, func(f *twin.Feature) bool { all = append(all, f); return true })
	for _, f := range all {
		n.task(ctx, nil, f, false) // what changed meanwhile is unknown: no news for a task not seen before
	}
	return seq
}

// alert publishes one alert state if it is news: new, or its state,
// severity, tier or count changed. Owners hear of a new alert (except
// risk alerts, whose building change notifies them) and an escalation.
func (n *Notifier) alert(ctx context.Context, al *twin.Feature) {
	now := summarize(al)
	prev, known := n.seen[al.ID]
	if known && prev == now {
		return
	}
	n.seen[al.ID] = now
	key := al.ID.String()
	topic := "twin/alerts/" + al.Prop("severity") + "/" + al.Prop("rule")
	toMQTT := n.opts.Publisher != nil
	if l, ok := n.opts.Publisher.(Listened); ok && !l.Listened(topic) {
		toMQTT = false
		n.m.unheard.Inc()
	}
	if toMQTT || len(n.hook.urls) > 0 {
		// The feature's own encoder: json.Marshal would run it and then
		// re-scan its output to compact it (5% of the server's CPU with
		// 10,000 geofences firing). Same bytes.
		b, err := al.MarshalJSON()
		if err != nil {
			n.log.Error("notify: encode alert", "alert", al.ID.String(), "err", err)
			return
		}
		if toMQTT {
			n.send(ctx, key, msg{topic, b})
		}
		n.hook.send(ctx, b)
	}
	switch {
	case al.Prop("kind") == "risk":
		// Risk alerts follow the building's risk level, whose changes the
		// engine notifies itself (Notify).
	case !known:
		n.owners(ctx, key, al, "opened")
	case prev.tier != now.tier && now.tier != "":
		n.owners(ctx, key, al, "escalated")
	}
}

// task tells a task's persons (and webhooks) of its news: issued, reminded
// near its due time, escalated a tier, closed. What was known before is
// the last state it notified, else the change's old state (tasks are not
// remembered until they change, so a restart announces nothing twice).
func (n *Notifier) task(ctx context.Context, old, t *twin.Feature, fromFeed bool) {
	now := summarizeTask(t)
	prev, known := n.tasks[t.ID]
	if !known && old != nil {
		prev, known = summarizeTask(old), true
	}
	if !known && !fromFeed {
		n.tasks[t.ID] = now
		return
	}
	if known && prev == now {
		return
	}
	n.tasks[t.ID] = now
	if now.state == "closed" {
		delete(n.tasks, t.ID) // nothing follows a close
	}
	var event string
	switch {
	case !known:
		event = "issued"
	case now.state == "closed" && prev.state != "closed":
		event = "closed"
	case now.tier != prev.tier:
		event = "escalated"
	case now.reminded != "" && prev.reminded == "":
		event = "due_soon"
	default:
		return
	}
	m := map[string]any{"event": "task." + event, "task": t.ID.String(), "kind": t.Prop("kind"), "title": t.Prop("title"),
		"state": t.Prop("state"), "tier": t.Prop("tier"), "tier_code": t.Prop("tier_code"), "due": t.Prop("due"),
		"subject": t.Prop("subject")}
	if o := t.Prop("outcome"); o != "" {
		m["outcome"] = o
	}
	key := t.ID.String()
	n.notify(ctx, key, twin.PropStrings(t.Props.Get("persons")), m)
	if b, err := json.Marshal(map[string]any{"event": "task." + event, "task": t}); err == nil {
		n.hook.send(ctx, b)
	}
}

// owners tells the responsible persons of the objects an alert concerns
// (its subject and the object the subject is attached to).
func (n *Notifier) owners(ctx context.Context, key string, al *twin.Feature, event string) {
	var persons []string
	for _, ref := range []string{al.Prop("attached_to"), al.Prop("subject")} {
		id, err := twin.ParseID(ref)
		if err != nil {
			continue
		}
		if f, ok := n.tw.Get(id); ok {
			persons = append(persons, twin.PropStrings(f.Props.Get("owners"))...)
		}
	}
	n.notify(ctx, key, persons, map[string]any{"event": event, "alert": al.ID.String(), "rule": al.Prop("rule"),
		"severity": al.Prop("severity"), "tier": al.Prop("tier"), "subject": al.Prop("subject"), "message": al.Prop("message")})
}

// Notify sends msg to each person on twin/notify/{person} (the risk engine's
// building changes use it). It blocks while the outbox is full.
func (n *Notifier) Notify(ctx context.Context, persons []string, m map[string]any) {
	n.notify(ctx, "", persons, m)
}

func (n *Notifier) notify(ctx context.Context, key string, persons []string, m map[string]any) {
	if n.opts.Publisher == nil || len(persons) == 0 {
		return
	}
	b, _ := json.Marshal(m)
	seen := map[string]bool{}
	for _, p := range persons {
		if p == "" || seen[p] || strings.ContainsAny(p, "/+#") {
			continue
		}
		seen[p] = true
		k := key
		if k == "" {
			k = p
		}
		n.send(ctx, k, msg{"twin/notify/" + p, b})
	}
}

// send hands a message to the worker for key (blocking: back-pressure, never
// a drop), or publishes it inline when no workers run (Drain).
func (n *Notifier) send(ctx context.Context, key string, m msg) {
	if n.queue == nil {
		n.publish(ctx, m)
		return
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	select {
	case n.queue[h.Sum32()%uint32(len(n.queue))] <- m:
	case <-ctx.Done():
		n.m.dropped.Inc()
		n.log.Warn("notify: stopping; message not queued", "topic", m.topic)
	}
}

func (n *Notifier) worker(ctx context.Context, q <-chan msg) {
	defer n.wg.Done()
	for m := range q {
		n.publish(ctx, m)
	}
}

// publishTimeout bounds one MQTT publish (QoS 1 waits for the ack).
const publishTimeout = 5 * time.Second

// publish sends m at QoS 1, retrying with backoff until it succeeds or ctx
// ends; after ctx ends it makes one last bounded attempt (shutdown).
func (n *Notifier) publish(ctx context.Context, m msg) {
	d := n.opts.Backoff
	for {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		err := n.opts.Publisher.Publish(pctx, m.topic, 1, false, m.payload)
		cancel()
		if err == nil {
			n.m.published.Inc()
			return
		}
		n.m.failures.Inc()
		if ctx.Err() != nil {
			n.m.dropped.Inc()
			n.log.Error("notify: publish failed at shutdown; message given up", "topic", m.topic, "err", err)
			return
		}
		n.log.Warn("notify: publish failed; retrying", "topic", m.topic, "err", err, "in", d)
		select {
		case <-time.After(d): // real time: the broker's recovery is real
		case <-ctx.Done():
		}
		d = min(2*d, 5*time.Second)
	}
}
