// Package mqttin subscribes to telemetry over MQTT and applies it to the
// twin (CONTRACT §3). From an external broker it takes telemetry through
// subscriber connections of its own (conn5.go, or paho with v3.1.1); the
// embedded broker (ingest/broker) hands it over in process instead
// (Options.Embedded, handoff.go), the same validation and journal behind
// both. Alerts, notifications and dead letters are published over a
// client connection to either broker. Messages that cannot be applied go
// to twin/deadletter and are counted; ingest never stops for a bad
// message.
package mqttin

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/proxy"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// Topics (CONTRACT §3).
const (
	TelemetryFilter = "twin/telemetry/+"
	TelemetryPrefix = "twin/telemetry/"
	DeadLetterTopic = "twin/deadletter"
)

// Options configure an Ingest. Zero values take defaults.
type Options struct {
	BrokerURL string // e.g. tcp://127.0.0.1:1883 (required)
	// ClientID must be stable across restarts so the broker keeps the
	// persistent session (CleanSession=false) and queues QoS 1 telemetry
	// while the server is down. Default "citytwin-"+hostname.
	ClientID string
	// AutoRegister creates vehicles/{name} for telemetry from unknown names
	// instead of dead-lettering it (demo and replay use it).
	AutoRegister bool
	Limits       telemetry.Limits
	Logger       *slog.Logger          // default slog.Default()
	Registerer   prometheus.Registerer // nil: metrics stay unregistered
	Clock        clock.Clock           // for the future_ts check; default the twin's clock
	// Workers apply messages in parallel; a name always maps to the same
	// worker, so one object's messages are applied in arrival order.
	// Default 4.
	Workers int
	// QueueSize is each worker's backlog; when full, the MQTT handler
	// waits, which withholds QoS 1 acks and so pushes back on the broker.
	// Default 4096.
	QueueSize int
	// DeadLetterQueue bounds dead letters waiting to be published; when it
	// is full the source waits (an MQTT worker, hence the broker; an HTTP
	// request), so a burst is slowed, never dropped. Default 4096.
	DeadLetterQueue int
	// DeadLetterDrain bounds how long shutdown waits for queued dead
	// letters to reach a broker that is away; what is left then is logged
	// and counted in twin_deadletter_dropped_total. Default 10s.
	DeadLetterDrain time.Duration
	// MaxReconnectInterval caps the reconnect back-off; default 10s.
	MaxReconnectInterval time.Duration
	// ConnectTimeout bounds one connection attempt (TCP + CONNACK), so an
	// attempt that lands on a dying broker is retried soon; default 10s.
	ConnectTimeout time.Duration
	// Journal, when set, makes ingest durable: each message is appended to
	// the JetStream log and PUBACKed to the broker only after JetStream
	// confirmed it; the journal's applier applies it to the twin. Nil
	// applies directly (acked on receipt; tests and benchmarks).
	Journal *journal.Journal
	// Connections is how many subscriber connections share the telemetry
	// subscription (client ids ClientID, ClientID-1, ...). A broker bounds
	// the QoS 1 messages in flight per connection (Mosquitto: 20), so with
	// acks that wait for the log, throughput grows with connections.
	// Default 1.
	Connections int
	// ShareGroup, when set, subscribes to $share/ShareGroup/twin/telemetry/+
	// so the broker spreads telemetry over this server's connections and
	// over every server in the same group, instead of sending each a copy.
	// Default: none with one connection; ClientID with several (a group of
	// this server's own). Sharing one group across servers halves the
	// broker's fan-out, but Mosquitto and EMQX keep routing a dead server's
	// share to its persistent session until it comes back; without it each
	// server gets every message and the journal stores it once, so a dead
	// server delays nothing.
	ShareGroup string
	// Protocol of the subscriber connections: 5 (default) or 3 (v3.1.1,
	// for a broker without MQTT 5, such as nats-server's MQTT listener).
	// With 5 the broker lets ReceiveMaximum QoS 1 messages be in flight to
	// each connection; with 3.1.1 it decides alone (Mosquitto:
	// max_inflight_messages, 20), which caps ingest at about 20 / round
	// trip per connection. Both go through this package's own client
	// (wire5.go) over TCP and TLS; websocket and unix broker URLs always
	// use 3.1.1, through paho.
	Protocol int
	// ReceiveMaximum is the MQTT 5 Receive Maximum of each subscriber
	// connection: how many QoS 1 messages the broker may have sent and not
	// yet seen PUBACKed. It is also what the broker holds for us before its
	// queue limit (Mosquitto max_queued_messages, 1000) starts dropping, so
	// large is safe: the messages wait in the broker instead. Default 65535
	// (the most MQTT allows; EMQX caps it at its max_inflight).
	ReceiveMaximum uint16
	// SessionExpiry is how long the broker keeps this server's MQTT 5
	// session (and queues its telemetry) while it is away. Default 24h;
	// a server gone for longer is a server removed, whose queue should not
	// fill and count as the broker's drops forever.
	SessionExpiry time.Duration
	// Embedded, when set, is the embedded broker BrokerURL points at,
	// started with broker.Options.Handoff: Run makes the Ingest its Sink
	// and takes telemetry from it in process (handoff.go) instead of
	// subscribing over TCP, so Connections, ShareGroup, Protocol and
	// ReceiveMaximum do not apply. BrokerURL still carries alerts,
	// notifications, dead letters and the broker's $SYS counters.
	Embedded *broker.Broker
	// Local, when set, reports whether this server applies the journal
	// (it leads). Then a QoS 0 publish the embedded broker hands over is
	// applied here, on the publisher's goroutine, instead of journaled:
	// QoS 0 promises at most once, and the change log makes what it
	// changed durable as it does any write of the leader, without the
	// telemetry log's write, delivery back, ack and second decode (a
	// quarter of the server's CPU at 20k msgs/s, and three hops of the
	// websocket latency; issue 16 goal 6). QoS 1 always goes through the
	// journal (PUBACK once it holds the message). A message the twin
	// refuses because this server no longer leads is journaled after all.
	Local func() bool
}

