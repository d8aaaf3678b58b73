package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/citytwin/citytwin/internal/loadgen"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config is one load run.
type Config struct {
	Broker, Server, Prefix, Token string
	Objects, Rate, Parallel       int
	Conns, QoS                    int
	Duration, Drain               time.Duration
	SkipRegister                  bool
	// Jump sends every fix at a uniformly random place in the area (each
	// vehicle teleports); without it each vehicle drives: 5-50 m from its
	// last fix, on a heading that drifts, as trucks reporting every few
	// seconds do. Jumping defeats the server's same-cell fast paths, so it
	// is the worst case, not the city's.
	Jump bool
}

// Report is what a run measured. Applied etc. are deltas of the server's
// twin_ingest_messages_total{source="mqtt"} over the run.
type Report struct {
	Registered   int64
	RegisterTime time.Duration
	Published    int64 // publish calls made
	// Acked is how many QoS 1 publishes the broker PUBACKed (it took
	// responsibility for them); PubErrors the ones that failed. QoS 0: 0.
	Acked, PubErrors                        int64
	PublishTime                             time.Duration
	Applied, History, Duplicate, Deadletter int64
	IngestTime                              time.Duration // publish start until the server stopped counting
	// BrokerDropped is the rise of the server's twin_broker_dropped_total
	// (the broker's own $SYS drop counter) over the run.
	BrokerDropped int64
	// Journaled and JournalDup are the rise of the server's mqtt journal
	// counters (in the log / already there): with Processed they tell
	// whether a lost message never reached the server or was lost after
	// the log took it.
	Journaled, JournalDup int64
	// Settled is true when the server's counters stopped moving before
	// the drain deadline: only then is Lost final (else the server was
	// still working through its backlog).
	Settled bool
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// (/proc/loadavg) when publishing started and when the server caught up.
	LoadBefore, LoadAfter string
	// ToolCPU is this process's own CPU (user + system) while publishing:
	// on a shared machine the load tool's share is part of the figure.
	ToolCPU time.Duration
}

// Processed is every message the server accounted for.
func (r Report) Processed() int64 { return r.Applied + r.History + r.Duplicate + r.Deadletter }

// Lost is how many messages the broker acknowledged (QoS 1) or the tool
// sent (QoS 0) that the server never accounted for.
func (r Report) Lost() int64 {
	base := r.Acked
	if base == 0 && r.PubErrors == 0 {
		base = r.Published
	}
	return max(0, base-r.Processed())
}

// Chongqing's central districts, where the fake vehicles drive (WGS84).
const minLon, maxLon, minLat, maxLat = 106.40, 106.65, 29.45, 29.65

// Run registers, publishes and measures. Progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (Report, error) {
	var rep Report
	if cfg.Objects <= 0 || cfg.Rate <= 0 || cfg.Conns <= 0 || cfg.Parallel <= 0 {
		return rep, errors.New("objects, rate, conns and parallel must be positive")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Parallel}}
	names := make([]string, cfg.Objects)
	for i := range names {
		names[i] = cfg.Prefix + strconv.Itoa(i)
	}
	if !cfg.SkipRegister && !cfg.brokerOnly() {
		fmt.Fprintf(log, "registering %d objects on %s ...\n", cfg.Objects, cfg.Server)
		start := time.Now()
		n, err := register(ctx, hc, cfg, names)
		rep.Registered, rep.RegisterTime = n, time.Since(start)
		if err != nil {
			return rep, err
		}
	}
	before, err := scrape(ctx, hc, cfg)
	if err != nil {
		return rep, err
	}
	clients, err := connect(cfg)
	if err != nil {
		return rep, err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	fmt.Fprintf(log, "publishing %d msgs/s for %s on %d connection(s) ...\n", cfg.Rate, cfg.Duration, cfg.Conns)
	rep.LoadBefore = loadAvg()
	start, cpu0 := time.Now(), selfCPU()
	rep.Published, rep.Acked, rep.PubErrors = publish(ctx, cfg, clients, names)
	rep.PublishTime, rep.ToolCPU = time.Since(start), selfCPU()-cpu0

	// Wait until the server's counters stop moving (it has caught up).
	last, lastChange := before, time.Now()
	deadline := time.Now().Add(cfg.Drain)
	if cfg.brokerOnly() {
		deadline = time.Now()
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond) // polling a remote server
		cur, err := scrape(ctx, hc, cfg)
		if err != nil {
			return rep, err
		}
		if cur != last {
			last, lastChange = cur, time.Now()
		} else if cur.total()-before.total() >= rep.Published || time.Since(lastChange) > 15*time.Second {
			rep.Settled = true // caught up, or nothing more is coming
			break
		}
	}
	rep.LoadAfter = loadAvg()
	rep.IngestTime = lastChange.Sub(start)
	if rep.IngestTime < rep.PublishTime {
		rep.IngestTime = rep.PublishTime
	}
	rep.Applied = last.applied - before.applied
	rep.History = last.history - before.history
	rep.Duplicate = last.duplicate - before.duplicate
	rep.Deadletter = last.deadletter - before.deadletter
	rep.BrokerDropped = last.dropped - before.dropped
	rep.Journaled = last.journaled - before.journaled
	rep.JournalDup = last.journalDup - before.journalDup
	return rep, nil
}

