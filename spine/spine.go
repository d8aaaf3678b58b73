// Package spine is CityTwin's connection to NATS JetStream, the durable log
// under ingest (issue 13). Every accepted telemetry message is appended to
// the TWIN_TELEMETRY stream before its source is acknowledged (MQTT PUBACK,
// HTTP answer); one server at a time, the holder of a lease kept in a
// JetStream key-value bucket, applies the stream to its twin and
// acknowledges a message only once the store holds what it changed. So a
// kill -9 at any moment loses nothing acknowledged, on one server and on
// many: NATS provides the log, the replication and the consensus; this
// package builds none of them.
//
// Without a URL, Open starts an embedded nats-server with JetStream in the
// data directory and connects to it in-process, so a single server runs the
// same code path as a cluster (issue 13 item 7). With a URL it connects to
// an external NATS (2.9 or newer; nothing newer is used on the wire: no
// per-message TTL, no pinned consumers, no subject transforms).
//
// The package imports nothing of CityTwin: ingest/journal puts telemetry on
// it, cmd/twin wires it.
package spine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citytwin/citytwin/internal/backoff"
)

// Names of the JetStream assets. They are part of the cluster's wire
// contract: every server sharing a NATS uses the same ones.
const (
	// TelemetryStream holds accepted telemetry not yet applied and stored
	// (work-queue retention: a message leaves the stream when the applier
	// acknowledges it).
	TelemetryStream = "TWIN_TELEMETRY"
	// TelemetrySubject is the one subject telemetry is published on; the
	// object's name and source travel in headers (names may hold '.', which
	// a subject token cannot).
	TelemetrySubject = "twin.tel.in"
	// ApplierConsumer is the durable pull consumer of TelemetryStream,
	// owned by the lease holder.
	ApplierConsumer = "twin-applier"
	// LeaseBucket is the key-value bucket holding leases.
	LeaseBucket = "TWIN_LEASES"
	// ChangeStream is the change log: every twin.Change in order, published
	// by the leader only; its stream sequence IS the change's feed seq on
	// every server (twin/changelog). Limits retention: a follower or a
	// restarted server catches up from it; the store covers what has left.
	ChangeStream = "TWIN_CHANGES"
	// ChangeSubject is the change log's one subject.
	ChangeSubject = "twin.chg"
	// RelaySubject carries HTTP writes from followers to the leader
	// (Relay).
	RelaySubject = "twin.http"
)

// Options configure Open. Zero values take defaults.
type Options struct {
	// URL of an external NATS with JetStream (comma-separated for a
	// cluster); empty starts the embedded server.
	URL string
	// DataDir is where the embedded server keeps JetStream (DataDir/nats).
	DataDir string
	// Name identifies this server to NATS (connection name, lease holder).
	// Keep it stable across restarts and distinct per server: a restarted
	// server reclaims the lease its previous run held at once. Default the
	// hostname and process id (unique, so a restart waits for LeaseTTL).
	Name string
	// Replicas of the streams and the lease bucket; default 1. Use 3 on a
	// three-node NATS cluster so a node can die without losing the log.
	Replicas int
	// MaxBytes bounds the telemetry backlog (messages journaled but not yet
	// applied and stored). When it is full new publishes are refused, so
	// sources are not acknowledged and the broker keeps the messages: the
	// log never drops acknowledged telemetry. Default 1 GiB.
	MaxBytes int64
	// LeaseTTL is how long a lease outlives its holder's last renewal: the
	// longest a dead applier delays its successor. Default 6s.
	LeaseTTL time.Duration
	// ChangeMaxAge and ChangeMaxBytes bound the change log (defaults 24h
	// and 4 GiB, oldest dropped first). A server down for longer than the
	// log holds reloads from the store instead of catching up.
	ChangeMaxAge   time.Duration
	ChangeMaxBytes int64
	// AckTimeout bounds the wait for JetStream's answer to an async
	// publish (a telemetry-log batch, a change-log record), counted from
	// that publish; default 10s. An answer can be lost without the
	// connection dropping (a clustered stream's leader died after taking
	// the message): the journal then publishes the batch again, the change
	// log's leader steps down. Each pending publish times out on its own
	// clock, so after a stall of the stream every unanswered batch goes
	// again at once: a wait started by the caller for each in turn took
	// ten seconds per batch (a minute for six after a NATS node restart).
	AckTimeout time.Duration
	// ApplierAckWait is how long the telemetry applier may hold a message
	// unacknowledged before JetStream delivers it again; default
	// DefaultApplierAckWait. Tests set it long, so that what they see
	// delivered again was not the timer's doing.
	ApplierAckWait time.Duration
	Logger         *slog.Logger // default slog.Default()
}

