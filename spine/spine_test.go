package spine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/spine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats-server's and nats.go's process-wide helpers outlive a test.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
	)
}

func open(t *testing.T, o spine.Options) *spine.Spine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sp, err := spine.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	return sp
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEmbedded: without a URL the spine runs its own JetStream in the data
// directory, and what was published survives a reopen (the log is on disk).
func TestEmbedded(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	sp, err := spine.Open(ctx, spine.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.JetStream().Publish(ctx, spine.TelemetrySubject, []byte("x"), jetstream.WithMsgID("a@1")); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	sp = open(t, spine.Options{DataDir: dir})
	st, err := sp.JetStream().Stream(ctx, spine.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("after reopen the stream holds %d messages, want 1", info.State.Msgs)
	}
	// The same message id again is a duplicate, stored once.
	pa, err := sp.JetStream().Publish(ctx, spine.TelemetrySubject, []byte("x"), jetstream.WithMsgID("a@1"))
	if err != nil || !pa.Duplicate {
		t.Fatalf("republish: %+v, %v; want a duplicate", pa, err)
	}
}

// TestLeaseOneHolder: of two servers competing for a lease one leads; when
// it stops cleanly the other takes over, and when it dies (connection gone,
// no release) the other takes over after the TTL. Never two at once.
func TestLeaseOneHolder(t *testing.T) {
	url := natstest.Start(t)
	o := spine.Options{URL: url, LeaseTTL: 1500 * time.Millisecond}
	a := open(t, spine.Options{URL: o.URL, LeaseTTL: o.LeaseTTL, Name: "a"})
	b := open(t, spine.Options{URL: o.URL, LeaseTTL: o.LeaseTTL, Name: "b"})

	var leaders atomic.Int32
	var mu sync.Mutex
	var who []string
	var twice atomic.Bool
	run := func(sp *spine.Spine, ctx context.Context) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sp.RunLeader(ctx, "test", func(ctx context.Context) error {
				if leaders.Add(1) > 1 {
					twice.Store(true)
				}
				mu.Lock()
				who = append(who, sp.Name())
				mu.Unlock()
				<-ctx.Done()
				leaders.Add(-1)
				return nil
			}, nil)
		}()
		return done
	}
	actx, stopA := context.WithCancel(context.Background())
	aDone := run(a, actx)
	eventually(t, "a leads", func() bool { return leaders.Load() == 1 })
	bctx, stopB := context.WithCancel(context.Background())
	bDone := run(b, bctx)
	defer func() { stopB(); <-bDone }()

	stopA() // clean stop: a releases
	<-aDone
	eventually(t, "b takes over", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(who) == 2 && who[1] == "b"
	})
	if h, err := a.Holder(context.Background(), "test"); err != nil || h != "b" {
		t.Fatalf("holder %q, %v; want b", h, err)
	}

	// A third server, c, waits while b leads; b "dies" without release
	// (its renewals stop) and c takes over once the TTL removed the lease.
	c := open(t, spine.Options{URL: o.URL, LeaseTTL: o.LeaseTTL, Name: "c"})
	cctx, stopC := context.WithCancel(context.Background())
	cDone := run(c, cctx)
	defer func() { stopC(); <-cDone }()
	b.Close() // b's NATS connection is gone: it cannot renew or release
	eventually(t, "c takes over from the dead b", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(who) == 3 && who[2] == "c"
	})
	if twice.Load() {
		t.Fatal("two servers led at once")
	}
}

// TestFreshApplierRedelivers: a new applier consumer gets every
// unacknowledged message at once, in order, and acknowledged ones are gone
// (work-queue retention).
func TestFreshApplierRedelivers(t *testing.T) {
	sp := open(t, spine.Options{DataDir: t.TempDir()})
	ctx := context.Background()
	for i := range 10 {
		if _, err := sp.JetStream().Publish(ctx, spine.TelemetrySubject, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sp.FreshApplier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if n < 4 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 10 {
		t.Fatalf("fetched %d, want 10", n)
	}
	// The "previous leader" acked 4 and died holding 6.
	c, err = sp.FreshApplier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err = c.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for m := range batch.Messages() {
		got = append(got, m.Data()[0])
	}
	if string(got) != string([]byte{4, 5, 6, 7, 8, 9}) {
		t.Fatalf("redelivered %v, want 4..9", got)
	}
}

// TestAckGate: a message is acknowledged only once persisted() covers its
// watermark.
func TestAckGate(t *testing.T) {
	sp := open(t, spine.Options{DataDir: t.TempDir()})
	ctx := context.Background()
	for i := range 3 {
		if _, err := sp.JetStream().Publish(ctx, spine.TelemetrySubject, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sp.FreshApplier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var persisted atomic.Uint64
	gate := spine.NewAckGate(persisted.Load, nil)
	gctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); gate.Run(gctx, 5*time.Millisecond, time.Second) }()
	defer func() { stop(); <-done }()
	batch, err := c.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wm := uint64(10)
	for m := range batch.Messages() {
		gate.Add(m, wm)
		wm += 10
	}
	ackPending := func() int {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending
	}
	persisted.Store(20) // covers the first two
	eventually(t, "two acks", func() bool { return gate.Pending() == 1 && ackPending() == 1 })
	persisted.Store(30)
	eventually(t, "all acked", func() bool { return gate.Pending() == 0 && ackPending() == 0 })
}

// TestLeaseReclaimedAfterRestart: a server that died holding the lease and
// comes back under the same name leads again at once, without waiting for
// the lease's TTL (a minute here, longer than the test waits).
func TestLeaseReclaimedAfterRestart(t *testing.T) {
	url := natstest.Start(t)
	o := spine.Options{URL: url, LeaseTTL: time.Minute, Name: "same"}
	lead := func(sp *spine.Spine, ctx context.Context, led chan<- struct{}) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sp.RunLeader(ctx, "test", func(ctx context.Context) error {
				led <- struct{}{}
				<-ctx.Done()
				return nil
			}, nil)
		}()
		return done
	}
	first := open(t, o)
	ctx1, stop1 := context.WithCancel(context.Background())
	led := make(chan struct{}, 2)
	done1 := lead(first, ctx1, led)
	<-led
	first.Close() // dies: no release
	defer func() { stop1(); <-done1 }()

	second := open(t, o)
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := lead(second, ctx2, led)
	defer func() { stop2(); <-done2 }()
	select {
	case <-led:
	case <-time.After(30 * time.Second):
		t.Fatal("the restarted server did not reclaim its lease")
	}
}

