package main

// The fence modes measure the CPU one position update costs the server,
// with K square geofences, against CityTwin (-mode http: POST
// /api/telemetry NDJSON bodies) or against a RESP server such as Tile38
// (-mode resp: pipelined SET, fences made with SETCHAN, one subscriber
// reading the notifications). The same vehicles, fences, walk and batch
// size go to either, so the two figures can stand side by side. The tool
// does not start or build any server.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FenceConfig is one fence run.
type FenceConfig struct {
	Mode     string // "http" or "resp"
	Server   string // CityTwin base URL (http)
	RESP     string // RESP address (resp)
	Token    string // CityTwin admin token (http: registration, fences, rules)
	Prefix   string
	Objects  int
	Fences   int           // K square fences
	FenceM   float64       // side of a fence, metres
	Batch    int           // lines per POST body / commands per pipelined write
	Conns    int           // parallel connections
	Duration time.Duration // how long to drive
	PID      int           // server process to account CPU for (0: none)
	Settle   time.Duration // wait after driving before reading the CPU again
	Skip     bool          // objects and fences already made
}

// FenceReport is what a fence run measured.
type FenceReport struct {
	Updates, Errors       int64 // lines applied (http: applied/history/duplicate) or SETs answered
	Notifications         int64 // resp: fence messages the subscriber read
	Drive                 time.Duration
	CPU                   time.Duration // the server process's CPU over drive + settle, minus idle
	Idle                  time.Duration // its idle CPU over the same span (measured before)
	LoadBefore, LoadAfter string
}

// Print writes the report for humans.
func (r FenceReport) Print(w io.Writer, cfg FenceConfig) {
	fmt.Fprintf(w, "mode %s, %d objects, %d fences of %.0f m, batch %d, %d conns\n", cfg.Mode, cfg.Objects, cfg.Fences, cfg.FenceM, cfg.Batch, cfg.Conns)
	fmt.Fprintf(w, "updates      %d in %s (%.0f/s), %d errors", r.Updates, r.Drive.Round(time.Millisecond), rate(r.Updates, r.Drive), r.Errors)
	if cfg.Mode == "resp" {
		fmt.Fprintf(w, ", %d fence notifications", r.Notifications)
	}
	fmt.Fprintln(w)
	if r.CPU > 0 && r.Updates > 0 {
		fmt.Fprintf(w, "server cpu   %.2f s (idle %.2f s subtracted): %.1f us per update\n", r.CPU.Seconds(), r.Idle.Seconds(), float64(r.CPU.Microseconds())/float64(r.Updates))
	}
	fmt.Fprintf(w, "load average %s before, %s after (1 min)\n", r.LoadBefore, r.LoadAfter)
}

// fenceBox is a fence: lon/lat bounds.
type fenceBox struct{ minLon, minLat, maxLon, maxLat float64 }

// makeFences places k squares of side metres at random in the box.
func makeFences(k int, side float64, r *rand.Rand) []fenceBox {
	dLat := side / 111320
	dLon := side / (111320 * math.Cos((minLat+maxLat)/2*math.Pi/180))
	out := make([]fenceBox, k)
	for i := range out {
		lon := minLon + r.Float64()*(maxLon-minLon-dLon)
		lat := minLat + r.Float64()*(maxLat-minLat-dLat)
		out[i] = fenceBox{lon, lat, lon + dLon, lat + dLat}
	}
	return out
}

// walker moves objects about 30 m per update in a slowly turning direction.
type walker struct {
	lon, lat, head []float64
	r              *rand.Rand
}

// walkSeed places every vehicle's start (registration and every
// connection's walker agree on it).
const walkSeed = 1

// newWalker starts n objects where seed puts them; each walker then turns
// with its own randomness (rnd), so connections can walk their own objects.
func newWalker(n int, seed uint64) *walker {
	r := rand.New(rand.NewPCG(seed, 7))
	w := &walker{lon: make([]float64, n), lat: make([]float64, n), head: make([]float64, n)}
	for i := range n {
		w.lon[i] = minLon + r.Float64()*(maxLon-minLon)
		w.lat[i] = minLat + r.Float64()*(maxLat-minLat)
		w.head[i] = r.Float64() * 2 * math.Pi
	}
	w.r = r
	return w
}

