// Package acceptance checks CONTRACT.md against the real twin binary: it
// builds cmd/twin once, starts `twin serve` as a subprocess on free ports per
// test group, and talks to it only over HTTP, websockets and MQTT, as a user
// would. Tests that need Mosquitto (one of the binary's own, on a free port) or PostgreSQL
// (internal/pgtest) use them for real; -short skips the slowest.
package acceptance

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/mqtttest"
)

// twinBin is the binary built once by TestMain; read-only afterwards.
var twinBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "twin-acceptance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "acceptance:", err)
		os.Exit(1)
	}
	twinBin = filepath.Join(dir, "twin")
	build := exec.Command("go", "build", "-o", twinBin, "github.com/citytwin/citytwin/cmd/twin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance: build twin:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	mb, err := mqtttest.Start()
	if err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "acceptance:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "acceptance: no Mosquitto of our own, using 127.0.0.1:1883:", err)
		mosquitto = "tcp://127.0.0.1:1883"
	} else {
		mosquitto = mb.URL
	}
	code := m.Run()
	mb.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// suffix returns a random lower-case hex string, so that objects on the
// shared Mosquitto never collide between runs or engineers.
func suffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (the kernel hands out a fresh ephemeral port each time).
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveOpts configure one `twin serve` subprocess.
type serveOpts struct {
	demo bool   // --demo --sim-rate 0
	mqtt string // --mqtt URL; empty = embedded broker on a free port
	// clientID is --mqtt-client-id with mqtt; empty = a fresh one.
	clientID string
	// mqttListen is the embedded broker's address; empty = a free port.
	mqttListen string
	db         string   // --db URL; empty = embedded store in data
	data       string   // --data; empty = a fresh t.TempDir()
	key        string   // --auth-key file; empty = a fresh 48-byte key
	args       []string // extra flags
	// notReady waits for /healthz only (a server whose broker is away).
	notReady bool
	// envOnly passes listen, data, broker and key as TWIN_* variables
	// instead of flags (CONTRACT §1).
	envOnly bool
}

// server is a running `twin serve` process.
type server struct {
	t       testing.TB
	url     string // http://127.0.0.1:port
	mqttURL string // tcp://... the broker the server uses
	data    string
	key     string
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan struct{}
	waitErr error
	stopped bool
}

// syncBuffer collects the server's stderr for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail returns the last n lines of the server log.
func (s *server) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(s.logs.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startServer starts `twin serve`, waits for GET /readyz 200 (or /healthz
// with notReady) and registers a cleanup that stops it gracefully (SIGTERM,
// exit 0 within 15 s).
func startServer(t testing.TB, o serveOpts) *server {
	t.Helper()
	// The addresses are free when freeAddr picks them, and another test
	// process (an embedded NATS, a broker, a peer server) may bind one
	// before twin serve does: a server that exits on "address already in
	// use" is started again on new ones (seen once in a clean-clone CI run).
	for attempt := 1; ; attempt++ {
		s, portTaken := startServerOnce(t, o, attempt < 3)
		if !portTaken {
			return s
		}
		t.Logf("twin serve: an address was taken before it bound it; starting again on new ones (attempt %d)", attempt+1)
	}
}

// startServerOnce is one attempt of startServer. With retry, a server that
// exited because an address was taken is reported (portTaken) instead of
// failing the test.
func startServerOnce(t testing.TB, o serveOpts, retry bool) (_ *server, portTaken bool) {
	t.Helper()
	if o.data == "" {
		o.data = t.TempDir()
	}
	if o.key == "" {
		o.key = writeKey(t)
	}
	listen := freeAddr(t)
	// A test that fails prints the last lines of every server it started,
	// stopped ones included (see the cleanup below). They are at info by
	// default, so that a rare failure in CI shows what each server did
	// (its lease, its MQTT sessions, the applier), not only its warnings;
	// ACCEPTANCE_LOG_LEVEL=debug says more.
	level := cmp.Or(os.Getenv("ACCEPTANCE_LOG_LEVEL"), "info")
	args := []string{"serve", "--listen", listen, "--data", o.data, "--auth-key", o.key, "--log-level", level}
	mqttURL := o.mqtt
	if o.mqtt != "" {
		// A client id of our own: the server's default (citytwin-HOSTNAME)
		// would fight with any other server on the shared broker.
		id := o.clientID
		if id == "" {
			id = "citytwin-acceptance-" + suffix(t)
			t.Cleanup(func() { wipeSessions(o.mqtt, id) }) // runs after stop
		}
		args = append(args, "--mqtt", o.mqtt, "--mqtt-client-id", id)
	} else {
		ml := o.mqttListen
		if ml == "" {
			ml = freeAddr(t)
		}
		args = append(args, "--mqtt-listen", ml)
		mqttURL = "tcp://" + ml
	}
	if o.db != "" {
		args = append(args, "--db", o.db)
	}
	if o.demo {
		args = append(args, "--demo", "--sim-rate", "0")
	}
	args = append(args, o.args...)
	s := &server{t: t, url: "http://" + listen, mqttURL: mqttURL, data: o.data, key: o.key,
		logs: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(twinBin, args...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	s.cmd.Env = cleanEnv()
	if o.envOnly {
		// Every "--flag value" pair becomes TWIN_FLAG=value.
		var rest []string
		for i := 1; i < len(args); i++ {
			if i+1 < len(args) && strings.HasPrefix(args[i], "--") && !strings.HasPrefix(args[i+1], "--") {
				env := "TWIN_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(args[i], "--"), "-", "_"))
				s.cmd.Env = append(s.cmd.Env, env+"="+args[i+1])
				i++
				continue
			}
			rest = append(rest, args[i])
		}
		s.cmd.Args = append([]string{twinBin, "serve"}, rest...)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start twin serve: %v", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	// Cleanups run last-in first-out: this one, after the stop below.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("twin serve %s log (last lines):\n%s", s.url, s.tail(150))
		}
	})
	t.Cleanup(func() { s.stop(t) })

	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-s.exited:
			if retry && strings.Contains(s.tail(30), "address already in use") {
				s.stopped = true // its cleanup has nothing to stop
				return nil, true
			}
			t.Fatalf("twin serve exited before ready: %v\n%s", s.waitErr, s.tail(30))
		default:
		}
		probe := "/readyz"
		if o.notReady {
			probe = "/healthz"
		}
		resp, err := http.Get(s.url + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("twin serve not ready after 90 s (last: %v)\n%s", err, s.tail(30))
		}
		time.Sleep(100 * time.Millisecond) // polling an external process: no clock to fake
	}
}