func (o *Options) defaults(tw *twin.Twin) {
	if o.ClientID == "" {
		host, _ := os.Hostname()
		o.ClientID = "citytwin-" + host
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = tw.Clock()
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.DeadLetterQueue <= 0 {
		o.DeadLetterQueue = 4096
	}
	if o.DeadLetterDrain <= 0 {
		o.DeadLetterDrain = 10 * time.Second
	}
	if o.MaxReconnectInterval <= 0 {
		o.MaxReconnectInterval = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.Connections <= 0 {
		o.Connections = 1
	}
	if o.ShareGroup == "" && o.Connections > 1 {
		o.ShareGroup = o.ClientID
	}
	if o.Protocol != 3 {
		o.Protocol = 5
		if err := ownDialable(o.BrokerURL); err != nil {
			o.Protocol = 3
		}
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 65535
	}
	if o.SessionExpiry <= 0 {
		o.SessionExpiry = 24 * time.Hour
	}
}

// Ingest is the MQTT telemetry subscriber. Run it once; Publish, Connected
// and the metrics are safe for concurrent use from any goroutine.
type Ingest struct {
	tw      *twin.Twin
	opts    Options
	log     *slog.Logger
	client  paho.Client   // publishes (alerts, notifications); with v3.1.1 also clients[0]
	clients []paho.Client // every v3.1.1 subscriber connection
	subs5   []*sub5       // every MQTT 5 subscriber connection
	filter  string        // the telemetry subscription
	metrics *telemetry.Metrics
	seed    maphash.Seed
	dead    *deadLetterQueue // twin/deadletter queue and its own connection

	buffered   bool         // plain TCP through dialBuffered
	subscribed atomic.Int32 // connections currently subscribed
	running    atomic.Bool
	handing    atomic.Bool  // the embedded broker hands telemetry to us
	acks       chan pending // journal mode: appended, waiting to be PUBACKed
	ackCtx     context.Context
	commit     *journal.Committer // every connection's telemetry into the log, by group commit
	sys        *sysWatch          // the broker's $SYS dropped counters

	// gate guards shards against sends after shutdown closed them.
	gate   sync.RWMutex
	closed bool
	shards []chan inbound
	// handedIn queues telemetry the embedded broker handed over (nil until
	// Run starts taking it; closed with the shards).
	handedIn chan handed
}

// inbound is a telemetry message taken from the broker.
type inbound struct {
	topic   string
	payload []byte
	ack     func() // v3.1.1 with a journal: PUBACK it; nil: nothing to do
}

// New prepares an Ingest for tw; nothing connects until Run.
func New(tw *twin.Twin, opts Options) *Ingest {
	opts.defaults(tw)
	i := &Ingest{tw: tw, opts: opts, log: opts.Logger.With("component", "mqttin"),
		metrics: telemetry.NewMetrics(opts.Registerer), seed: maphash.MakeSeed()}
	i.dead = newDeadLetters(i)
	i.filter = TelemetryFilter
	if opts.ShareGroup != "" {
		i.filter = "$share/" + opts.ShareGroup + "/" + TelemetryFilter
	}
	i.sys = newSysWatch(i.log, opts.Registerer)
	if opts.Embedded != nil {
		// Telemetry comes in process (and the broker's drop counter,
		// watchEmbedded); the one connection publishes.
		i.client = i.newPublisher(opts.ClientID + "-pub")
		return i
	}
	for n := range opts.Connections {
		id := opts.ClientID
		if n > 0 {
			id = fmt.Sprintf("%s-%d", opts.ClientID, n)
		}
		// Our own client (wire5.go) for TCP and TLS in either version;
		// paho's v3.1.1 one for websocket and unix URLs.
		if ownDialable(opts.BrokerURL) == nil {
			subs := []subscription{{filter: i.filter, qos: 1}}
			if n == 0 {
				for _, t := range sysDroppedTopics {
					subs = append(subs, subscription{filter: t})
				}
			}
			i.subs5 = append(i.subs5, &sub5{i: i, v311: opts.Protocol == 3, clientID: id, subs: subs, up: func(up bool) {
				if up {
					i.subscribed.Add(1)
				} else {
					i.subscribed.Add(-1)
				}
			}})
			continue
		}
		i.clients = append(i.clients, i.newClient(id, n == 0))
	}
	if len(i.clients) == 0 {
		i.client = i.newPublisher(opts.ClientID + "-pub")
	} else {
		i.client = i.clients[0]
	}
	return i
}

// newPublisher makes the connection that publishes alerts and
// notifications when the subscribers speak MQTT 5 or the embedded broker
// hands telemetry over: it keeps no session.
func (i *Ingest) newPublisher(clientID string) paho.Client {
	opts := i.opts
	co := paho.NewClientOptions().
		AddBroker(opts.BrokerURL).
		SetClientID(clientID).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(opts.MaxReconnectInterval).
		SetConnectTimeout(opts.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			i.log.Warn("MQTT publisher connection lost; reconnecting", "broker", opts.BrokerURL, "client", clientID, "err", err)
		})
	if u, err := url.Parse(opts.BrokerURL); err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") {
		co.SetCustomOpenConnectionFn(dialBuffered)
		i.buffered = true
	}
	return paho.NewClient(co)
}

