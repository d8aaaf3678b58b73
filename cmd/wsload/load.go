package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/citytwin/citytwin/internal/loadgen"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
)

// Config is one load run.
type Config struct {
	Server, WS, Broker string
	Clients, Objects   int
	Rate               int // msgs/s over all objects
	Duration, Drain    time.Duration
	BBox               string // west,south,east,north
	Prefix, Token      string
	Conns              int
	SkipRegister       bool
	// Seed makes the vehicles' start positions, the clients' viewports
	// and the walks the same from run to run: with random viewports the
	// fan-out, and so the server's work, differed by ±10 % between runs
	// of one build, as much as the changes being measured.
	Seed uint64
}

// Report is what a run measured.
type Report struct {
	Clients, Connected int
	Published          int64
	PublishTime        time.Duration
	Msgs, Bytes        []int64   // per client
	Latency            []float64 // ms, publish -> receive, every delta with sent_ms
	Sent               []float64 // the publish time (Unix ms) of each Latency entry
	Gaps, Regressions  int64
	Resyncs, Closed    int64
	CloseCodes         map[int]int
}

type bbox struct{ w, s, e, n float64 }

func parseBBox(s string) (bbox, error) {
	p := strings.Split(s, ",")
	if len(p) != 4 {
		return bbox{}, fmt.Errorf("bbox %q: want west,south,east,north", s)
	}
	var v [4]float64
	for i := range p {
		f, err := strconv.ParseFloat(strings.TrimSpace(p[i]), 64)
		if err != nil {
			return bbox{}, fmt.Errorf("bbox %q: %w", s, err)
		}
		v[i] = f
	}
	if v[0] >= v[2] || v[1] >= v[3] {
		return bbox{}, fmt.Errorf("bbox %q: empty", s)
	}
	return bbox{v[0], v[1], v[2], v[3]}, nil
}

// Run registers, connects, publishes, drains and reports. Progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (Report, error) {
	bb, err := parseBBox(cfg.BBox)
	if err != nil {
		return Report{}, err
	}
	if cfg.WS == "" {
		u, err := url.Parse(cfg.Server)
		if err != nil {
			return Report{}, fmt.Errorf("server url: %w", err)
		}
		u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
		u.Path = "/ws"
		cfg.WS = u.String()
	}
	cfg.Conns = max(cfg.Conns, 1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	names := make([]string, cfg.Objects)
	pos := make([][2]float64, cfg.Objects)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", cfg.Prefix, i)
		pos[i] = [2]float64{bb.w + rng.Float64()*(bb.e-bb.w), bb.s + rng.Float64()*(bb.n-bb.s)}
	}
	if !cfg.SkipRegister {
		fmt.Fprintf(log, "registering %d vehicles\n", len(names))
		if err := register(ctx, cfg, names, pos); err != nil {
			return Report{}, err
		}
	}
	fmt.Fprintf(log, "connecting %d websocket clients to %s (seed %d)\n", cfg.Clients, cfg.WS, cfg.Seed)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := make([]*wsClient, cfg.Clients)
	var wg sync.WaitGroup
	for i := range clients {
		c, err := dial(cctx, cfg, bb, rng)
		if err != nil {
			cancel()
			wg.Wait()
			return Report{}, err
		}
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.read() }()
	}
	fmt.Fprintf(log, "publishing %d msgs/s to %s for %s\n", cfg.Rate, cfg.Broker, cfg.Duration)
	rep := Report{Clients: cfg.Clients, CloseCodes: map[int]int{}}
	start := time.Now()
	rep.Published, err = publish(ctx, cfg, bb, names, pos)
	rep.PublishTime = time.Since(start)
	if err != nil {
		cancel()
		wg.Wait()
		return Report{}, err
	}
	select {
	case <-time.After(cfg.Drain):
	case <-ctx.Done():
	}
	cancel()
	for _, c := range clients {
		c.conn.Close()
	}
	wg.Wait()
	for _, c := range clients {
		rep.Connected++
		rep.Msgs = append(rep.Msgs, c.msgs)
		rep.Bytes = append(rep.Bytes, c.bytes)
		rep.Latency = append(rep.Latency, c.lat...)
		rep.Sent = append(rep.Sent, c.sent...)
		rep.Gaps += c.gaps
		rep.Regressions += c.regressions
		rep.Resyncs += c.resyncs
		if c.closeCode != 0 {
			rep.Closed++
			rep.CloseCodes[c.closeCode]++
		}
	}
	return rep, nil
}