func (o *Options) defaults() {
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("citytwin-%s-%d", host, os.Getpid())
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 6 * time.Second
	}
	if o.ChangeMaxAge <= 0 {
		o.ChangeMaxAge = 24 * time.Hour
	}
	if o.ChangeMaxBytes <= 0 {
		o.ChangeMaxBytes = 4 << 30
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.ApplierAckWait <= 0 {
		o.ApplierAckWait = DefaultApplierAckWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Spine is an open NATS connection with the streams in place. Its methods
// are safe for concurrent use.
type Spine struct {
	opts   Options
	log    *slog.Logger
	ns     *server.Server // embedded; nil with Options.URL
	nc     *nats.Conn
	js     jetstream.JetStream
	leases jetstream.KeyValue

	rmu         sync.Mutex
	reconnected chan struct{} // closed at the next reconnect, then replaced
}

// Open connects (starting the embedded server first when no URL is given)
// and creates the streams and the lease bucket if they do not exist.
func Open(ctx context.Context, opts Options) (*Spine, error) {
	opts.defaults()
	s := &Spine{opts: opts, log: opts.Logger.With("component", "spine"), reconnected: make(chan struct{})}
	copts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				s.log.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
			s.rmu.Lock()
			close(s.reconnected)
			s.reconnected = make(chan struct{})
			s.rmu.Unlock()
		}),
	}
	url := opts.URL
	if url == "" {
		ns, err := startEmbedded(opts, s.log)
		if err != nil {
			return nil, err
		}
		s.ns = ns
		copts = append(copts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		s.shutdownServer()
		return nil, fmt.Errorf("spine: connect to NATS %q: %w", url, err)
	}
	s.nc = nc
	// A large async window: MQTT ingest keeps thousands of publishes in
	// flight across its connections.
	s.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<14), jetstream.WithPublishAsyncTimeout(s.opts.AckTimeout))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("spine: jetstream: %w", err)
	}
	if err := s.ensure(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startEmbedded runs a single-node nats-server with JetStream in
// DataDir/nats, reachable only in-process.
func startEmbedded(opts Options, log *slog.Logger) (*server.Server, error) {
	dir := filepath.Join(opts.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spine: embedded NATS dir: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "citytwin-embedded",
		JetStream:  true,
		StoreDir:   dir,
		// In-process only: one port less to collide with, and nothing
		// outside the process can touch the log.
		DontListen: true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("spine: embedded NATS: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("nats", "embedded")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("spine: embedded NATS did not start within 30s")
	}
	log.Info("embedded NATS with JetStream", "dir", dir)
	return ns, nil
}

// Unreachable tells errors of a JetStream that does not answer for now
// (a node restarting, a meta or stream leader being elected, the
// connection reconnecting, a machine too busy to answer in time) from
// errors about the log itself.
func Unreachable(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code == 503 {
		return true
	}
	for _, e := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders,
		nats.ErrConnectionReconnecting, jetstream.ErrNoStreamResponse} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ensureWait bounds how long Open keeps trying to create the streams
// while JetStream does not answer; each try gets ensureTry.
const (
	ensureWait = 2 * time.Minute
	ensureTry  = 15 * time.Second
)

// ensure creates or updates the streams and the lease bucket, trying
// again while JetStream does not answer (a cluster electing its meta
// leader when servers start together, or too busy to answer in time: a
// server exited on "stream TWIN_TELEMETRY: context deadline exceeded"
// while CI loaded the machine) until ensureWait has passed.
func (s *Spine) ensure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ensureWait)
	defer cancel()
	wait := backoff.Backoff{First: 250 * time.Millisecond, Most: 4 * time.Second}
	for {
		tctx, tcancel := context.WithTimeout(ctx, ensureTry)
		err := s.ensureOnce(tctx)
		tcancel()
		if err == nil || (!Unreachable(err) && !placementPending(err)) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("JetStream does not answer or cannot place the streams yet; creating them again", "err", err, "retry_in", wait.Next())
		if !wait.Wait(ctx) {
			return err
		}
	}
}

// errClusterNoPeers is nats-server's JSClusterNoPeersErrF ("no suitable
// peers for placement"), which nats.go has no constant for.
const errClusterNoPeers jetstream.ErrorCode = 10005

// placementPending tells a replicated stream that cannot be placed yet:
// a cluster whose meta leader is elected but has not yet heard from
// enough peers for the replicas asked (CI saw a server exit so when it
// started as a three-node cluster formed). Open waits for the peers as it
// waits for a JetStream that does not answer; a cluster really too small
// for --nats-replicas fails after ensureWait with this error.
func placementPending(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errClusterNoPeers
}