// newClient makes one broker connection; the first also watches $SYS.
func (i *Ingest) newClient(clientID string, first bool) paho.Client {
	opts := i.opts
	sub := new(atomic.Bool) // this connection is subscribed
	co := paho.NewClientOptions().
		AddBroker(opts.BrokerURL).
		SetClientID(clientID).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(opts.MaxReconnectInterval).
		SetConnectTimeout(opts.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(10 * time.Second).
		// The handler only hands the message to its object's worker, so
		// running it on paho's router goroutine (ordered) costs little and
		// keeps arrival order; unordered, paho starts a goroutine per
		// message and one vehicle's fixes could be applied out of order.
		SetOrderMatters(true).
		// With a journal the PUBACK waits for the log (acker), so the
		// broker redelivers whatever was not yet durable.
		SetAutoAckDisabled(opts.Journal != nil).
		SetOnConnectHandler(func(c paho.Client) {
			// The handler may run again after a reconnect without a lost
			// handler in between only if the link flapped; count once.
			if i.onConnect(c, first) && sub.CompareAndSwap(false, true) {
				i.subscribed.Add(1)
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			if sub.CompareAndSwap(true, false) {
				i.subscribed.Add(-1)
			}
			i.log.Warn("MQTT connection lost; reconnecting", "broker", opts.BrokerURL, "client", clientID, "err", err)
		})
	if u, err := url.Parse(opts.BrokerURL); err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") {
		// TLS, websocket and unix URLs keep paho's own dialer.
		co.SetCustomOpenConnectionFn(dialBuffered)
		i.buffered = true
	}
	return paho.NewClient(co)
}

// ReadBufferSize is the read buffer of a plain-TCP broker connection.
const ReadBufferSize = 64 << 10

// dialBuffered opens a plain-TCP broker connection (through the proxy of
// ALL_PROXY/NO_PROXY, as paho's own dialer does) whose reads go through a
// bufio.Reader. paho decodes each packet straight from its net.Conn: a
// one-byte read for the fixed header, one per remaining-length byte, then
// the body, so unbuffered every telemetry message cost 3-4 read syscalls;
// buffered, one read brings in dozens of messages.
func dialBuffered(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	c, err := proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("mqttin: dial %s: %w", u.Host, err)
	}
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, ReadBufferSize)}, nil
}

