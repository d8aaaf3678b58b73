package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/demo/sim"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/governance/indicators"
	"github.com/citytwin/citytwin/governance/ogc"
	"github.com/citytwin/citytwin/governance/query"
	"github.com/citytwin/citytwin/governance/replay"
	"github.com/citytwin/citytwin/governance/tasks"
	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/ingest/httpin"
	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/ingest/mqttin"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/internal/gctune"
	"github.com/citytwin/citytwin/rules"
	"github.com/citytwin/citytwin/rules/notify"
	"github.com/citytwin/citytwin/server"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/tiles"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boot"
	"github.com/citytwin/citytwin/twin/changelog"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/timeline"
	"github.com/citytwin/citytwin/twin/writer"
	webclient "github.com/citytwin/citytwin/webgl-client"
	"github.com/citytwin/citytwin/wshub"
)

type serveConfig struct {
	listen, db, data, mqtt, mqttListen, rulesFile, authKey, logLevel string
	demo, autoRegister                                               bool
	scale, feedSize                                                  int
	seed                                                             int64
	simRate                                                          float64
	simPeople                                                        bool
	origins                                                          string
	mqttClientID                                                     string
	nats, mqttShare                                                  string
	natsReplicas, mqttConns, mqttProtocol, mqttReceiveMax            int
	pprof                                                            string
	limits                                                           *limitConfig
	metricsAccess                                                    string
	replay                                                           *replayConfig
	taskPeriod                                                       time.Duration
	tilesOmitID                                                      string
	gcHeadroomMB                                                     int
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&c.db, "db", "", "PostGIS URL (empty: embedded store in --data)")
	fs.StringVar(&c.data, "data", "./var", "data directory for the embedded store and the generated auth key")
	fs.StringVar(&c.mqtt, "mqtt", "", "MQTT broker URL (empty: embedded broker on --mqtt-listen)")
	fs.StringVar(&c.mqttListen, "mqtt-listen", "127.0.0.1:1883", "embedded broker listen address")
	fs.StringVar(&c.mqttClientID, "mqtt-client-id", "", "MQTT client id, stable across restarts so the broker keeps the session (default citytwin-HOSTNAME; give each server sharing a broker its own)")
	fs.StringVar(&c.nats, "nats", "", "NATS URL with JetStream (2.9+): servers with the same --db and --nats are one twin (empty: embedded NATS in --data/nats)")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 1, "replicas of the JetStream streams (3 on a three-node NATS cluster)")
	fs.IntVar(&c.mqttConns, "mqtt-connections", 1, "MQTT subscriber connections sharing the telemetry subscription ($share/CLIENT-ID/...; each has its own QoS 1 window); with --mqtt only: the embedded broker hands telemetry over in process")
	fs.IntVar(&c.mqttProtocol, "mqtt-protocol", 5, "MQTT version of the subscriber connections: 5 (Receive Maximum lifts the broker's in-flight cap) or 3 (v3.1.1, for brokers without MQTT 5: Mosquitto then allows 20 in flight per connection; nats-server's MQTT listener speaks only this and has no $share, so keep --mqtt-connections 1 there)")
	fs.IntVar(&c.mqttReceiveMax, "mqtt-receive-maximum", 65535, "MQTT 5 Receive Maximum: QoS 1 messages the broker may have in flight to each subscriber connection (1-65535; EMQX caps it at its max_inflight)")
	fs.StringVar(&c.mqttShare, "mqtt-share-group", "", "MQTT shared-subscription group ($share/GROUP/twin/telemetry/+) for servers to split the telemetry (default: none, each server takes every message and the log stores it once, so a dead server's share never waits in its broker session)")
	fs.BoolVar(&c.demo, "demo", false, "load the synthetic Chongqing demo city into an empty store and drive it live")
	fs.IntVar(&c.scale, "scale", 1, "demo city scale (20 = about a million buildings)")
	fs.IntVar(&c.feedSize, "feed-size", 1<<16, "changes kept in memory for resuming websockets (about 500 B each); the store writer, rules and replay recorder may fall 4 times that behind before ingest waits for them")
	fs.Int64Var(&c.seed, "seed", 2016, "demo city seed")
	fs.Float64Var(&c.simRate, "sim-rate", 200, "demo telemetry messages per second (0 = no simulation)")
	fs.BoolVar(&c.simPeople, "sim-people", true, "demo: simulated workers and operators handle incidents and alerts (false: only telemetry, e.g. for a browser test that acts itself)")
	fs.StringVar(&c.rulesFile, "rules", "", "rules file (YAML or JSON); --demo uses the bundled demo rules when empty")
	fs.StringVar(&c.authKey, "auth-key", "", "token signing secret file (default: generated DATA/auth.key)")
	fs.BoolVar(&c.autoRegister, "auto-register", false, "register unknown telemetry names as vehicles instead of dead-lettering")
	fs.StringVar(&c.origins, "allowed-origins", "", "comma-separated origins allowed on /ws (default: same origin)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.metricsAccess, "metrics-access", "loopback", "who may read /metrics: loopback (callers on this machine), token (a city-level admin bearer token) or public")
	fs.StringVar(&c.pprof, "pprof", "", "serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (off when empty)")
	fs.StringVar(&c.tilesOmitID, "tiles-omit-id", "", "comma-separated layers whose tiles leave out the string id and version attributes unless ?attrs= names them (the integer MVT feature id stays)")
	fs.DurationVar(&c.taskPeriod, "task-period", 24*time.Hour, "how long an overdue rectification or enforcement task stays at a tier before it escalates another (一楼一策: street -> district -> city)")
	fs.IntVar(&c.gcHeadroomMB, "gc-min-headroom-mb", 512, "least heap growth (MiB) the Go GC allows between two cycles: GOGC is raised while the live heap is smaller than this, so a small server collects less often (fewer marks in the websocket fan-out's latencies, at up to this much more RSS); 0 keeps GOGC's own proportion. An explicit GOGC in the environment wins; GOMEMLIMIT still bounds the heap")
	c.limits = addLimitFlags(fs)
	c.replay = addReplayFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	explicitMQTTListen := false
	fs.Visit(func(f *flag.Flag) { explicitMQTTListen = explicitMQTTListen || f.Name == "mqtt-listen" })
	if _, ok := os.LookupEnv("TWIN_MQTT_LISTEN"); ok {
		explicitMQTTListen = true
	}
	if c.gcHeadroomMB < 0 {
		return usageError{fmt.Errorf("--gc-min-headroom-mb %d: want 0 or more", c.gcHeadroomMB)}
	}
	if c.mqttProtocol != 3 && c.mqttProtocol != 5 {
		return usageError{fmt.Errorf("--mqtt-protocol %d: want 5 or 3", c.mqttProtocol)}
	}
	if c.mqttReceiveMax < 1 || c.mqttReceiveMax > 65535 {
		return usageError{fmt.Errorf("--mqtt-receive-maximum %d: want 1-65535", c.mqttReceiveMax)}
	}
	if _, err := server.ParseMetricsAccess(c.metricsAccess); err != nil {
		return fmt.Errorf("--metrics-access: %w", err)
	}
	log := newLogger(stderr, c.logLevel)
	return serve(ctx, c, explicitMQTTListen, log, stdout)
}