func register(ctx context.Context, cfg Config, names []string, pos [][2]float64) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	jobs := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body := fmt.Sprintf(`{"type":"Feature","geometry":{"type":"Point","coordinates":[%.6f,%.6f]},"properties":{"kind":"patrol"}}`, pos[i][0], pos[i][1])
				req, err := http.NewRequestWithContext(ctx, http.MethodPut, cfg.Server+"/api/entities/vehicles/"+names[i], strings.NewReader(body))
				if err == nil {
					req.Header.Set("Content-Type", "application/geo+json")
					if cfg.Token != "" {
						req.Header.Set("Authorization", "Bearer "+cfg.Token)
					}
					var resp *http.Response
					if resp, err = hc.Do(req); err == nil {
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode/100 != 2 {
							err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
						}
					}
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("register %s: %w", names[i], err):
					default:
					}
				}
			}
		}()
	}
	for i := range names {
		if len(errc) > 0 || ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// publish drives every object on a small random walk (about 50 m a step,
// kept inside the bbox) at cfg.Rate msgs/s, paced every 10 ms; each
// connection owns a disjoint set of objects so per-object ts increase.
func publish(ctx context.Context, cfg Config, bb bbox, names []string, pos [][2]float64) (int64, error) {
	var conns []paho.Client
	defer func() {
		for _, c := range conns {
			c.Disconnect(250)
		}
	}()
	for i := range cfg.Conns {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(cfg.Broker).
			SetClientID(fmt.Sprintf("wsload-%d-%d", time.Now().UnixNano(), i)).SetCleanSession(true))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return 0, fmt.Errorf("connect %s: %w", cfg.Broker, tok.Error())
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	rngs := make([]*rand.Rand, len(conns)) // one per connection: Pace calls each on its own goroutine
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
	}
	sent := loadgen.Pace(ctx, len(conns), len(names), cfg.Rate, func(conn, o int, ts int64) {
		p, rng := &pos[o], rngs[conn] // object o belongs to one connection: no sharing
		p[0] = math.Min(bb.e, math.Max(bb.w, p[0]+(rng.Float64()-0.5)*0.001))
		p[1] = math.Min(bb.n, math.Max(bb.s, p[1]+(rng.Float64()-0.5)*0.001))
		payload := fmt.Sprintf(`{"ts":%d,"lon":%.6f,"lat":%.6f,"speed_kmh":%.1f,"values":{"sent_ms":%.3f}}`,
			ts, p[0], p[1], rng.Float64()*60, float64(time.Now().UnixMicro())/1000)
		conns[conn].Publish("twin/telemetry/"+names[o], 0, false, payload)
	})
	return sent, nil
}

// wsClient is one measuring websocket client. Its fields are written by its
// read goroutine only and read after it ends.
type wsClient struct {
	conn                           *websocket.Conn
	msgs, bytes, gaps, regressions int64
	resyncs                        int64
	lat, sent                      []float64
	last                           map[string]uint64 // version per object id
	closeCode                      int
}

