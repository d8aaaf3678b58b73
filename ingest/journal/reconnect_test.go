package journal_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/citytwin/citytwin/ingest/journal"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/internal/tcpproxy"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
)

// TestInFlightRedeliveredAfterReconnect: log messages JetStream had sent
// the applier when its link to NATS died are lost with the link, yet the
// consumer counts them delivered and would send them again only after its
// ack wait (a minute by default; ten here, so the timer cannot be what
// brings them). The applier starts its consumer afresh when the link comes
// back, and every entry is applied. (CI saw nine fixes missing from
// history in acceptance TestNATSClusterNodeRestart: a NATS node killed
// under the applier, the test gave up before the ack wait ended.)
func TestInFlightRedeliveredAfterReconnect(t *testing.T) {
	url := natstest.Start(t)
	px := tcpproxy.New(t, strings.TrimPrefix(url, "nats://"))
	ctx, cancel := context.WithCancel(context.Background())
	// A long lease: the applier must keep it through the cut, or taking it
	// again would make its consumer afresh anyway.
	sp, err := spine.Open(ctx, spine.Options{URL: "nats://" + px.Addr(), Name: "applier", LeaseTTL: time.Minute, ApplierAckWait: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := spine.Open(ctx, spine.Options{URL: url, Name: "sender", LeaseTTL: time.Minute}) // the bucket takes the last TTL opened with
	if err != nil {
		t.Fatal(err)
	}
	j := journal.New(sp, nil, nil)
	tw := twin.New(twin.Options{})
	var terms atomic.Int32 // times the applier took the lease
	done := make(chan error, 1)
	go func() {
		done <- j.RunApplier(ctx, tw, journal.ApplierOptions{
			Persisted:    tw.Feed().Last,
			DeadLetter:   func(string, string, []byte, error) {},
			Metrics:      telemetry.NewMetrics(nil),
			AutoRegister: true,
			OnLeader: func(leader bool) {
				if leader {
					terms.Add(1)
				}
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("applier: %v", err)
		}
		direct.Close()
		sp.Close()
	})
	eventually(t, "applier leading", j.Leading)
	var cons jetstream.Consumer
	eventually(t, "the applier's pull request at the server", func() bool {
		if cons == nil {
			cons, _ = direct.JetStream().Consumer(ctx, spine.TelemetryStream, spine.ApplierConsumer)
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting > 0
	})

	// Hold the applier's link, send through the other, and wait until the
	// consumer has handed every message to the held link.
	px.SetHeld(true)
	const n = 40
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	sent := journal.New(direct, nil, nil)
	for i := range n {
		e := entry(fmt.Sprintf("held-%d", i), t0.Add(time.Duration(i)*time.Second), 106.5)
		if _, err := sent.AppendWait(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every message sent to the held link", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == n
	})
	// The link dies with them; a new one is let through.
	px.SetCut(true)
	px.SetHeld(false)
	px.SetCut(false)

	eventually(t, "every entry applied", func() bool {
		for i := range n {
			if _, ok := tw.Get(twin.NewID(twin.Vehicles, fmt.Sprintf("held-%d", i))); !ok {
				return false
			}
		}
		return true
	})
	// Taking the lease again makes the consumer afresh too: that would
	// not be what this test is about.
	if n := terms.Load(); n != 1 || !j.Leading() {
		t.Fatalf("the applier took the lease %d times (leading now: %v), want once", n, j.Leading())
	}
}
