// Package ogcconf walks the requirements of OGC API - Features Part 1 (core,
// GeoJSON, OpenAPI 3.0) and Part 3 (queryables, filter, CQL2 text) against
// the real twin binary serving the demo city (`twin serve --demo --sim-rate
// 0`), and checks that GDAL's OAPIF driver, as a planner runs it, keeps
// every field and pushes a -where filter down as CQL2.
//
// It is its own package, not part of acceptance, so it runs on its own
// (go test ./acceptance/ogcconf) against one server shared by every test:
// loading the demo city takes most of the time. Its launcher is therefore a
// small copy of acceptance's (that one is test-only code of another package).
package ogcconf

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demo is the shared server, started by TestMain; read-only afterwards.
var demo *twinServer

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ogcconf:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "twin-ogcconf-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "twin")
	build := exec.Command("go", "build", "-o", bin, "github.com/citytwin/citytwin/cmd/twin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("build twin: %w", err)
	}
	s, err := startDemo(bin, dir)
	if err != nil {
		return 0, err
	}
	demo = s
	code := m.Run()
	if err := s.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "ogcconf: %v\n%s\n", err, s.logs.tail(30))
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "twin serve log (last lines):\n%s\n", s.logs.tail(40))
	}
	return code, nil
}

// twinServer is a running `twin serve --demo`.
type twinServer struct {
	url    string // http://127.0.0.1:port
	bin    string
	key    string
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
	err    error
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(l.b.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startDemo starts the demo city on an embedded store and broker on free
// ports and waits (up to 3 minutes: the CI machine is shared) for /readyz.
func startDemo(bin, dir string) (*twinServer, error) {
	key := filepath.Join(dir, "auth.key")
	secret := make([]byte, 48)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if err := os.WriteFile(key, secret, 0o600); err != nil {
		return nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	mqtt, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &twinServer{url: "http://" + listen, bin: bin, key: key, logs: &logBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--demo", "--sim-rate", "0", "--listen", listen, "--mqtt-listen", mqtt,
		"--data", filepath.Join(dir, "data"), "--auth-key", key, "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWIN_") { // the caller's settings must not change the flags
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start twin serve: %w", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("twin serve exited before ready: %w\n%s", s.err, s.logs.tail(30))
		default:
		}
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			return nil, fmt.Errorf("twin serve not ready after 3 minutes\n%s", s.logs.tail(30))
		}
		time.Sleep(200 * time.Millisecond) // polling an external process: no clock to fake
	}
}

// stop ends the server with SIGTERM and wants a clean exit.
func (s *twinServer) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-s.exited:
		if s.err != nil {
			return fmt.Errorf("twin serve did not exit cleanly: %w", s.err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("twin serve still running 30 s after SIGTERM")
	}
}

// token runs `twin token` with the server's key and returns the token.
func (s *twinServer) token(t *testing.T, role, region string) string {
	t.Helper()
	out, err := exec.Command(s.bin, "token", "--role", role, "--region", region, "--auth-key", s.key).Output()
	if err != nil {
		t.Fatalf("twin token: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatal("twin token printed nothing")
	}
	return f[len(f)-1]
}

// reply is one finished HTTP exchange.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d answer %.300q: %v", r.status, r.body, err)
	}
}

// do sends one request; path is relative to the server or a full URL (a
// link the server gave).
func do(t *testing.T, method, path, token string, body io.Reader, header ...string) reply {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = demo.url + path
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, u, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// get is an anonymous GET (the demo lets loopback callers read city-wide)
// that must answer want.
func get(t *testing.T, want int, path string, header ...string) reply {
	t.Helper()
	r := do(t, http.MethodGet, path, "", nil, header...)
	if r.status != want {
		t.Fatalf("GET %s: %d, want %d: %.300s", path, r.status, want, r.body)
	}
	return r
}