// bufConn is a net.Conn whose reads are buffered; writes, deadlines and
// Close go to the connection itself. paho reads from one goroutine only.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Connected reports that the client is connected and subscribed (for /readyz).
func (i *Ingest) Connected() bool {
	if i.opts.Embedded != nil {
		return i.client.IsConnectionOpen() && i.handing.Load()
	}
	return i.client.IsConnectionOpen() && int(i.subscribed.Load()) == i.opts.Connections
}

// Metrics returns the ingest counters (shared with ingest/httpin).
func (i *Ingest) Metrics() *telemetry.Metrics { return i.metrics }

// Publish sends a message through the ingest's connection (alerts,
// notifications, replay) and waits for the broker's acknowledgement (QoS
// 1/2) or ctx.
func (i *Ingest) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := i.client.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt publish %s: %w", topic, ctx.Err())
	}
}

// Run connects (retrying until the broker answers), subscribes to
// twin/telemetry/+ with QoS 1 on every (re)connect, and applies telemetry
// until ctx ends; then it disconnects cleanly and drains its workers. It
// returns nil after a clean shutdown, or an error for a bad configuration.
func (i *Ingest) Run(ctx context.Context) error {
	if !i.running.CompareAndSwap(false, true) {
		return errors.New("mqttin: Run called twice")
	}
	if i.opts.Embedded != nil && !i.opts.Embedded.Handoff() {
		return errors.New("mqttin: Options.Embedded is a broker started without broker.Options.Handoff")
	}
	var wg sync.WaitGroup
	i.shards = make([]chan inbound, i.opts.Workers)
	for n := range i.shards {
		ch := make(chan inbound, i.opts.QueueSize)
		i.shards[n] = ch
		wg.Add(1)
		go func() { //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
			defer wg.Done()
			for m := range ch {
				i.process(m)
			}
		}()
	}
	dlDone := make(chan struct{})
	go i.dead.run(dlDone)
	ackDone := make(chan struct{})
	ackCtx, stopAcks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAcks()
	i.ackCtx = ackCtx
	// The MQTT 5 links, the v3.1.1 workers and the embedded broker's
	// handover journal through one group commit; it stops after them
	// (every group they added is done by then) and, with NATS away, when
	// ackCtx ends.
	commitDone := make(chan struct{})
	commitCtx, stopCommit := context.WithCancel(ackCtx)
	defer stopCommit()
	if i.opts.Journal != nil {
		i.commit = journal.NewCommitter(i.opts.Journal, 0)
		go func() {
			defer close(commitDone)
			i.commit.Run(commitCtx)
		}()
	} else {
		close(commitDone)
	}
	if i.opts.Journal != nil {
		i.acks = make(chan pending, ackQueue)
		go i.ackJournaled(ackDone)
	} else {
		close(ackDone)
	}

	pahos := i.clients
	if len(i.clients) == 0 {
		pahos = []paho.Client{i.client}
	}
	handedDone, watchDone := make(chan struct{}), make(chan struct{})
	if i.opts.Embedded == nil {
		close(handedDone)
		close(watchDone)
	} else {
		i.gate.Lock()
		i.handedIn = make(chan handed, i.opts.QueueSize)
		i.gate.Unlock()
		if i.opts.Journal != nil {
			batches := make(chan handedBatch, handedBatches)
			go i.batchHanded(batches)
			go i.ackHanded(batches, handedDone)
		} else {
			close(handedDone)
		}
		i.opts.Embedded.SetSink(i)
		i.handing.Store(true)
		go func() {
			defer close(watchDone)
			i.watchEmbedded(ctx)
		}()
	}
	errc := make(chan error, len(pahos))
	for _, c := range pahos {
		tok := c.Connect()
		go func() {
			<-tok.Done()
			if err := tok.Error(); err != nil {
				errc <- err
			}
		}()
	}
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var subWG sync.WaitGroup
	for _, s := range i.subs5 {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			s.run(subCtx)
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("mqttin: connect %s: %w", i.opts.BrokerURL, err)
	}

	// Shutdown: stop taking messages (later ones are not acked, so the
	// broker keeps them for the next session), drain the workers, let the
	// journaled ones be PUBACKed (bounded), then disconnect and publish the
	// last dead letters (bounded by DeadLetterDrain when the broker is away).
	giveUp := time.AfterFunc(i.opts.DeadLetterDrain, i.dead.giveUp)
	defer giveUp.Stop()
	// Journaled messages get 5 s to be PUBACKed; with NATS away the rest
	// stays unacked (and workers stop waiting for the acker): the broker
	// delivers it again next session.
	stopAcking := time.AfterFunc(5*time.Second, stopAcks)
	defer stopAcking.Stop()
	// MQTT 5 links stop reading at once, PUBACK what the log has and
	// disconnect; only then may the shards close under them. The
	// embedded broker stops handing telemetry over (what comes later is
	// left unacknowledged); the calls already in Telemetry finish first.
	if i.opts.Embedded != nil {
		i.handing.Store(false)
		i.opts.Embedded.SetSink(nil)
	}
	stopSubs()
	subWG.Wait()
	i.gate.Lock()
	i.closed = true
	for _, ch := range i.shards {
		close(ch)
	}
	if i.handedIn != nil {
		close(i.handedIn)
	}
	i.gate.Unlock()
	wg.Wait()
	<-handedDone
	<-watchDone
	// The v3.1.1 workers are done: their acker waits for the last groups
	// (or for ackCtx, NATS away) and PUBACKs what the log holds.
	if i.acks != nil {
		close(i.acks)
		<-ackDone
	}
	// Every link, the handover and the v3.1.1 acker have drained: every
	// group they added is done.
	stopCommit()
	<-commitDone
	i.dead.close() // no sender left: workers are done, DeadLetterFunc sees closed
	<-dlDone
	for _, c := range pahos {
		c.Disconnect(250)
	}
	i.subscribed.Store(0)
	return runErr
}

