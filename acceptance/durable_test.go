package acceptance

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// TestKill9LosesNothing: QoS 1 telemetry is PUBACKed only once it is in
// the JetStream log, and the log is acknowledged only once the store has
// what it changed, so a kill -9 in the middle of a stream loses nothing the
// broker handed over (issue 11 item 2, issue 13 item 5). The server is
// killed while messages are in flight, more are published while it is
// down (the broker queues them for its persistent session), and after a
// restart on the same data directory history holds every message exactly
// once and every vehicle stands at its last fix. Once with the embedded
// NATS (in --data), once with --nats against a nats-server of its own.
func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping kill -9 against the shared Mosquitto")
	}
	t.Run("embedded-nats", func(t *testing.T) { kill9Check(t, mosquitto, nil) })
	t.Run("external-nats", func(t *testing.T) {
		url := startNATS(t)
		kill9Check(t, mosquitto, []string{"--nats", url})
	})
	// The broker is nats-server's MQTT listener (v3.1.1, no $share): the
	// server's v3.1.1 client PUBACKs a message only once the log holds
	// its group, and nats-server keeps the unacknowledged ones (and those
	// published while the server is down) in its persistent session.
	t.Run("nats-mqtt-broker", func(t *testing.T) {
		_, mqttURL := startNATSWith(t, true)
		kill9Check(t, mqttURL, []string{"--mqtt-protocol", "3"})
	})
}

func kill9Check(t *testing.T, broker string, args []string) {
	const vehicles, perVehicle = 20, 250 // 5,000 messages
	sfx := suffix(t)
	id := "citytwin-acceptance-k9-" + sfx
	t.Cleanup(func() { wipeSessions(broker, id) }) // after the servers stopped
	o := serveOpts{mqtt: broker, clientID: id, data: t.TempDir(), key: writeKey(t), args: args}
	s := startServer(t, o)
	tok := s.token(t, "operator", "500000")
	names := make([]string, vehicles)
	for v := range names {
		names[v] = fmt.Sprintf("acc-k9-%d-%s", v, sfx)
		s.putVehicle(t, tok, names[v], 106.5, 29.5, nil)
	}

	pub := newPacedPublisherTo(t, broker)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	lon := func(k int) float64 { return 106.5 + float64(k)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	k := 0 // next fix index per vehicle
	publish := func(rounds int, wait func(sent int)) {
		for r := 0; r < rounds; r++ {
			for v, name := range names {
				pub.publish(t, "twin/telemetry/"+name, fix(t0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
			}
			k++
			if wait != nil {
				wait(pub.sent())
			}
		}
	}
	// journaled is how many messages this server process took into the log
	// (new or already there); pacing on it keeps the broker's queue for us
	// (Mosquitto: 1,000 per connection) from overflowing on a slow machine.
	journaled := func(s *server) int {
		n := 0.0
		for _, fam := range []string{"twin_journal_appended_total", "twin_journal_duplicates_total"} {
			for _, v := range s.metrics(t, fam) {
				n += v
			}
		}
		return int(n)
	}
	pace := func(s *server, base int) func(int) {
		return func(sent int) {
			eventually(t, 60*time.Second, "server keeping up", func() bool { return base+journaled(s) >= sent-200 })
		}
	}

	// 1. 2,000 messages with the server up.
	publish(100, pace(s, 0))
	// 2. 500 more without waiting for the server, killed in the middle.
	publish(12, nil)
	s.kill9(t)
	publish(13, nil)
	// 3. 400 while it is down: queued by the broker for its session.
	publish(20, nil)
	down := pub.sent()
	pub.wait(t)

	// 4. Restart on the same data and session; the rest (2,100) paced.
	s2 := startServer(t, o)
	eventually(t, 60*time.Second, "messages queued while down journaled", func() bool { return journaled(s2) >= 400 })
	publish(perVehicle-k, pace(s2, down-journaled(s2)))
	pub.wait(t)
	if pub.sent() != vehicles*perVehicle {
		t.Fatalf("published %d, want %d", pub.sent(), vehicles*perVehicle)
	}

	for v, name := range names {
		eventually(t, 90*time.Second, name+": every fix in history", func() bool {
			return len(s2.historyTimes(t, tok, "vehicles", name)) >= perVehicle
		})
		if n := len(s2.historyTimes(t, tok, "vehicles", name)); n != perVehicle {
			t.Errorf("%s: %d history rows, want %d (each fix once)", name, n, perVehicle)
		}
		f, _ := s2.get(t, tok, "vehicles", name)
		if !near(f.point(t), lon(perVehicle-1), lat(v)) {
			t.Errorf("%s at %v, want its last fix [%v %v]", name, f.point(t), lon(perVehicle-1), lat(v))
		}
	}
	// The restart only redelivered: the applier lease moved to the new
	// process and the log had the killed one's unacknowledged tail.
	if m := s2.metrics(t, "twin_journal_leader"); m[""] != 1 {
		t.Errorf("restarted server is not the applier: twin_journal_leader %v", m)
	}
}

// pacedPublisher publishes QoS 1 on its own clean-session connection,
// with up to 100 publishes awaiting the broker's PUBACK.
type pacedPublisher struct {
	c      paho.Client
	window chan paho.Token
	n      atomic.Int64
}

func newPacedPublisher(t *testing.T) *pacedPublisher {
	t.Helper()
	return newPacedPublisherTo(t, mosquitto)
}

// newPacedPublisherTo is newPacedPublisher on another broker.
func newPacedPublisherTo(t *testing.T, broker string) *pacedPublisher {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID("acceptance-pub-" + suffix(t)).
		SetCleanSession(true).SetConnectTimeout(10 * time.Second).SetOrderMatters(true)
	p := &pacedPublisher{c: paho.NewClient(o), window: make(chan paho.Token, 100)}
	if tok := p.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to MQTT broker %s: %v (is Mosquitto running?)", broker, tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(100) })
	return p
}

func (p *pacedPublisher) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	if len(p.window) == cap(p.window) {
		p.await(t, <-p.window)
	}
	p.window <- p.c.Publish(topic, 1, false, payload)
	p.n.Add(1)
}

func (p *pacedPublisher) await(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("QoS 1 publish not acknowledged by the broker: %v", tok.Error())
	}
}

// wait waits for every PUBACK.
func (p *pacedPublisher) wait(t *testing.T) {
	t.Helper()
	for len(p.window) > 0 {
		p.await(t, <-p.window)
	}
}

func (p *pacedPublisher) sent() int { return int(p.n.Load()) }

// startNATS runs a nats-server with JetStream of the test's own on a free
// loopback port (Debian package nats-server; .ci/run installs it) and
// returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	url, _ := startNATSWith(t, false)
	return url
}