func (w *walker) step(i int) (lon, lat float64) {
	w.head[i] += w.r.Float64()*0.6 - 0.3
	w.lat[i] += 30 * math.Cos(w.head[i]) / 111320
	w.lon[i] += 30 * math.Sin(w.head[i]) / (111320 * math.Cos(w.lat[i]*math.Pi/180))
	if w.lon[i] < minLon || w.lon[i] > maxLon || w.lat[i] < minLat || w.lat[i] > maxLat {
		w.head[i] += math.Pi
		w.lon[i] = min(max(w.lon[i], minLon), maxLon)
		w.lat[i] = min(max(w.lat[i], minLat), maxLat)
	}
	return w.lon[i], w.lat[i]
}

// RunFences sets up the fences and drives updates, then reads the CPU.
func RunFences(ctx context.Context, cfg FenceConfig, log io.Writer) (FenceReport, error) {
	var rep FenceReport
	if cfg.Objects <= 0 || cfg.Batch <= 0 || cfg.Conns <= 0 || cfg.Fences < 0 {
		return rep, errors.New("objects, batch and conns must be positive, fences not negative")
	}
	names := make([]string, cfg.Objects)
	for i := range names {
		names[i] = cfg.Prefix + strconv.Itoa(i)
	}
	fences := makeFences(cfg.Fences, cfg.FenceM, rand.New(rand.NewPCG(16, 13)))
	var drive func(ctx context.Context, mine []int, w *walker) (int64, int64, error)
	var notes atomic.Int64
	switch cfg.Mode {
	case "http":
		hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: max(cfg.Conns, 32)}}
		if !cfg.Skip {
			if err := setupHTTP(ctx, hc, cfg, names, fences, log); err != nil {
				return rep, err
			}
		}
		drive = func(ctx context.Context, mine []int, w *walker) (int64, int64, error) {
			return driveHTTP(ctx, hc, cfg, names, mine, w)
		}
	case "resp":
		if !cfg.Skip {
			if err := setupRESP(cfg, names, fences, log); err != nil {
				return rep, err
			}
		}
		sub, err := subscribeRESP(cfg.RESP, &notes)
		if err != nil {
			return rep, err
		}
		defer sub.Close()
		drive = func(ctx context.Context, mine []int, w *walker) (int64, int64, error) {
			return driveRESP(ctx, cfg, names, mine, w)
		}
	default:
		return rep, fmt.Errorf("unknown -mode %q (mqtt, http or resp)", cfg.Mode)
	}

	// Idle CPU of the server over 2 s, to subtract (the demo's own work,
	// tickers, a quiet broker).
	var idlePerSec float64
	if cfg.PID > 0 {
		c0, err := procCPU(cfg.PID)
		if err != nil {
			return rep, err
		}
		time.Sleep(2 * time.Second)
		c1, _ := procCPU(cfg.PID)
		idlePerSec = (c1 - c0).Seconds() / 2
	}
	fmt.Fprintf(log, "driving %d objects for %s on %d connection(s), %d per batch ...\n", cfg.Objects, cfg.Duration, cfg.Conns, cfg.Batch)
	rep.LoadBefore = loadAvg()
	cpu0, _ := procCPU(cfg.PID)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var updates, errs atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for c := range cfg.Conns {
		var mine []int
		for o := c; o < cfg.Objects; o += cfg.Conns {
			mine = append(mine, o)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWalker(cfg.Objects, walkSeed)
			w.r = rand.New(rand.NewPCG(uint64(c)+2, 11))
			u, e, err := drive(dctx, mine, w)
			updates.Add(u)
			errs.Add(e)
			if err != nil && dctx.Err() == nil {
				once.Do(func() { firstErr = err })
				cancel()
			}
		}()
	}
	wg.Wait()
	rep.Drive = time.Since(start)
	if firstErr != nil {
		return rep, firstErr
	}
	time.Sleep(cfg.Settle) // the server's writer, timeline and rules finish the tail
	if cfg.PID > 0 {
		cpu1, err := procCPU(cfg.PID)
		if err != nil {
			return rep, err
		}
		span := time.Since(start)
		rep.Idle = time.Duration(idlePerSec * float64(span))
		rep.CPU = cpu1 - cpu0 - rep.Idle
	}
	rep.LoadAfter = loadAvg()
	rep.Updates, rep.Errors, rep.Notifications = updates.Load(), errs.Load(), notes.Load()
	return rep, nil
}