func dial(ctx context.Context, cfg Config, bb bbox, rng *rand.Rand) (*wsClient, error) {
	hdr := http.Header{}
	if cfg.Token != "" {
		hdr.Set("Authorization", "Bearer "+cfg.Token)
	}
	conn, resp, err := dialer.DialContext(ctx, cfg.WS, hdr)
	if resp != nil {
		resp.Body.Close() // the handshake response; the dialer has read it
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cfg.WS, err)
	}
	// A random street-to-district viewport (0.02..0.12 degrees wide).
	w := math.Min(0.02+rng.Float64()*0.10, bb.e-bb.w)
	h := math.Min(w*0.75, bb.n-bb.s)
	x := bb.w + rng.Float64()*(bb.e-bb.w-w)
	y := bb.s + rng.Float64()*(bb.n-bb.s-h)
	sub := fmt.Sprintf(`{"op":"subscribe","layers":["vehicles"],"bbox":[%.6f,%.6f,%.6f,%.6f]}`, x, y, x+w, y+h)
	if err := conn.WriteMessage(websocket.TextMessage, []byte(sub)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return &wsClient{conn: conn, last: map[string]uint64{}}, nil
}

type wsFeature struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	Props   struct {
		Values struct {
			SentMS *float64 `json:"sent_ms"`
		} `json:"values"`
	} `json:"properties"`
}

type wsMsg struct {
	Op       string      `json:"op"`
	Kind     string      `json:"kind"`
	Feature  *wsFeature  `json:"feature"`
	Features []wsFeature `json:"features"`
}

// dialer reads with a 64 KiB buffer: at 20k msgs/s the 200 clients read
// ~300k deltas a second on the tool's one core, and gorilla's 4 KiB
// default makes a read syscall every few deltas.
var dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 45 * time.Second,
	ReadBufferSize: 64 << 10}

// read receives until the link ends. Each message is read into one reused
// buffer and deltas are picked apart by scanDelta instead of
// encoding/json: the tool shares one core among its 200 clients, and
// decoding every delta with encoding/json made the tool, not the server,
// the bottleneck (the deltas waited in the tool's socket buffers, which
// counted as server latency).
func (c *wsClient) read() {
	var buf bytes.Buffer
	for {
		_, r, err := c.conn.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closeCode = ce.Code
			}
			return
		}
		now := float64(time.Now().UnixMicro()) / 1000
		c.receive(buf.Bytes(), now)
	}
}

// receive accounts one message received at now (epoch ms).
func (c *wsClient) receive(data []byte, now float64) {
	c.msgs++
	c.bytes += int64(len(data))
	d, ok := scanDelta(data)
	if !ok {
		var m wsMsg
		if json.Unmarshal(data, &m) != nil {
			return
		}
		switch m.Op {
		case "resync":
			c.resyncs++
			return
		case "snapshot":
			for _, f := range m.Features {
				c.last[f.ID] = f.Version
			}
			return
		case "delta":
			if m.Feature == nil {
				return
			}
			d = delta{remove: m.Kind == "remove", id: m.Feature.ID, version: m.Feature.Version}
			if m.Feature.Props.Values.SentMS != nil {
				d.sentMS, d.hasSent = *m.Feature.Props.Values.SentMS, true
			}
		default:
			return
		}
	}
	if d.remove {
		return // the next upsert after re-entering may skip versions
	}
	if prev, ok := c.last[d.id]; ok {
		if d.version <= prev {
			c.regressions++
		} else {
			c.gaps += int64(d.version - prev - 1)
		}
	}
	c.last[d.id] = d.version
	if d.hasSent {
		c.lat = append(c.lat, now-d.sentMS)
		c.sent = append(c.sent, d.sentMS)
	}
}

// delta is what the tool reads of a delta message.
type delta struct {
	remove  bool
	id      string
	version uint64
	sentMS  float64
	hasSent bool
}