// startNATSWith starts a nats-server of the test's own with JetStream and,
// when mqtt is set, its MQTT listener too (nats-server has no flag for it:
// a config file); it returns the NATS URL and the MQTT one (or "").
func startNATSWith(t *testing.T, mqtt bool) (natsURL, mqttURL string) {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			t.Fatalf("nats-server not found (apt-get install nats-server): %v", err)
		}
		bin = "/usr/sbin/nats-server"
	}
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-a", host, "-p", port, "-js", "-sd", t.TempDir()}
	if mqtt {
		maddr := freeAddr(t)
		conf := filepath.Join(t.TempDir(), "nats.conf")
		text := fmt.Sprintf("server_name: mqtt-%s\nlisten: %q\njetstream { store_dir: %q }\nmqtt { listen: %q }\n",
			suffix(t), addr, t.TempDir(), maddr)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		args, mqttURL = []string{"-c", conf}, "tcp://"+maddr
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	eventually(t, 30*time.Second, "nats-server listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return strings.Contains(logs.String(), "Server is ready")
		}
		return false
	})
	return "nats://" + addr, mqttURL
}

// TestFailoverLosesNothing: three servers of one twin (one PostGIS, one
// nats-server, one Mosquitto). The first holds the applier lease and is
// killed with -9 mid-stream; exactly one standby takes the lease over, gets
// the log's unacknowledged tail first, and history ends with every message
// exactly once, both survivors' twins at every vehicle's last fix (issue 13
// items 4 and 5, for telemetry; "two and three twin serve").
func TestFailoverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the three-server failover")
	}
	const vehicles, perVehicle = 20, 100
	nats := startNATS(t)
	db := pgtest.New(t)
	key := writeKey(t)
	sfx := suffix(t)
	a := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: []string{"--nats", nats}})
	tok := a.token(t, "operator", "500000")
	names := make([]string, vehicles)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	for v := range names {
		names[v] = fmt.Sprintf("acc-fo-%d-%s", v, sfx)
		a.putVehicle(t, tok, names[v], 106.5, 29.5, nil)
		a.postTelemetry(t, tok, map[string]any{"id": names[v], "ts": t0.Add(-time.Second).Format(time.RFC3339Nano), "lon": 106.5, "lat": 29.5})
	}
	// In PostGIS once their history is (the writer stores objects first).
	for _, name := range names {
		eventually(t, 30*time.Second, name+" stored", func() bool { return len(a.historyTimes(t, tok, "vehicles", name)) == 1 })
	}
	b := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: []string{"--nats", nats}})
	c := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: []string{"--nats", nats}})
	survivors := []*server{b, c}
	for _, s := range survivors {
		if m := s.metrics(t, "twin_journal_leader"); m[""] != 0 {
			t.Fatalf("%s leads too: %v", s.url, m)
		}
	}
	leaders := func() int {
		n := 0
		for _, s := range survivors {
			n += int(s.metrics(t, "twin_journal_leader")[""])
		}
		return n
	}

	pub := newPacedPublisher(t)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	k := 0
	applied := func(s *server) int {
		n := 0.0
		for _, v := range s.metrics(t, "twin_journal_appended_total") {
			n += v
		}
		for _, v := range s.metrics(t, "twin_journal_duplicates_total") {
			n += v
		}
		return int(n)
	}
	publish := func(rounds int, paceOn *server) {
		for r := 0; r < rounds; r++ {
			for v, name := range names {
				pub.publish(t, "twin/telemetry/"+name, fix(t0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
			}
			k++
			if paceOn != nil {
				sent := pub.sent()
				eventually(t, 60*time.Second, "servers keeping up", func() bool { return applied(paceOn) >= sent-200 })
			}
		}
	}
	publish(40, b)
	publish(10, nil)
	a.kill9(t)
	publish(perVehicle-k, nil)
	pub.wait(t)

	eventually(t, 60*time.Second, "a standby takes the lease", func() bool { return leaders() >= 1 })
	if n := leaders(); n != 1 {
		t.Errorf("%d survivors lead, want 1", n)
	}
	for v, name := range names {
		eventually(t, 90*time.Second, name+": every fix in history", func() bool {
			return len(b.historyTimes(t, tok, "vehicles", name)) >= perVehicle+1
		})
		if n := len(b.historyTimes(t, tok, "vehicles", name)); n != perVehicle+1 {
			t.Errorf("%s: %d history rows, want %d (each fix once)", name, n, perVehicle+1)
		}
		for _, s := range survivors {
			eventually(t, 30*time.Second, name+" at its last fix on "+s.url, func() bool {
				f, _ := s.get(t, tok, "vehicles", name)
				return near(f.point(t), lon(perVehicle-1), lat(v))
			})
		}
	}
}