// register PUTs vehicles/{name} for every name with cfg.Parallel workers.
func register(ctx context.Context, hc *http.Client, cfg Config, names []string) (int64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range jobs {
				lon := minLon + rand.Float64()*(maxLon-minLon)
				lat := minLat + rand.Float64()*(maxLat-minLat)
				body := fmt.Sprintf(`{"type":"Feature","geometry":{"type":"Point","coordinates":[%.6f,%.6f]},"properties":{"kind":"patrol","plate":%q}}`, lon, lat, name)
				if err := put(ctx, hc, cfg, name, body); err != nil {
					once.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		}()
	}
	for _, n := range names {
		if ctx.Err() != nil || firstErr != nil {
			break
		}
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return done.Load(), firstErr
}

func put(ctx context.Context, hc *http.Client, cfg Config, name, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, cfg.Server+"/api/entities/vehicles/"+name, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/geo+json")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("register %s: %s: %s", name, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// counts are the server's mqtt ingest counters, the broker's drops, and
// the mqtt messages the server's journal took (stored in the log) or
// found there already (a loss is then placed: before the log, or after).
type counts struct{ applied, history, duplicate, deadletter, dropped, journaled, journalDup int64 }

func (c counts) total() int64 { return c.applied + c.history + c.duplicate + c.deadletter }

// BrokerOnly is the -server value for a run with no CityTwin server:
// the broker's own ceiling (publish to a broker whose subscribers are
// plain clients such as mosquitto_sub), nothing registered or scraped.
const BrokerOnly = "none"

func (c Config) brokerOnly() bool { return c.Server == BrokerOnly }

// scrape reads twin_ingest_messages_total{source="mqtt"} from /metrics.
func scrape(ctx context.Context, hc *http.Client, cfg Config) (counts, error) {
	var c counts
	if cfg.brokerOnly() {
		return c, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Server+"/metrics", nil)
	if err != nil {
		return c, err
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("read metrics: %s", resp.Status)
	}
	return parseCounts(resp.Body)
}

// parseCounts picks twin_ingest_messages_total{source="mqtt",...} lines out
// of the Prometheus text format.
func parseCounts(r io.Reader) (counts, error) {
	var c counts
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "twin_broker_dropped_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return c, fmt.Errorf("metrics line %q: %w", line, err)
			}
			c.dropped = int64(f)
			continue
		}
		for _, j := range []struct {
			prefix string
			to     *int64
		}{{`twin_journal_appended_total{source="mqtt"} `, &c.journaled}, {`twin_journal_duplicates_total{source="mqtt"} `, &c.journalDup}} {
			if v, ok := strings.CutPrefix(line, j.prefix); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return c, fmt.Errorf("metrics line %q: %w", line, err)
				}
				*j.to = int64(f)
			}
		}
		rest, ok := strings.CutPrefix(line, "twin_ingest_messages_total{")
		if !ok || !strings.Contains(rest, `source="mqtt"`) {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: %w", line, err)
		}
		switch {
		case strings.Contains(labels, `outcome="applied"`):
			c.applied = int64(v)
		case strings.Contains(labels, `outcome="history"`):
			c.history = int64(v)
		case strings.Contains(labels, `outcome="duplicate"`):
			c.duplicate = int64(v)
		case strings.Contains(labels, `outcome="deadletter"`):
			c.deadletter = int64(v)
		}
	}
	return c, sc.Err()
}