// scanDelta reads a delta in the server's own encoding (wshub
// encodeDelta: {"op":"delta","seq":N,"kind":"K","feature":F} with F as
// twin.Feature.MarshalJSON writes it: "id" and "version" before
// "properties"). It reports false for anything else, or anything it cannot
// read with certainty, which the caller then decodes with encoding/json.
func scanDelta(b []byte) (d delta, ok bool) {
	const head = `{"op":"delta","seq":`
	if !bytes.HasPrefix(b, []byte(head)) {
		return d, false
	}
	rest := b[len(head):]
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return d, false
	}
	rest = rest[i:]
	switch {
	case bytes.HasPrefix(rest, []byte(`,"kind":"upsert","feature":{`)):
		rest = rest[len(`,"kind":"upsert","feature":{`):]
	case bytes.HasPrefix(rest, []byte(`,"kind":"remove","feature":{`)):
		rest = rest[len(`,"kind":"remove","feature":{`):]
		d.remove = true
	default:
		return d, false
	}
	p := bytes.Index(rest, []byte(`"properties":`))
	if p < 0 {
		return d, false
	}
	meta, props := rest[:p], rest[p:]
	id, ok := after(meta, `"id":"`)
	if !ok {
		return d, false
	}
	q := bytes.IndexByte(id, '"')
	if q < 0 || bytes.IndexByte(id[:q], '\\') >= 0 {
		return d, false // escapes: let encoding/json read it
	}
	d.id = string(id[:q])
	v, ok := after(meta, `"version":`)
	if !ok {
		return d, false
	}
	var err error
	if d.version, err = strconv.ParseUint(string(number(v)), 10, 64); err != nil {
		return d, false
	}
	if s, ok := after(props, `"sent_ms":`); ok {
		if d.sentMS, err = strconv.ParseFloat(string(number(s)), 64); err != nil {
			return d, false
		}
		d.hasSent = true
	}
	return d, true
}

// after returns what follows the first key in b.
func after(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	return b[i+len(key):], true
}

// number is the JSON number at the start of b.
func number(b []byte) []byte {
	i := 0
	for i < len(b) && (b[i] >= '0' && b[i] <= '9' || b[i] == '-' || b[i] == '+' || b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		i++
	}
	return b[:i]
}

// Print writes the report for humans.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "clients      %d connected, %d closed by the server %v, %d resyncs\n", r.Connected, r.Closed, r.CloseCodes, r.Resyncs)
	fmt.Fprintf(w, "published    %d msgs in %s (%.0f msgs/s)\n", r.Published, r.PublishTime.Round(time.Millisecond), float64(r.Published)/r.PublishTime.Seconds())
	fmt.Fprintf(w, "per client   msgs min/avg/max %s, bytes avg %.0f\n", spread(r.Msgs), avg(r.Bytes))
	if len(r.Latency) > 0 {
		l := slices.Clone(r.Latency)
		slices.Sort(l)
		fmt.Fprintf(w, "latency      %d deltas: p50 %.1f ms, p99 %.1f ms, max %.1f ms (publish -> client receive)\n",
			len(l), l[len(l)/2], l[len(l)*99/100], l[len(l)-1])
	}
	r.printBySecond(w)
	fmt.Fprintf(w, "versions     %d skipped (coalesced or out of view), %d regressions/duplicates\n", r.Gaps, r.Regressions)
}

// printBySecond writes p50 and p99 of the deltas published in each
// second of the run: a tail that comes from one stall (a store commit, a
// GC, the first seconds' warm-up) shows as one bad second, a server that
// cannot keep up as a latency that grows second after second.
func (r Report) printBySecond(w io.Writer) {
	if len(r.Sent) != len(r.Latency) || len(r.Sent) == 0 {
		return
	}
	t0 := slices.Min(r.Sent)
	var secs [][]float64
	for i, s := range r.Sent {
		k := int((s - t0) / 1000)
		for len(secs) <= k {
			secs = append(secs, nil)
		}
		secs[k] = append(secs[k], r.Latency[i])
	}
	fmt.Fprintf(w, "by second    p50/p99 ms of the deltas published in each second:")
	for _, l := range secs {
		if len(l) == 0 {
			fmt.Fprintf(w, " -")
			continue
		}
		slices.Sort(l)
		fmt.Fprintf(w, " %.0f/%.0f", l[len(l)/2], l[len(l)*99/100])
	}
	fmt.Fprintln(w)
}

func spread(v []int64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%.0f/%d", slices.Min(v), avg(v), slices.Max(v))
}

func avg(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s int64
	for _, x := range v {
		s += x
	}
	return float64(s) / float64(len(v))
}