// onConnect subscribes a (re)connected client; the first client also
// watches the broker's $SYS dropped counters. It reports success.
func (i *Ingest) onConnect(c paho.Client, first bool) bool {
	tok := c.Subscribe(i.filter, 1, i.onMessage)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		i.log.Error("subscribe failed; reconnecting", "filter", i.filter, "err", tok.Error())
		// Deaf but connected is the worst state: drop the link so the
		// auto-reconnect tries again.
		go c.Disconnect(0)
		return false
	}
	if first {
		i.sys.subscribe(c)
	}
	i.log.Info("MQTT telemetry ingest subscribed", "broker", i.opts.BrokerURL, "filter", i.filter)
	return true
}

// onMessage runs on paho's router goroutine: hand off, nothing more.
func (i *Ingest) onMessage(_ paho.Client, m paho.Message) {
	in := inbound{topic: m.Topic(), payload: m.Payload()}
	if i.opts.Journal != nil {
		in.ack = m.Ack
	}
	i.dispatch(in)
}

// dispatch hands a message to its object's worker (waiting while the
// worker's queue is full, which holds the broker back).
func (i *Ingest) dispatch(in inbound) {
	name := strings.TrimPrefix(in.topic, TelemetryPrefix)
	i.gate.RLock()
	defer i.gate.RUnlock()
	if i.closed {
		i.log.Warn("telemetry after shutdown not applied", "topic", in.topic)
		return
	}
	i.shards[i.shardOf(name)] <- in
}

