// Package mqtttest runs a Mosquitto of a test binary's own, on a free
// loopback port, with Mosquitto's default limits. Tests used to share the
// machine's broker on 127.0.0.1:1883, so every ingest subscribed there got
// every other package's (and every load tool's) telemetry at once and
// dead-lettered it as unknown devices: a burst test in one package stalled
// an acceptance server in another. With a broker per test binary, packages
// running in parallel no longer see each other's messages.
package mqtttest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Broker is one running mosquitto process.
type Broker struct {
	URL  string // tcp://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// ErrNoMosquitto is returned by Start when no mosquitto binary is found.
var ErrNoMosquitto = errors.New("mqtttest: mosquitto not found (apt-get install mosquitto)")

// Start runs mosquitto on a free loopback port with anonymous access and
// otherwise default settings (20 in flight, 1,000 queued per client, no
// persistence), and waits until it accepts connections. Stop ends it.
func Start() (*Broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			return nil, ErrNoMosquitto
		}
		bin = "/usr/sbin/mosquitto"
	}
	var last error
	for range 5 { // the free port may be taken between probe and bind
		b, err := start(bin)
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, last
}

func start(bin string) (*Broker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "mqtttest-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mqtttest: start mosquitto: %w", err)
	}
	b := &Broker{URL: "tcp://" + addr, Addr: addr, cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("mqtttest: mosquitto on %s exited at start", addr)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return b, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Stop()
	return nil, fmt.Errorf("mqtttest: mosquitto on %s did not accept connections", addr)
}

// Stop kills the broker and removes its config.
func (b *Broker) Stop() {
	if b == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.done
	os.RemoveAll(b.dir)
}