func serve(ctx context.Context, c serveConfig, explicitMQTTListen bool, log *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clk := clock.Real{}
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		_ = gctune.Run(ctx, gctune.Options{MinHeadroom: uint64(c.gcHeadroomMB) << 20, Registerer: reg, Logger: log})
	}()
	defer func() { cancel(); <-gcDone }()

	// Store: PostGIS when --db is given, else the embedded store.
	st, err := openStore(ctx, c.db, c.data, log, reg, storeWritePause)
	if err != nil {
		return err
	}
	defer st.Close()

	keyPath := c.authKey
	var key auth.Key
	if keyPath != "" {
		key, err = auth.LoadKey(keyPath)
	} else {
		key, err = auth.LoadOrCreateKey(filepath.Join(c.data, "auth.key"))
	}
	if err != nil {
		return err
	}

	// The twin, rebuilt from the store.
	loc := locate.New()
	tw := twin.New(twin.Options{Clock: clk, Enricher: loc, Logger: log, FeedSize: c.feedSize})
	reg.MustRegister(twin.NewFeedCollector(tw.Feed(), clk.Now))
	t0 := time.Now()
	n, err := boot.Load(ctx, st, tw, loc)
	if err != nil {
		return err
	}
	if n == tw.Count(twin.Settings) && c.demo { // no city yet (settings alone, e.g. rules PUT on an empty twin, are no city)
		city, err := demo.Generate(demo.Options{Seed: c.seed, Scale: c.scale})
		if err != nil {
			return fmt.Errorf("generate demo city: %w", err)
		}
		all := city.All()
		log.Info("demo city generated (synthetic, deterministic)", "objects", len(all), "seed", c.seed, "scale", c.scale)
		// Place everything once (on every CPU, in a scratch twin) and store
		// it placed: starts then load cells, region and grid instead of
		// recomputing the H3 cover of every building (~7 s CPU per
		// million). The twin itself is loaded from the store, so its props
		// have the decoded JSON types on the first start as on every other.
		loc.Reset(city.Features[twin.Regions], city.Features[twin.Grids])
		twin.New(twin.Options{Enricher: loc, FeedSize: 16}).Load(all)
		if err := boot.StoreAll(ctx, st, all); err != nil {
			return fmt.Errorf("store demo city: %w", err)
		}
		city = nil // let the generated city go before loading the twin
		if n, err = boot.Load(ctx, st, tw, loc); err != nil {
			return err
		}
	}
	log.Info("twin loaded", "objects", n, "took", time.Since(t0).Round(time.Millisecond))
	storeSeq, hwm, err := boot.Seqs(ctx, st)
	if err != nil {
		return err
	}
	// One twin across servers (twin/changelog): from here on only the
	// leader mutates it; every change reaches the others through the
	// change log, whose sequence is the feed seq everywhere.
	tw.Replicate()
	host, _ := os.Hostname()
	sp, err := spine.Open(ctx, spine.Options{URL: c.nats, DataDir: c.data, Replicas: c.natsReplicas, Logger: log,
		Name: "twin@" + host + "/" + c.listen}) // stable: a restart reclaims its lease at once
	if err != nil {
		return err
	}
	defer sp.Close()
	var relay *spine.Relay // set below, before the node runs
	var curWriter atomic.Pointer[writer.Writer]
	// The term's replay recorder: it keeps the runs this server publishes
	// to the change log as its record of their changes.
	var curRecorder atomic.Pointer[timeline.Recorder]
	var leadFn func(ctx context.Context, drain func(context.Context) error) error // set below, before the node runs
	node, err := changelog.New(tw, sp, changelog.Options{LeaseKey: journal.LeaseKey, Logger: log, Registerer: reg,
		Lead:     func(ctx context.Context, drain func(context.Context) error) error { return leadFn(ctx, drain) },
		OnLeader: func(on bool) { relay.SetLeader(on) },
		Published: func(lo, hi uint64, flags byte, body []byte) {
			if rec := curRecorder.Load(); rec != nil {
				rec.Offer(lo, hi, flags, body)
			}
		}})
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := node.Start(ctx, storeSeq, hwm); err != nil {
		return err
	}
	log.Info("twin in step with the change log", "seq", tw.Feed().Last(), "took", time.Since(t0).Round(time.Millisecond))
	// Regions and grids edited while running rebuild the index on every
	// server; the leader also re-places the objects they cover.
	follower := locate.NewFollower(loc, tw, log)
	follower.SetPlacing(false)

	// Broker and MQTT ingest.
	brokerURL := c.mqtt
	var embedded *broker.Broker
	if brokerURL == "" {
		// The broker outlives the components (closed by the defer below,
		// after they stopped), so that ingest disconnects cleanly and
		// publishes its last dead letters and alerts on shutdown. It hands
		// telemetry to the ingest in process (Handoff): no loopback
		// subscriber session.
		bctx := context.WithoutCancel(ctx)
		bo := broker.Options{Logger: log, Handoff: true}
		b, err := broker.StartWith(bctx, c.mqttListen, bo)
		if errors.Is(err, broker.ErrAddrInUse) && !explicitMQTTListen {
			log.Warn("MQTT port taken, starting the embedded broker on a free port instead", "wanted", c.mqttListen, "err", err)
			b, err = broker.StartWith(bctx, "127.0.0.1:0", bo)
		}
		if err != nil {
			return err
		}
		defer b.Close()
		brokerURL, embedded = b.URL(), b
		log.Info("embedded MQTT broker", "url", brokerURL)
	}
	// Telemetry is acked to its sender only once it is in the JetStream
	// log; the leader applies the log (ingest/journal).
	jr := journal.New(sp, log, reg)
	in := mqttin.New(tw, mqttin.Options{BrokerURL: brokerURL, ClientID: c.mqttClientID, AutoRegister: c.autoRegister, Logger: log, Registerer: reg,
		Journal: jr, Connections: c.mqttConns, ShareGroup: c.mqttShare, Protocol: c.mqttProtocol, ReceiveMaximum: uint16(c.mqttReceiveMax), Embedded: embedded,
		Local: jr.Leading})

	// Components stop in stages, in this order (see stages). The leader's
	// duties (leadFn) stop first, in their own order, inside "cluster".
	cluster := &stage{name: "cluster", wait: 45 * time.Second}
	intake := &stage{name: "intake", wait: 5 * time.Second}
	rulesStage := &stage{name: "rules", wait: 5 * time.Second}
	egress := &stage{name: "egress", wait: 8 * time.Second}
	stg := newStages(ctx, log, cluster, intake, rulesStage, egress)
	defer stg.stop(nil) // an early return stops whatever was started
	// Indicators over time: a required feed consumer writing its buckets,
	// summaries and position in one store call (the one writer of the
	// figures: it runs on the leader, in leadFn). The replay timeline's
	// recorder too (made per term); its reader serves on every server.
	ind := indicators.New(tw, st.(twin.IndicatorStore), indicators.Options{Logger: log, Registerer: reg, Clock: clk})
	tlOpts := c.replay.options()
	tlOpts.Logger, tlOpts.Registerer = log, reg
	if _, err := timeline.NewRecorder(tw, st, timeline.Options{}); err != nil {
		return err // the store keeps no timeline
	}
	tlReader, err := timeline.NewReader(tw, st, tlOpts)
	if err != nil {
		return err
	}
	stg.run(rulesStage, "locate", follower.Run)
	stg.run(egress, "mqtt-ingest", in.Run)

	// Rules, notifications and incidents exist on every server (their HTTP
	// handlers read), but run only while this server leads (leadFn).
	// Every alert, whoever writes it (rules, incident SLAs, acks), goes out
	// through this one consumer of the alerts layer: MQTT and webhooks.
	// With the embedded broker, alerts go to it in process, not through
	// the ingest's client connection (ingest/broker Publish).
	var alertsOut notify.Publisher = in
	if embedded != nil {
		alertsOut = embedded
	}
	notifier := notify.New(tw, notify.Options{Publisher: alertsOut, Logger: log, Registerer: reg})
	// Photos workers attach, to incidents and to tasks' reports: in the
	// twin's JetStream Object Store with --nats, so any server serves a
	// photo any other received; on the local disk for a server on its own.
	var evidence incidents.EvidenceStore = incidents.DirEvidence(filepath.Join(c.data, "evidence"))
	if c.nats != "" {
		blobs, err := sp.Blobs(ctx, spine.EvidenceBucket)
		if err != nil {
			return err
		}
		evidence = incidents.BlobEvidence{Blobs: blobs}
	}
	inc := incidents.New(tw, incidents.Options{Clock: clk, Logger: log, AutoDispatch: true, Enricher: loc, Evidence: evidence})

	// The work loops (directives, rectification, enforcement): the due
	// clock and the enforcement cases' feed consumer are effects, run in
	// the leader's term like the incidents' SLA loop (leadFn).
	work := tasks.New(tw, tasks.Options{Clock: clk, Logger: log, Registerer: reg, Period: c.taskPeriod, Evidence: evidence})

	system := auth.Principal{Subject: "rules", Role: auth.Admin, Region: auth.CityCode}
	eng := rules.New(tw, rules.Options{Logger: log, Registerer: reg, Clock: clk, Notifier: notifier, Place: loc.Path,
		OpenIncident: func(typ string, at orb.Point, desc string) error {
			_, _, err := inc.Report(system, incidents.Report{Type: typ, Lon: at[0], Lat: at[1], Description: desc})
			return err
		}})
	// The running rules are the twin's (settings/rules, rules.Sync): every
	// server runs the same, and a restart runs the last set. The file
	// runs here only while the twin holds none; it is offered to the twin
	// below, once a leader answers.
	rf, err := readRulesFile(c.rulesFile, c.demo)
	if err != nil {
		return err
	}
	if !eng.Sync() && rf != nil {
		eng.Load(rf.rs)
	}
	stg.run(rulesStage, "rules-follow", eng.FollowShared)

	scope := func(ctx context.Context) string {
		p, _ := auth.FromContext(ctx)
		return p.Region
	}
	omitID := map[twin.Layer]bool{}
	for _, n := range strings.Split(c.tilesOmitID, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		l, err := twin.ParseLayer(n)
		if err != nil {
			return fmt.Errorf("--tiles-omit-id: %w", err)
		}
		omitID[l] = true
	}
	tl := tiles.New(tw, tiles.Options{Logger: log, Registerer: reg, Scope: scope, OmitID: omitID, Filter: func(ctx context.Context) func(*twin.Feature) bool {
		p, ok := auth.FromContext(ctx)
		switch {
		case !ok:
			return func(*twin.Feature) bool { return false }
		case p.SeesAll():
			return nil
		}
		return p.Sees
	}, ScopeBounds: func(ctx context.Context) (orb.Bound, bool) {
		p := auth.Of(ctx)
		if p.Region == auth.CityCode {
			return orb.Bound{}, false // the data extent
		}
		if r := loc.Region(p.Region); r != nil && r.Geometry != nil {
			return r.Geometry.Bound(), true
		}
		// A region the city does not know: the world, never the city's extent.
		return orb.Bound{Min: orb.Point{-180, -85.0511}, Max: orb.Point{180, 85.0511}}, true
	}})
	stg.run(egress, "tiles", tl.Run)

	var origins []string
	if c.origins != "" {
		origins = strings.Split(c.origins, ",")
	}
	c.limits.resolve(log)
	wsOpts := wshub.Options{Logger: log, Registerer: reg, AllowedOrigins: origins, Replay: tlReader,
		Authorize: func(r *http.Request) (auth.Principal, error) {
			p, ok := auth.FromContext(r.Context())
			if !ok {
				return auth.Principal{}, auth.ErrNoToken
			}
			return p, nil
		}}
	c.limits.applyWS(&wsOpts)
	hub := wshub.New(tw, wsOpts)
	stg.run(egress, "wshub", hub.Run)

	var simCity *demo.City
	if c.demo && c.simRate > 0 {
		if city, err := demo.Generate(demo.Options{Seed: c.seed, Scale: c.scale}); err == nil {
			simCity = city
		}
		// The work loops on the first screen: seeded rectification and
		// enforcement cases, a city directive now and then.
		stg.run(intake, "demo-work", func(ctx context.Context) error {
			return work.RunDemo(ctx, tasks.DemoOptions{Seed: c.seed})
		})
	}

	// The leader's duties, one term at a time (twin/changelog calls it
	// while this server holds the lease): telemetry applier, incident
	// SLAs, the demo, rules, notifications and the store writer. So each
	// effect happens once for the whole cluster. They stop in order, and
	// the change log takes every change before the writer's final flush.
	leadFn = func(ctx context.Context, drain func(context.Context) error) error {
		treg := &termRegistry{Registerer: reg}
		defer treg.end()
		ro := tlOpts
		ro.Registerer = treg
		ro.Backfill = node.Changes // what the feed no longer holds (a recorder behind the writer after kill -9)
		recorder, err := timeline.NewRecorder(tw, st, ro)
		if err != nil {
			return err
		}
		curRecorder.Store(recorder)
		defer curRecorder.Store(nil)
		wr := writer.New(tw, st, writer.Options{Logger: log, Registerer: treg, Backfill: node.Changes})
		curWriter.Store(wr)
		defer curWriter.Store(nil)
		eng.Sync() // the twin's last rules, whoever set them
		eng.Resume()
		notifier.Resume()
		follower.SetPlacing(true)
		defer follower.SetPlacing(false)
		li := &stage{name: "lead-intake", wait: 5 * time.Second}
		lr := &stage{name: "lead-rules", wait: 5 * time.Second}
		ln := &stage{name: "lead-notify", wait: 5 * time.Second, then: func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := drain(dctx); err != nil {
				log.Warn("change log did not take every change before the step-down; the rest is taken back", "err", err)
			}
		}}
		lw := &stage{name: "lead-writer"}
		ls := newStages(ctx, log, li, lr, ln, lw)
		ls.run(lw, "writer", func(ctx context.Context) error {
			// Resume where the store's last writer stopped, whoever it
			// was: this twin installed the changes since (as a follower),
			// and what its feed no longer holds the writer reads from the
			// change log (Backfill), so none is lost across a failover.
			// The store may be away as the term starts: the writer waits
			// for it, the other duties do not.
			var flushed uint64
			if err := untilOK(ctx, log, "store writer", func(ctx context.Context) error {
				var err error
				flushed, _, err = boot.Seqs(ctx, st)
				return err
			}); err != nil {
				return err
			}
			wr.ResumeAt(flushed)
			return wr.Run(ctx)
		})
		// The indicators and the replay recorder read their position from
		// the store as they start: started again until it answers.
		ls.run(lw, "indicators", restartedUntilDone(log, "indicators", ind.Run))
		ls.run(lw, "timeline", restartedUntilDone(log, "timeline", recorder.Run))
		ls.run(lr, "rules", eng.Run)
		ls.run(lr, "tasks", work.Run)
		ls.run(ln, "notify", notifier.Run)
		ls.run(li, "journal-applier", func(ctx context.Context) error {
			// Acked once the change log holds the change (durable and
			// replicated); the store writer catches up from there. A NATS
			// node going away can fail the consumer's creation or end it
			// mid-term (seen with a 3-node cluster losing a node): try
			// again for as long as this server leads, or telemetry would
			// pile up unapplied behind a leader that looks healthy.
			return retryUntilDone(ctx, log, "journal-applier", func(ctx context.Context) error {
				return jr.Apply(ctx, tw, journal.ApplierOptions{Persisted: tw.Feed().Last, DeadLetter: in.Reject,
					Metrics: in.Metrics(), AutoRegister: c.autoRegister})
			})
		})
		ls.run(li, "incidents", func(ctx context.Context) error { return inc.Run(ctx, time.Second) })
		if simCity != nil {
			// The people too: workers handle incidents, operators alerts
			// (unless --sim-people=false). The twin is read to leave a
			// worker a real phone reports alone.
			so := sim.Options{Rate: c.simRate, Clock: clk, Seed: c.seed, Logger: log, Twin: tw}
			if c.simPeople {
				so.Desk = simDesk{inc: inc, eng: eng}
			}
			s := sim.New(simCity, so)
			ls.run(li, "sim", func(ctx context.Context) error { return s.Run(ctx, publisher{in}) })
		}
		<-ctx.Done()
		ls.stop(nil)
		if err := wr.Flush(context.WithoutCancel(ctx)); err != nil {
			log.Error("leader's final flush", "err", err)
		}
		return nil
	}

	api := httpin.New(tw, st, httpin.Options{Logger: log, Registerer: reg, DeadLetter: in.DeadLetterFunc(), Enricher: loc, AutoRegister: c.autoRegister,
		SubmitAll: func(ctx context.Context, lines []httpin.Line) []httpin.Submitted {
			es := make([]journal.Entry, len(lines))
			for k, l := range lines {
				es[k] = journal.Entry{Source: "http", Topic: httpin.DeadLetterTopic, Name: l.Name, TS: l.TS, Payload: l.Body}
			}
			out := make([]httpin.Submitted, len(lines))
			for k, r := range jr.SubmitAll(ctx, es) {
				out[k] = httpin.Submitted{Outcome: r.Outcome, Err: r.Err}
			}
			return out
		},
		// The server that applies the log applies a body's lines itself
		// and answers once the change log holds them.
		Local: jr.Leading,
		Committed: func(ctx context.Context) error {
			_, err := node.Committed(ctx)
			return err
		}})
	ogcAPI := ogc.New(tw, ogc.Options{})
	q := query.New(tw, query.Options{})

	R, W, P := server.Read, server.Write, server.Public
	ops := []auth.Role{auth.Operator}
	anyRole := []auth.Role{auth.Operator, auth.Field, auth.Planner}
	routes := []server.Route{
		{Pattern: "GET /api/nearby", Handler: http.HandlerFunc(q.NearbyHandler), Access: R},
		{Pattern: "GET /api/snapshot", Handler: replay.New(tlReader, clk), Access: R},
		{Pattern: "GET /api/h3", Handler: http.HandlerFunc(q.H3Handler), Access: R},
		{Pattern: "GET /api/regions/{code}/summary", Handler: http.HandlerFunc(q.SummaryHandler), Access: R},
		{Pattern: "GET /api/regions/{code}/indicators", Handler: http.HandlerFunc(ind.Handler), Access: R},
		{Pattern: "POST /api/incidents", Handler: http.HandlerFunc(inc.ReportHandler), Access: W, Roles: anyRole},
		{Pattern: "POST /api/incidents/{name}/{action}", Handler: http.HandlerFunc(inc.ActionHandler), Access: W, Roles: []auth.Role{auth.Operator, auth.Field}},
		{Pattern: "POST /api/incidents/{name}/evidence", Handler: http.HandlerFunc(inc.EvidenceHandler), Access: W, Roles: []auth.Role{auth.Operator, auth.Field}},
		{Pattern: "GET /api/incidents/{name}/evidence/{id}", Handler: http.HandlerFunc(inc.EvidenceGetHandler), Access: R},
		// Field tokens report their own worker's position only (httpin).
		{Pattern: "POST /api/telemetry", Handler: http.HandlerFunc(api.Telemetry), Access: W, Roles: []auth.Role{auth.Operator, auth.Field}},
		{Pattern: "GET /api/entities/{layer}/{name}", Handler: http.HandlerFunc(api.GetEntity), Access: R},
		{Pattern: "PUT /api/entities/{layer}/{name}", Handler: http.HandlerFunc(api.PutEntity), Access: W, Roles: ops},
		{Pattern: "DELETE /api/entities/{layer}/{name}", Handler: http.HandlerFunc(api.DeleteEntity), Access: W, Roles: ops},
		{Pattern: "GET /api/entities/{layer}/{name}/history", Handler: http.HandlerFunc(api.History), Access: R},
		{Pattern: "GET /api/rules", Handler: http.HandlerFunc(eng.GetRules), Access: R},
		{Pattern: "PUT /api/rules", Handler: http.HandlerFunc(eng.PutRules), Access: W, Roles: []auth.Role{auth.Admin}},
		{Pattern: "POST /api/alerts/ack", Handler: http.HandlerFunc(eng.BulkAck), Access: W, Roles: ops},
		{Pattern: "POST /api/alerts/{name}/ack", Handler: http.HandlerFunc(eng.AckAlert), Access: W, Roles: ops},
		{Pattern: "POST /api/alerts/{name}/close", Handler: http.HandlerFunc(eng.CloseAlert), Access: W, Roles: ops},
		{Pattern: "GET /tiles/", Handler: tl.Handler(), Access: R},
		{Pattern: "GET /styles/", Handler: tl.Handler(), Access: P},
		{Pattern: "GET /fonts/", Handler: tl.Handler(), Access: P},
		{Pattern: "GET /ws", Handler: hub, Access: R, QueryToken: true},
		{Pattern: "GET /", Handler: webclient.Handler(), Access: P},
	}
	for _, rt := range work.Routes() { // directives, tasks and their actions
		access, roles := R, []auth.Role(nil)
		if rt.Write {
			access, roles = W, []auth.Role{auth.Operator, auth.Field}
		}
		routes = append(routes, server.Route{Pattern: rt.Pattern, Handler: rt.Handler, Access: access, Roles: roles})
	}
	for _, rt := range ogcAPI.Routes() { // landing, api, conformance, collections, queryables, items
		routes = append(routes, server.Route{Pattern: rt.Pattern, Handler: rt.Handler, Access: R})
	}
	if c.demo {
		routes = append(routes, server.Route{Pattern: "GET /api/demo/token", Handler: demoTokenHandler(key, clk), Access: P})
	}
	srv := server.New(server.Options{Logger: log, Gatherer: reg, Key: key, AnonymousLoopback: c.demo, Clock: clk, Routes: routes,
		MetricsAccess: server.MetricsAccess(c.metricsAccess),
		Checks: []server.Check{
			{Name: "store", Fn: st.Ping},
			// Red while the writer cannot persist (a store refusing every
			// write, or away) and changes wait: see writer.Ready.
			{Name: "writer", Fn: func(ctx context.Context) error {
				if wr := curWriter.Load(); wr != nil {
					return wr.Ready(ctx)
				}
				return nil
			}},
			{Name: "nats", Fn: sp.Ping},
			// Red until some server leads and, if it is this one, its
			// telemetry applier runs: before that a write is only
			// journaled (answered "accepted"), not yet applied, so a
			// client reading its own write would not find it.
			{Name: "leader", Fn: func(ctx context.Context) error {
				holder, err := sp.Holder(ctx, journal.LeaseKey)
				switch {
				case err != nil:
					return err
				case holder == "":
					return errors.New("no server leads the twin yet")
				case holder == sp.Name() && !jr.Leading():
					return errors.New("this server leads; its telemetry applier is starting")
				}
				return nil
			}},
			{Name: "broker", Fn: func(context.Context) error {
				if !in.Connected() {
					return errors.New("not connected to the MQTT broker")
				}
				return nil
			}},
		}})
	if c.demo {
		log.Warn("demo mode: anonymous read access is allowed from loopback addresses; GET /api/demo/token issues tokens to loopback callers")
	}
	if c.pprof != "" {
		stopPprof, err := servePprof(c.pprof, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another twin running? pass --listen)", c.listen, err)
	}
	// Writes go to the leader (spine.Relay). Reads, GET /api/rules too,
	// are served here: the rules are the twin's.
	relay = spine.NewRelay(sp, srv, spine.RelayOptions{Logger: log, Registerer: reg,
		Committed: node.Committed, Reached: node.Reached, LeaseKey: journal.LeaseKey})
	stg.run(egress, "relay-lease-watch", relay.Run) // a write in flight to a leader that dies: 503 once another leads
	if rf != nil {
		// The file goes to the twin unless the twin's rules were set after
		// it was modified; then, with --rules, every edit (hot reload: a
		// bad file is logged and the running rules stay).
		offer := rulesOffer(relay, key, clk, sp.Name(), log, reg)
		stg.run(intake, "rules-file", func(ctx context.Context) error {
			if c.rulesFile != "" {
				return eng.WatchFileWith(ctx, c.rulesFile, 3*time.Second, offer)
			}
			if err := offer(ctx, rf.name, rf.data, rf.modified); err != nil {
				log.Error("rules: demo rules refused; the twin's rules keep running", "err", err)
			}
			return nil
		})
	}
	fatal := make(chan error, 1)
	stg.run(cluster, "changelog", func(ctx context.Context) error {
		err := node.Run(ctx)
		if err != nil {
			fatal <- err
		}
		return err
	})
	hs := server.NewHTTP(relay, server.HTTPOptions{Limits: c.limits.http, Logger: log, Registerer: reg})
	// Collect the start's garbage before serving (generating or loading the
	// city leaves ~400 MB of it at demo scale 1) and give its pages back.
	// Left to the GC, it was collected at the first load's first second,
	// where the mark's assists and its quarter of the one core made that
	// second's websocket p99 the run's worst (issue 16 goal 6), and the
	// RSS kept the pages.
	debug.FreeOSMemory()
	fmt.Fprintf(stdout, "CityTwin serving on http://%s/  (MQTT %s, store %s, NATS %s)\n", ln.Addr(), brokerURL, storeName(c), sp.Where())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		return fmt.Errorf("http server: %w", err)
	case err := <-fatal:
		runErr = fmt.Errorf("the twin fell out of step with the change log (restart to reload from the store): %w", err)
	}
	log.Info("shutting down")
	// HTTP first (no new requests; in-flight ones finish), then the stages;
	// Flush then reports the outcome of the writer's final flush.
	stg.stop(func() {
		// ctx is done: keep its values, not its cancellation.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
	})
	log.Info("stopped")
	return runErr
}