// procCPU is a process's user + system CPU time from /proc.
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// setupHTTP registers the vehicles, PUTs the fences as polygons of the
// rivers layer (any polygon layer: the server is started without the
// demo city) and loads one geofence rule (enter, exit) over them.
func setupHTTP(ctx context.Context, hc *http.Client, cfg FenceConfig, names []string, fences []fenceBox, log io.Writer) error {
	lcfg := Config{Server: cfg.Server, Token: cfg.Token, Parallel: 32}
	fmt.Fprintf(log, "registering %d objects and %d fences on %s ...\n", len(names), len(fences), cfg.Server)
	// Each vehicle where its walk starts: a first fix far from where it
	// was registered would be a long jump, which a geofence engine tests
	// against every fence along it (not what a fleet's updates cost).
	start := newWalker(len(names), walkSeed)
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var err error
				if i < len(names) {
					err = putLayer(ctx, hc, lcfg, "vehicles", names[i], fmt.Sprintf(`{"type":"Feature","geometry":{"type":"Point","coordinates":[%.7f,%.7f]},"properties":{"kind":"patrol"}}`, start.lon[i], start.lat[i]))
				} else {
					k := i - len(names)
					f := fences[k]
					err = putLayer(ctx, hc, lcfg, "rivers", cfg.Prefix+"fence-"+strconv.Itoa(k), fmt.Sprintf(`{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[%f,%f],[%f,%f],[%f,%f],[%f,%f],[%f,%f]]]},"properties":{"name":"fence %d"}}`,
						f.minLon, f.minLat, f.maxLon, f.minLat, f.maxLon, f.maxLat, f.minLon, f.maxLat, f.minLon, f.minLat, k))
				}
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := range len(names) + len(fences) {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	rules := "rules: []\n"
	if len(fences) > 0 {
		rules = "rules:\n  - name: load-fences\n    kind: geofence\n    severity: yellow\n    subjects: {layer: vehicles}\n    target: {layer: rivers}\n    detect: [enter, exit]\n"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, cfg.Server+"/api/rules", strings.NewReader(rules))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT /api/rules: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

func putLayer(ctx context.Context, hc *http.Client, cfg Config, layer, name, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, cfg.Server+"/api/entities/"+layer+"/"+name, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/geo+json")
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", layer, name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("put %s/%s: %s: %s", layer, name, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// driveHTTP posts NDJSON bodies of cfg.Batch lines over this connection's
// objects until ctx ends. A fix is stamped now (ms), and always later than
// the object's previous one: old stamps would be late for the replay
// recorder's checkpoints, which then rebuild them (not what a live fleet
// costs).
func driveHTTP(ctx context.Context, hc *http.Client, cfg FenceConfig, names []string, mine []int, w *walker) (updates, errs int64, err error) {
	k := 0
	last := make([]int64, len(mine))
	var body []byte
	for ctx.Err() == nil {
		body = body[:0]
		for range cfg.Batch {
			o := mine[k]
			lon, lat := w.step(o)
			body = append(body, `{"id":"`...)
			body = append(body, names[o]...)
			body = append(body, `","ts":`...)
			last[k] = max(time.Now().UnixMilli(), last[k]+1)
			body = strconv.AppendInt(body, last[k], 10)
			body = append(body, `,"lon":`...)
			body = strconv.AppendFloat(body, lon, 'f', 6, 64)
			body = append(body, `,"lat":`...)
			body = strconv.AppendFloat(body, lat, 'f', 6, 64)
			body = append(body, "}\n"...)
			if k++; k == len(mine) {
				k = 0
			}
		}
		req, rerr := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, cfg.Server+"/api/telemetry", bytes.NewReader(body))
		if rerr != nil {
			return updates, errs, rerr
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
		resp, derr := hc.Do(req)
		if derr != nil {
			return updates, errs, derr
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return updates, errs, fmt.Errorf("POST /api/telemetry: %s: %.200s", resp.Status, b)
		}
		ok := int64(bytes.Count(b, []byte(`"outcome":"applied"`)) + bytes.Count(b, []byte(`"outcome":"history"`)) + bytes.Count(b, []byte(`"outcome":"duplicate"`)))
		updates += ok
		errs += int64(cfg.Batch) - ok
	}
	return updates, errs, nil
}

// setupRESP puts every vehicle where its walk starts (as http mode
// registers them) and makes one SETCHAN fence per square: WITHIN the
// fleet collection, FENCE DETECT enter,exit, BOUNDS.
func setupRESP(cfg FenceConfig, names []string, fences []fenceBox, log io.Writer) error {
	fmt.Fprintf(log, "placing %d objects, making %d fences on %s ...\n", len(names), len(fences), cfg.RESP)
	c, err := net.Dial("tcp", cfg.RESP)
	if err != nil {
		return err
	}
	defer c.Close()
	bw, br := bufio.NewWriter(c), bufio.NewReader(c)
	start := newWalker(len(names), walkSeed)
	for i, name := range names {
		writeCmd(bw, "SET", "fleet", name, "POINT", ftoa(start.lat[i]), ftoa(start.lon[i]))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for range names {
		if _, _, err := readReply(br); err != nil {
			return fmt.Errorf("SET: %w", err)
		}
	}
	for i := 0; i < len(fences); i += 500 {
		n := min(500, len(fences)-i)
		for j := i; j < i+n; j++ {
			f := fences[j]
			writeCmd(bw, "SETCHAN", cfg.Prefix+"fence"+strconv.Itoa(j), "WITHIN", "fleet", "FENCE", "DETECT", "enter,exit", "BOUNDS",
				ftoa(f.minLat), ftoa(f.minLon), ftoa(f.maxLat), ftoa(f.maxLon))
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		for range n {
			isErr, line, err := readReply(br)
			if err != nil {
				return fmt.Errorf("SETCHAN: %w", err)
			}
			if isErr {
				return fmt.Errorf("SETCHAN: %s", line)
			}
		}
	}
	return nil
}

// subscribeRESP reads every fence notification (PSUBSCRIBE *) and counts them.
func subscribeRESP(addr string, n *atomic.Int64) (io.Closer, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(c)
	writeCmd(bw, "PSUBSCRIBE", "*")
	if err := bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		br := bufio.NewReaderSize(c, 1<<16)
		for {
			if _, _, err := readReply(br); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return c, nil
}

// driveRESP pipelines cfg.Batch SETs at a time on one connection.
func driveRESP(ctx context.Context, cfg FenceConfig, names []string, mine []int, w *walker) (updates, errs int64, err error) {
	c, err := net.Dial("tcp", cfg.RESP)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	bw, br := bufio.NewWriterSize(c, 1<<16), bufio.NewReaderSize(c, 1<<16)
	k := 0
	for ctx.Err() == nil {
		for range cfg.Batch {
			o := mine[k]
			lon, lat := w.step(o)
			writeCmd(bw, "SET", "fleet", names[o], "POINT", ftoa(lat), ftoa(lon))
			if k++; k == len(mine) {
				k = 0
			}
		}
		if err := bw.Flush(); err != nil {
			return updates, errs, err
		}
		for range cfg.Batch {
			isErr, _, err := readReply(br)
			if err != nil {
				return updates, errs, err
			}
			if isErr {
				errs++
			} else {
				updates++
			}
		}
	}
	return updates, errs, nil
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 6, 64) }

// writeCmd writes a RESP array of bulk strings (a write error shows at
// the Flush that follows).
func writeCmd(w *bufio.Writer, args ...string) {
	_, _ = w.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		_, _ = w.WriteString("$" + strconv.Itoa(len(a)) + "\r\n")
		_, _ = w.WriteString(a)
		_, _ = w.WriteString("\r\n")
	}
}

// readReply reads one RESP reply (any type, arrays whole); isErr for '-'.
func readReply(r *bufio.Reader) (isErr bool, line string, err error) {
	l, err := r.ReadString('\n')
	if err != nil {
		return false, "", err
	}
	l = strings.TrimRight(l, "\r\n")
	if l == "" {
		return false, "", errors.New("empty RESP line")
	}
	switch l[0] {
	case '-':
		return true, l, nil
	case '+', ':':
		return false, l, nil
	case '$':
		n, _ := strconv.Atoi(l[1:])
		if n >= 0 {
			if _, err := r.Discard(n + 2); err != nil {
				return false, l, err
			}
		}
		return false, l, nil
	case '*':
		n, _ := strconv.Atoi(l[1:])
		for range n {
			if _, _, err := readReply(r); err != nil {
				return false, l, err
			}
		}
		return false, l, nil
	}
	return false, l, fmt.Errorf("RESP reply %q", l)
}