// connect opens cfg.Conns publishing connections (wire.go).
func connect(cfg Config) ([]*wireConn, error) {
	var out []*wireConn
	for i := range cfg.Conns {
		c, err := dialWire(cfg.Broker, fmt.Sprintf("twinload-%d-%d", time.Now().UnixNano(), i), byte(cfg.QoS))
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// window bounds QoS 1 publishes awaiting their PUBACK per connection: the
// pacer waits (and the rate falls short) rather than queue without end.
const window = 4096

// publish sends cfg.Rate msgs/s round-robin over the objects for
// cfg.Duration. Each object's ts strictly increases (internal/loadgen).
// Each connection flushes once per pacing tick; with QoS 1 its PUBACKs are
// counted as they come and awaited (up to a minute) at the end: acked, or
// failed (never acked, or not written because the connection broke).
func publish(ctx context.Context, cfg Config, clients []*wireConn, names []string) (sent, acked, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	bufs := make([][]byte, len(clients)) // one per connection: emit runs on its goroutine
	topics := make([]string, len(names))
	for i, n := range names {
		topics[i] = "twin/telemetry/" + n
	}
	var notWritten atomic.Int64
	cars := make([]car, len(names)) // each touched only by its connection's goroutine
	for i := range cars {
		cars[i] = car{lon: minLon + rand.Float64()*(maxLon-minLon), lat: minLat + rand.Float64()*(maxLat-minLat), heading: rand.Float64() * 360}
	}
	sent = loadgen.PaceTicks(ctx, len(clients), len(names), cfg.Rate, func(conn, obj int, ts int64) {
		c := &cars[obj]
		if cfg.Jump {
			c.lon, c.lat, c.heading = minLon+rand.Float64()*(maxLon-minLon), minLat+rand.Float64()*(maxLat-minLat), rand.Float64()*360
		} else {
			c.drive()
		}
		bufs[conn] = appendPayload(bufs[conn][:0], ts, c)
		if err := clients[conn].Publish(topics[obj], bufs[conn]); err != nil {
			notWritten.Add(1)
		}
	}, func(conn int) { _ = clients[conn].Flush() })
	if cfg.QoS == 0 {
		for _, c := range clients {
			c.Wait(0)
		}
		return sent, 0, notWritten.Load()
	}
	for _, c := range clients {
		acked += c.Wait(time.Minute)
	}
	return sent, acked, sent - acked
}

// selfCPU is the CPU time this process has used (0 where getrusage fails).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg is the 1-minute load average, or "?" off Linux.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// car is one simulated vehicle's last fix.
type car struct{ lon, lat, heading float64 }

// drive moves c 5-50 m on a heading that drifts by up to ±30°, turning
// back into the area at its edges.
func (c *car) drive() {
	c.heading = math.Mod(c.heading+rand.Float64()*60-30+360, 360)
	d := 5 + rand.Float64()*45 // metres
	rad := c.heading * math.Pi / 180
	c.lat += d * math.Cos(rad) / 111320
	c.lon += d * math.Sin(rad) / (111320 * math.Cos(c.lat*math.Pi/180))
	if c.lon < minLon || c.lon > maxLon || c.lat < minLat || c.lat > maxLat {
		c.lon, c.lat = min(max(c.lon, minLon), maxLon), min(max(c.lat, minLat), maxLat)
		c.heading = math.Mod(c.heading+180, 360)
	}
}

func appendPayload(b []byte, ts int64, c *car) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"lon":`...)
	b = strconv.AppendFloat(b, c.lon, 'f', 6, 64)
	b = append(b, `,"lat":`...)
	b = strconv.AppendFloat(b, c.lat, 'f', 6, 64)
	b = append(b, `,"speed_kmh":`...)
	b = strconv.AppendFloat(b, rand.Float64()*60, 'f', 1, 64)
	b = append(b, `,"heading":`...)
	b = strconv.AppendInt(b, int64(c.heading), 10)
	return append(b, '}')
}