func storeName(c serveConfig) string {
	if c.db != "" {
		return "postgis"
	}
	return "embedded " + c.data
}

// publisher adapts the MQTT ingest's publish to the sim's interface.
type publisher struct{ in *mqttin.Ingest }

func (p publisher) Publish(ctx context.Context, topic string, payload []byte) error {
	return p.in.Publish(ctx, topic, 0, false, payload)
}

// demoTokenHandler issues short-lived tokens to loopback callers in demo
// mode, so the bundled client can act (ack, dispatch, accept) without setup.
func demoTokenHandler(key auth.Key, clk clock.Clock) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			server.WriteError(w, http.StatusNotFound, "not found", r.URL.Path)
			return
		}
		q := r.URL.Query()
		role := auth.Role(q.Get("role"))
		if role == "" {
			role = auth.Operator
		}
		region := q.Get("region")
		if region == "" {
			region = auth.CityCode
		}
		sub := q.Get("subject")
		if sub == "" {
			sub = "demo-" + string(role)
		}
		tok, err := key.Sign(auth.Principal{Subject: sub, Role: role, Region: region}, 12*time.Hour, clk.Now())
		if err != nil {
			server.WriteError(w, http.StatusBadRequest, "bad token request", err.Error())
			return
		}
		server.WriteJSON(w, http.StatusOK, map[string]string{"token": tok, "role": string(role), "region": region, "subject": sub})
	})
}

// servePprof serves net/http/pprof on its own listener, refused unless the
// address is loopback: profiles expose internals and cost CPU, so they are
// for an operator on the machine, never the network.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--pprof %q: only a loopback address is allowed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Warn("serving Go profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = hs.Close() }, nil
}