// clusterNode runs one nats-server process (the packaged binary, as the
// acceptance tests do) of a three-node JetStream cluster on loopback;
// routes are the cluster's three route URLs.
func clusterNode(t *testing.T, name, route string, routes []string) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, serr := os.Stat(bin); serr != nil {
			t.Skipf("nats-server not found (apt-get install nats-server): %v", err)
		}
	}
	client := freePort(t)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(client), "-js", "-sd", t.TempDir(), "-n", name,
		"--cluster_name", "twin", "--cluster", route, "--routes", strings.Join(routes, ","))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("nats://127.0.0.1:%d", client)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestOpenWaitsForPeers: a server started while a three-node cluster forms
// (meta leader elected, third node not yet up) asks for streams of three
// replicas; JetStream answers "no suitable peers for placement" until the
// third node joins, and Open waits for it instead of failing (CI saw
// `twin serve` exit so).
func TestOpenWaitsForPeers(t *testing.T) {
	var routes []string
	for range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)))
	}
	a := clusterNode(t, "a", routes[0], routes)
	clusterNode(t, "b", routes[1], routes)
	eventually(t, "a JetStream meta leader of two nodes", func() bool {
		nc, err := nats.Connect(a)
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	})
	type result struct {
		sp  *spine.Spine
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		sp, err := spine.Open(ctx, spine.Options{URL: a, Name: "peers", Replicas: 3})
		done <- result{sp, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.sp.Close()
		}
		t.Fatalf("Open returned before the third node was up (err %v); want it to wait", r.err)
	case <-time.After(2 * time.Second):
	}
	clusterNode(t, "c", routes[2], routes)
	r := <-done
	if r.err != nil {
		t.Fatalf("Open after the third node joined: %v", r.err)
	}
	r.sp.Close()
}

// TestLeaseHeldWhileStopping: a leader whose context ended keeps the lease
// while its fn is still stopping (a term draining its last changes into
// the change log), for longer than the TTL, so no other server takes over
// until it returns; then the lease is released at once. Renewals used to
// run under the ended context, failed at once ("context canceled"), and
// the lease lapsed mid-drain.
func TestLeaseHeldWhileStopping(t *testing.T) {
	url := natstest.Start(t)
	ttl := time.Second
	a := open(t, spine.Options{URL: url, LeaseTTL: ttl, Name: "a"})
	b := open(t, spine.Options{URL: url, LeaseTTL: ttl, Name: "b"})
	actx, stopA := context.WithCancel(context.Background())
	leading, stopping, drained := make(chan struct{}), make(chan struct{}), make(chan struct{})
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		_ = a.RunLeader(actx, "test", func(ctx context.Context) error {
			close(leading)
			<-ctx.Done()
			close(stopping)
			<-drained // the drain outlasts the TTL
			return nil
		}, nil)
	}()
	<-leading
	var bLed atomic.Bool
	bctx, stopB := context.WithCancel(context.Background())
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		_ = b.RunLeader(bctx, "test", func(ctx context.Context) error { bLed.Store(true); <-ctx.Done(); return nil }, nil)
	}()
	defer func() { stopB(); <-bDone }()

	stopA()
	<-stopping
	time.Sleep(3 * ttl) // three TTLs of draining
	if bLed.Load() {
		t.Fatal("b took the lease while a was still stopping")
	}
	if h, err := b.Holder(context.Background(), "test"); err != nil || h != "a" {
		t.Fatalf("holder while a stops: %q, %v; want a", h, err)
	}
	close(drained)
	<-aDone
	eventually(t, "b takes over once a returned", bLed.Load)
}

// TestLostPublishAnswerFails: an async publish whose answer never comes
// (a plain subscriber takes it and stays silent, as a clustered stream's
// leader that died after taking a message would) fails once
// Options.AckTimeout has passed since it was published, each on its own
// clock, with ErrAsyncPublishTimeout: the journal publishes such a batch
// again (spine.Options.AckTimeout says why a timer per publish).
func TestLostPublishAnswerFails(t *testing.T) {
	url := natstest.Start(t)
	sp := open(t, spine.Options{URL: url, Name: "a", AckTimeout: 300 * time.Millisecond})
	sub, err := sp.Conn().SubscribeSync("twin.blackhole")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var fs []jetstream.PubAckFuture
	for range 3 {
		f, err := sp.JetStream().PublishAsync("twin.blackhole", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	for i, f := range fs {
		select {
		case pa := <-f.Ok():
			t.Fatalf("publish %d answered %+v by a silent subscriber", i, pa)
		case err := <-f.Err():
			if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
				t.Fatalf("publish %d: err %v, want ErrAsyncPublishTimeout", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("publish %d still waits for its answer after 30 s", i)
		}
	}
}
