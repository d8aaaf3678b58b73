package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Cluster is a PostgreSQL server of one test's own: initdb into a fresh
// directory, a postmaster on a free loopback port with its socket in that
// directory. A test that stops or restarts PostgreSQL must not do it to the
// machine's shared server (other tests use it in parallel), so it starts
// one of these. PostGIS is installed system-wide, so CREATE EXTENSION
// postgis works in it as in any cluster of the same major version.
//
// The postmaster is the test binary's child (started as the postgres user
// when the test runs as root: initdb and postgres refuse root), so on
// Linux the kernel takes it down with the test binary even when a timeout
// panic or a kill skips t.Cleanup; the cleanup stops it and removes the
// directory.
type Cluster struct {
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // owned by the server's user: data/, sock/
	port int
	as   *owner // the server's user; nil: ourselves

	mu   sync.Mutex
	cmd  *exec.Cmd     // the running postmaster, nil while stopped
	done chan struct{} // closed when cmd has exited
	logs *logBuffer
}

// Stop modes of pg_ctl: fast ends every session and checkpoints; immediate
// quits at once, like a crash, and the next start recovers from the WAL.
const (
	Fast      = "fast"
	Immediate = "immediate"
)

// StartCluster initdbs a cluster in a temporary directory and starts it,
// with fsync on (an immediate stop then recovers from a WAL that was
// really flushed, as after a crash). It skips the test when the PostgreSQL server binaries are missing, unless
// CI is set (then it fails: CI installs them). t.Cleanup stops the server
// (immediate) and removes the directory, whatever the test's outcome.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBinaries()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: %v (CI is set: install postgresql)", err)
		}
		t.Skipf("pgtest: %v: skipping a test that needs a PostgreSQL server of its own", err)
	}
	c := &Cluster{bin: bin, logs: &logBuffer{}}
	if os.Geteuid() == 0 {
		c.as, err = postgresUser()
		if err != nil {
			t.Fatalf("pgtest: running as root, and %v", err)
		}
	}
	// Not t.TempDir: its parents are 0700 root, out of the postgres
	// user's reach.
	c.dir, err = os.MkdirTemp("", "pgtest-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.kill()
		if err := os.RemoveAll(c.dir); err != nil {
			t.Errorf("pgtest: remove %s: %v", c.dir, err)
		}
	})
	sock := filepath.Join(c.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		t.Fatal(err)
	}
	if c.as != nil {
		for _, d := range []string{c.dir, sock} {
			if err := os.Chown(d, c.as.uid, c.as.gid); err != nil {
				t.Fatalf("pgtest: chown %s: %v", d, err)
			}
		}
	}
	if err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	var last error
	for range 5 { // the free port may be taken between probe and bind
		if c.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if last = c.start(); last == nil {
			return c
		}
	}
	t.Fatalf("pgtest: start PostgreSQL: %v", last)
	return nil
}

// AdminURL is the URL of the cluster's postgres database (user postgres,
// trust auth); Cluster.New makes a PostGIS database in it.
func (c *Cluster) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Stop stops the postmaster with pg_ctl stop -m mode (Fast or Immediate)
// and waits until it has exited. Clients then get "connection refused".
func (c *Cluster) Stop(t testing.TB, mode string) {
	t.Helper()
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		t.Fatal("pgtest: Stop: the cluster is not running")
	}
	if err := c.run("pg_ctl", "stop", "-D", c.data(), "-m", mode, "-w", "-t", "120"); err != nil {
		t.Fatalf("pgtest: %v\n%s", err, c.logs.tail(20))
	}
	<-done
	c.mu.Lock()
	c.cmd, c.done = nil, nil
	c.mu.Unlock()
}

// Start starts the stopped postmaster again on the same port and waits
// until it accepts connections (after an immediate stop: once it has
// replayed the WAL).
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("pgtest: start again: %v", err)
	}
}

// Restart is pg_ctl restart -m mode: Stop, then Start.
func (c *Cluster) Restart(t testing.TB, mode string) {
	t.Helper()
	c.Stop(t, mode)
	c.Start(t)
}

// Log returns the server log: what it said at each stop and start (e.g.
// "database system was interrupted", "redo starts at").
func (c *Cluster) Log() string { return c.logs.String() }

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) tool(name string) string { return filepath.Join(c.bin, name) }

// start runs the postmaster as our child and waits until it answers.
func (c *Cluster) start() error {
	cmd := exec.Command(c.tool("postgres"), "-D", c.data(), "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+filepath.Join(c.dir, "sock"),
		"-c", "fsync=on", "-c", "max_connections=100", "-c", "shared_buffers=32MB",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	cmd.SysProcAttr = procAttr(c.as)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", c.AdminURL()+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		select {
		case <-done:
			c.mu.Lock()
			c.cmd, c.done = nil, nil
			c.mu.Unlock()
			return fmt.Errorf("postgres on port %d exited at start:\n%s", c.port, c.logs.tail(20))
		default:
		}
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			c.kill()
			return fmt.Errorf("postgres on port %d not ready: %w\n%s", c.port, err, c.logs.tail(20))
		}
		time.Sleep(50 * time.Millisecond) // an external process: nothing to fake
	}
}

// kill stops a running postmaster at once (SIGQUIT: immediate shutdown,
// it takes its backends down) and waits for it; SIGKILL if it hangs.
func (c *Cluster) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd, c.done = nil, nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// run runs a PostgreSQL tool as the server's user.
func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(c.tool(name), args...)
	cmd.SysProcAttr = procAttr(c.as)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}

// serverBinaries finds the directory of initdb, pg_ctl and postgres: the
// newest /usr/lib/postgresql/<major>/bin (Debian) whose major version has
// PostGIS installed, else the newest, else initdb's directory on PATH.
func serverBinaries() (string, error) {
	has := func(dir string) bool {
		for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				return false
			}
		}
		return true
	}
	major := func(d string) string { return filepath.Base(filepath.Dir(d)) }
	postgis := func(d string) bool {
		_, err := os.Stat(filepath.Join("/usr/share/postgresql", major(d), "extension", "postgis.control"))
		return err == nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	num := func(d string) int {
		n, _ := strconv.Atoi(major(d))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return num(dirs[i]) > num(dirs[j]) })
	for _, want := range []func(string) bool{postgis, func(string) bool { return true }} {
		for _, d := range dirs {
			if has(d) && want(d) {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin or on PATH")
}

// owner is a user to run the server's tools as.
type owner struct{ uid, gid int }

// postgresUser is the postgres user, for running the server's tools when
// we are root.
func postgresUser() (*owner, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("no postgres user to run PostgreSQL as: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &owner{uid: uid, gid: gid}, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// logBuffer collects the postmaster's output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(l.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