// cleanEnv drops TWIN_* variables so that the caller's environment cannot
// change the flags a test passes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWIN_") {
			env = append(env, kv)
		}
	}
	return env
}

// stop sends SIGTERM and fails the test unless the server exits 0 within
// 15 s (graceful shutdown, CONTRACT §1). Calling it twice is harmless.
func (s *server) stop(t testing.TB) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	select {
	case <-s.exited:
		t.Errorf("twin serve had already exited: %v\n%s", s.waitErr, s.tail(30))
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Errorf("twin serve did not exit cleanly after SIGTERM: %v\n%s", s.waitErr, s.tail(30))
		}
	case <-time.After(15 * time.Second):
		// SIGQUIT: the Go runtime prints every goroutine's stack and exits,
		// so the failure says where the shutdown waits.
		mark := len(s.logs.String())
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		logs := s.logs.String()
		t.Errorf("twin serve still running 15 s after SIGTERM\n%s\nwhere it waited (our frames of each goroutine, alike stacks counted once):\n%s", s.tail(30), ourStacks(logs[min(mark, len(logs)):]))
	}
}

// ourStacks shortens a Go goroutine dump to the frames of this module:
// one line per goroutine state and stack, with how many goroutines share
// it, so a hung shutdown's dump fits in a test's failure message.
func ourStacks(dump string) string {
	count := map[string]int{}
	var order []string
	for _, g := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := lines[0]
		if i, j := strings.IndexByte(state, '['), strings.IndexByte(state, ']'); i >= 0 && j > i {
			state = state[i : j+1]
		}
		var frames []string
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "github.com/citytwin/") {
				if k := strings.LastIndexByte(l, '('); k > 0 {
					l = l[:k]
				}
				frames = append(frames, strings.TrimPrefix(l, "github.com/citytwin/citytwin/"))
			}
		}
		if len(frames) == 0 {
			continue
		}
		key := state + " " + strings.Join(frames, " < ")
		if count[key] == 0 {
			order = append(order, key)
		}
		count[key]++
	}
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "%3d× %s\n", count[k], k)
	}
	return b.String()
}

// writeKey writes a fresh 48-byte signing secret and returns its path.
func writeKey(t testing.TB) string {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.key")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// token runs `twin token` with the server's key and returns the last word
// it prints (CONTRACT §7).
func (s *server) token(t testing.TB, role, region string, extra ...string) string {
	t.Helper()
	args := append([]string{"token", "--role", role, "--region", region, "--auth-key", s.key}, extra...)
	cmd := exec.Command(twinBin, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("twin %s: %v", strings.Join(args, " "), err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("twin token printed nothing")
	}
	return f[len(f)-1]
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test on bad JSON.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d response %q: %v", r.status, truncate(r.body), err)
	}
}

func truncate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// do sends one request with an optional bearer token and body (a []byte,
// string, or any value encoded as JSON).
func (s *server) do(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, s.tail(20))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must is do that fails the test unless the status is want.
func (s *server) must(t testing.TB, want int, method, path, token string, body any) response {
	t.Helper()
	r := s.do(t, method, path, token, body)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, truncate(r.body))
	}
	return r
}