// ensureOnce is one try of ensure.
func (s *Spine) ensureOnce(ctx context.Context) error {
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        TelemetryStream,
		Description: "CityTwin telemetry accepted and not yet applied and stored",
		Subjects:    []string{TelemetrySubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
		MaxBytes:    s.opts.MaxBytes,
		Discard:     jetstream.DiscardNew,
		// A redelivered MQTT message or the same message taken by two
		// servers of a shared subscription carries the same Nats-Msg-Id
		// and is stored once within this window.
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("spine: stream %s: %w", TelemetryStream, err)
	}
	_, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        ChangeStream,
		Description: "CityTwin change log: the stream sequence is the feed seq on every server",
		Subjects:    []string{ChangeSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
		MaxAge:      s.opts.ChangeMaxAge,
		MaxBytes:    s.opts.ChangeMaxBytes,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("spine: stream %s: %w", ChangeStream, err)
	}
	s.leases, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "CityTwin leases: who applies the log",
		TTL:         s.opts.LeaseTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("spine: lease bucket %s: %w", LeaseBucket, err)
	}
	return nil
}

// Conn returns the NATS connection.
func (s *Spine) Conn() *nats.Conn { return s.nc }

// Reconnected returns a channel closed when the NATS connection next comes
// back after a loss. What JetStream sent this server while the link died
// is lost with it, yet a consumer counts it delivered and sends it again
// only when its ack wait ends: a consumer that must not wait for that (the
// telemetry applier) starts afresh when this fires. Take the channel
// before the work it guards, so a reconnect in between is not missed.
func (s *Spine) Reconnected() <-chan struct{} {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.reconnected
}

// ChangeLogState returns the change log's first and last sequence (first
// is last+1 when it is empty).
func (s *Spine) ChangeLogState(ctx context.Context) (first, last uint64, err error) {
	st, err := s.js.Stream(ctx, ChangeStream)
	if err != nil {
		return 0, 0, fmt.Errorf("spine: stream %s: %w", ChangeStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("spine: stream %s info: %w", ChangeStream, err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// ChangeLogLast returns the change log's newest record (nil when the log
// holds none).
func (s *Spine) ChangeLogLast(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	st, err := s.js.Stream(ctx, ChangeStream)
	if err != nil {
		return nil, fmt.Errorf("spine: stream %s: %w", ChangeStream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, ChangeSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spine: last record of %s: %w", ChangeStream, err)
	}
	return m, nil
}

// PurgeChangeLog empties the change log (its sequence goes on where it
// was: NATS keeps the last sequence of a purged stream).
func (s *Spine) PurgeChangeLog(ctx context.Context) error {
	st, err := s.js.Stream(ctx, ChangeStream)
	if err != nil {
		return fmt.Errorf("spine: stream %s: %w", ChangeStream, err)
	}
	if err := st.Purge(ctx); err != nil {
		return fmt.Errorf("spine: purge %s: %w", ChangeStream, err)
	}
	return nil
}

// JetStream returns the JetStream context.
func (s *Spine) JetStream() jetstream.JetStream { return s.js }

// AckTimeout is Options.AckTimeout, for a JetStream context of a caller's
// own (the change log's) that must time out its publishes the same way.
func (s *Spine) AckTimeout() time.Duration { return s.opts.AckTimeout }

// Name is this server's name towards NATS.
func (s *Spine) Name() string { return s.opts.Name }

// Where describes the NATS in use, for logs and the start-up line.
func (s *Spine) Where() string {
	if s.ns != nil {
		return "embedded " + filepath.Join(s.opts.DataDir, "nats")
	}
	return s.nc.ConnectedUrlRedacted()
}

// Ping reports whether NATS answers (for /readyz).
func (s *Spine) Ping(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	if _, err := s.js.Stream(ctx, TelemetryStream); err != nil {
		return fmt.Errorf("NATS stream %s: %w", TelemetryStream, err)
	}
	return nil
}

// Close waits briefly for async publishes in flight, closes the connection
// and stops the embedded server.
func (s *Spine) Close() {
	if s.js != nil {
		select {
		case <-s.js.PublishAsyncComplete():
		case <-time.After(5 * time.Second):
		}
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.shutdownServer()
}

func (s *Spine) shutdownServer() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// natsLogger sends the embedded server's log to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n natsLogger) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Errorf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Debugf(f string, v ...any)  { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Tracef(f string, v ...any)  { n.l.Debug(fmt.Sprintf(f, v...)) }