// shardOf is the worker of an object's name: always the same one, so its
// messages are applied in arrival order.
func (i *Ingest) shardOf(name string) int {
	return int(maphash.String(i.seed, name) % uint64(len(i.shards)))
}

// edge checks a telemetry message as it arrives: topic, name, payload.
// What fails is dead-lettered here (ok false); what passes still needs
// the twin (the object must exist), checked where it is applied.
func (i *Ingest) edge(topic string, payload []byte) (name string, msg telemetry.Message, ok bool) {
	name, ok = strings.CutPrefix(topic, TelemetryPrefix)
	if !ok {
		i.deadLetter(topic, payload, telemetry.Errorf(telemetry.BadField, "topic %q is not %s", topic, TelemetryFilter))
		return "", msg, false
	}
	if err := telemetry.ValidName(name); err != nil {
		i.deadLetter(topic, payload, err)
		return "", msg, false
	}
	msg, err := telemetry.Decode(payload, i.opts.Clock.Now(), i.opts.Limits)
	if err != nil {
		i.deadLetter(topic, payload, err)
		return "", msg, false
	}
	return name, msg, true
}

// process applies one message; every failure is dead-lettered.
func (i *Ingest) process(in inbound) {
	name, msg, ok := i.edge(in.topic, in.payload)
	if !ok {
		if in.ack != nil {
			in.ack() // dead-lettered: done with it
		}
		return
	}
	if i.opts.Journal != nil {
		i.journal(in, name, msg.TS) // the acker PUBACKs it
		return
	}
	outcome, err := telemetry.Apply(i.tw, name, msg, i.opts.AutoRegister)
	if err != nil {
		i.deadLetter(in.topic, in.payload, err)
		return
	}
	i.metrics.Message("mqtt", outcome).Inc()
}

// DeadLetter is the JSON published on twin/deadletter (CONTRACT §3).
// Payload holds the original payload when it is UTF-8, PayloadBase64
// otherwise; payloads over MaxDeadLetterPayload are cut (Truncated), so an
// oversized message does not come back oversized.
type DeadLetter struct {
	Topic         string `json:"topic"`
	Payload       string `json:"payload,omitempty"`
	PayloadBase64 string `json:"payload_base64,omitempty"`
	Truncated     bool   `json:"truncated,omitempty"`
	Reason        string `json:"reason"`
	Detail        string `json:"detail,omitempty"`
}

// MaxDeadLetterPayload is the most payload bytes a dead letter carries.
const MaxDeadLetterPayload = 64 << 10

// NewDeadLetter renders a dead letter for a rejected message; an error
// without a telemetry reason is reported as "apply_failed".
func NewDeadLetter(topic string, payload []byte, err error) DeadLetter {
	d := DeadLetter{Topic: topic, Reason: string(telemetry.ReasonOf(err))}
	if d.Reason == "" {
		d.Reason = "apply_failed"
	}
	var te *telemetry.Error
	if errors.As(err, &te) {
		d.Detail = te.Detail
	} else if err != nil {
		d.Detail = err.Error()
	}
	text := utf8.Valid(payload)
	if len(payload) > MaxDeadLetterPayload {
		cut := MaxDeadLetterPayload
		for text && cut > 0 && !utf8.RuneStart(payload[cut]) {
			cut-- // keep text valid UTF-8
		}
		payload, d.Truncated = payload[:cut], true
	}
	if text {
		d.Payload = string(payload)
	} else {
		d.PayloadBase64 = base64.StdEncoding.EncodeToString(payload)
	}
	return d
}

// deadLetter counts a rejected message and queues its dead letter; it
// waits while the queue is full (see enqueueDeadLetter).
func (i *Ingest) deadLetter(topic string, payload []byte, err error) {
	d := NewDeadLetter(topic, payload, err)
	i.metrics.DeadLetters.WithLabelValues(d.Reason).Inc()
	i.metrics.Message("mqtt", telemetry.OutcomeDeadletter).Inc()
	i.enqueueDeadLetter(context.Background(), d)
}
