package acceptance

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
)

// natsNode is one nats-server of a test cluster.
type natsNode struct {
	args []string
	url  string
	logs *syncBuffer
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *natsNode) start(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(natsBin(t), n.args...)
	n.logs = &syncBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.done) }()
}

func (n *natsNode) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

func natsBin(t *testing.T) string {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			t.Fatalf("nats-server not found (apt-get install nats-server): %v", err)
		}
		bin = "/usr/sbin/nats-server"
	}
	return bin
}

// startNATSCluster runs three nats-servers with JetStream routed into one
// cluster on loopback and returns them and the client URL list.
func startNATSCluster(t *testing.T) ([]*natsNode, string) {
	t.Helper()
	var client, route []string
	for range 3 {
		client = append(client, freeAddr(t))
		route = append(route, freeAddr(t))
	}
	var routes []string
	for _, r := range route {
		routes = append(routes, "nats://"+r)
	}
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		host, port, _ := net.SplitHostPort(client[i])
		nodes[i] = &natsNode{url: "nats://" + client[i], args: []string{"-a", host, "-p", port, "-js", "-sd", t.TempDir(),
			"-n", fmt.Sprintf("n%d", i), "--cluster_name", "twin", "--cluster", "nats://" + route[i], "--routes", strings.Join(routes, ",")}}
		nodes[i].start(t)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	eventually(t, 60*time.Second, "a JetStream meta leader", func() bool {
		for _, n := range nodes {
			if strings.Contains(n.logs.String(), "JetStream cluster new metadata leader") || strings.Contains(n.logs.String(), "Self is new JetStream cluster metadata leader") {
				return true
			}
		}
		return false
	})
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	return nodes, strings.Join(urls, ",")
}

// TestNATSClusterNodeRestart (issue 13): two servers on a three-node NATS
// cluster with replicated streams (--nats-replicas 3); one NATS node is
// killed and restarted mid-stream; history ends with every fix exactly
// once and both servers' twins at the last fixes.
func TestNATSClusterNodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the NATS cluster")
	}
	nodes, urls := startNATSCluster(t)
	db := pgtest.New(t)
	key := writeKey(t)
	sfx := suffix(t)
	args := []string{"--nats", urls, "--nats-replicas", "3"}
	a := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: args})
	eventually(t, 30*time.Second, "A leads", func() bool { return a.metrics(t, "twin_changelog_leader")[""] == 1 })
	b := startServer(t, serveOpts{mqtt: mosquitto, db: db, key: key, args: args})
	tok := a.token(t, "operator", "500000")

	const vehicles, perVehicle = 4, 60
	names := make([]string, vehicles)
	ft0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for v := range names {
		names[v] = fmt.Sprintf("acc-nc-%d-%s", v, sfx)
		b.putVehicle(t, tok, names[v], 106.5, 29.5, nil) // through the relay
	}
	pub := newPacedPublisher(t)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	for k := range perVehicle {
		switch k {
		case perVehicle / 3:
			pub.wait(t)
			nodes[0].kill()
		case 2 * perVehicle / 3:
			pub.wait(t)
			nodes[0].start(t)
		}
		for v, n := range names {
			pub.publish(t, "twin/telemetry/"+n, fix(ft0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
		}
	}
	pub.wait(t)
	for v, n := range names {
		for _, s := range []*server{a, b} {
			eventually(t, 60*time.Second, n+" at its last fix on "+s.url, func() bool {
				f, _ := s.get(t, tok, "vehicles", n)
				return near(f.point(t), lon(perVehicle-1), lat(v))
			})
		}
		var h []time.Time
		deadline := time.Now().Add(30 * time.Second)
		for h = a.historyTimes(t, tok, "vehicles", n); len(h) < perVehicle && time.Now().Before(deadline); h = a.historyTimes(t, tok, "vehicles", n) {
			time.Sleep(100 * time.Millisecond)
		}
		if len(h) != perVehicle {
			have := map[int64]bool{}
			for _, ts := range h {
				have[ts.UnixMilli()] = true
			}
			var missing []int
			for k := range perVehicle {
				if !have[ft0.Add(time.Duration(k)*time.Second).UnixMilli()] {
					missing = append(missing, k)
				}
			}
			t.Fatalf("%s: %d history rows, want %d (each fix once); fixes missing: %v\nA: %s\nB: %s\nA's log:\n%s\nB's log:\n%s", n, len(h), perVehicle, missing,
				a.metricsLine(t, "twin_changelog_leader", "twin_feed_last_seq", "twin_writer"), b.metricsLine(t, "twin_changelog_leader", "twin_feed_last_seq", "twin_writer"),
				a.tail(400), b.tail(400))
		}
	}
	// A write still works from the follower, and both agree on the seq.
	r := b.do(t, "PUT", "/api/entities/vehicles/"+names[0], tok, pointFeature(106.6, 29.6, map[string]any{"kind": "patrol"}))
	if r.status != 200 {
		t.Fatalf("PUT through the relay after the node restart: %d %s", r.status, truncate(r.body))
	}
	eventually(t, 10*time.Second, "same seq on both", func() bool {
		return a.metrics(t, "twin_feed_last_seq")[""] == b.metrics(t, "twin_feed_last_seq")[""]
	})
}