// feature is the wire form of a twin object (CONTRACT §2).
type feature struct {
	ID       string         `json:"id"`
	Layer    string         `json:"layer"`
	Version  uint64         `json:"version"`
	Updated  string         `json:"updated"`
	Region   []string       `json:"region"`
	Geometry *geometry      `json:"geometry"`
	Props    map[string]any `json:"properties"`
}

type geometry struct {
	Type        string          `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
}

// point returns a Point geometry's coordinates.
func (f feature) point(t testing.TB) [2]float64 {
	t.Helper()
	if f.Geometry == nil || f.Geometry.Type != "Point" {
		t.Fatalf("%s: geometry %+v is not a Point", f.ID, f.Geometry)
	}
	var p [2]float64
	if err := json.Unmarshal(f.Geometry.Coordinates, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f feature) inRegion(code string) bool {
	for _, c := range f.Region {
		if c == code {
			return true
		}
	}
	return false
}

type featureCollection struct {
	Features       []feature `json:"features"`
	NumberMatched  *int      `json:"numberMatched"`
	NumberReturned *int      `json:"numberReturned"`
}

// pointFeature is a PUT /api/entities body.
func pointFeature(lon, lat float64, props map[string]any) map[string]any {
	return map[string]any{"type": "Feature", "geometry": map[string]any{"type": "Point", "coordinates": []float64{lon, lat}}, "properties": props}
}

// putVehicle registers vehicles/name at lon/lat and returns it.
func (s *server) putVehicle(t testing.TB, token, name string, lon, lat float64, props map[string]any) feature {
	t.Helper()
	if props == nil {
		props = map[string]any{"kind": "patrol"}
	}
	r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+name, token, pointFeature(lon, lat, props))
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("PUT vehicles/%s: status %d: %s", name, r.status, truncate(r.body))
	}
	var f feature
	r.json(t, &f)
	return f
}

// get reads one object; ok is false on 404.
func (s *server) get(t testing.TB, token, layer, name string) (feature, bool) {
	t.Helper()
	r := s.do(t, http.MethodGet, "/api/entities/"+layer+"/"+name, token, nil)
	if r.status == http.StatusNotFound {
		return feature{}, false
	}
	if r.status != http.StatusOK {
		t.Fatalf("GET %s/%s: status %d: %s", layer, name, r.status, truncate(r.body))
	}
	var f feature
	r.json(t, &f)
	return f, true
}

// lineResult is one line of a POST /api/telemetry answer.
type lineResult struct {
	Line    int    `json:"line"`
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
}

// postTelemetry sends NDJSON lines and returns the per-line results.
func (s *server) postTelemetry(t testing.TB, token string, lines ...any) []lineResult {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		switch v := l.(type) {
		case string:
			b.WriteString(v)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(j)
		}
		b.WriteByte('\n')
	}
	r := s.must(t, http.StatusOK, http.MethodPost, "/api/telemetry", token, b.Bytes())
	var out struct {
		Results []lineResult `json:"results"`
	}
	r.json(t, &out)
	return out.Results
}

// metrics returns the samples of one metric family from /metrics, keyed by
// the label part ("" for none), e.g. `{reason="bad_json"}`.
func (s *server) metrics(t testing.TB, family string) map[string]float64 {
	t.Helper()
	r := s.must(t, http.StatusOK, http.MethodGet, "/metrics", "", nil)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, family) {
			continue
		}
		rest := line[len(family):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer name with this prefix
		}
		labels, val := "", rest
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			labels, val = rest[:i+1], rest[i+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[labels] = v
	}
	return out
}

// eventually polls cond until it holds or the timeout passes. The server is
// another process with its own clock: there is nothing to fake, so waiting
// on an observable condition is the deterministic option.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricsLine returns the /metrics lines whose name starts with one of the
// prefixes, for a failure's message (histogram buckets left out).
func (s *server) metricsLine(t testing.TB, prefixes ...string) string {
	t.Helper()
	r := s.do(t, http.MethodGet, "/metrics", "", nil)
	var out []string
	for _, line := range strings.Split(string(r.body), "\n") {
		if strings.Contains(line, "_bucket{") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "; ")
}
