package acceptance

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/internal/tcpproxy"
)

// TestStoreCutTwoServers (issue 13): two servers of one twin (one
// nats-server, the shared Mosquitto) take MQTT telemetry while their
// PostgreSQL is cut away mid-stream (every connection closed, new ones
// refused) and comes back. Telemetry is acknowledged once the change log
// holds it, so ingest goes on; the leader's store writer keeps what it
// could not write and catches up. Afterwards history holds every fix
// exactly once (lost and doubled both 0) and both twins stand at the last
// fixes.
func TestStoreCutTwoServers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the two-server store outage")
	}
	nats := startNATS(t)
	db := pgtest.New(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	px := tcpproxy.New(t, u.Host)
	pu := *u
	pu.Host = px.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()
	key := writeKey(t)
	sfx := suffix(t)
	o := serveOpts{mqtt: mosquitto, db: pu.String(), key: key, args: []string{"--nats", nats}}
	a := startServer(t, o)
	eventually(t, 30*time.Second, "A leads", func() bool { return a.metrics(t, "twin_changelog_leader")[""] == 1 })
	b := startServer(t, o)
	tok := a.token(t, "operator", "500000")

	const vehicles, perVehicle = 10, 60
	names := make([]string, vehicles)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for v := range names {
		names[v] = fmt.Sprintf("acc-pgcut-%d-%s", v, sfx)
		b.putVehicle(t, tok, names[v], 106.5, 29.5, nil) // through the relay
	}
	pub := newPacedPublisher(t)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	journaled := func(s *server) int {
		n := 0.0
		for _, fam := range []string{"twin_journal_appended_total", "twin_journal_duplicates_total"} {
			for _, v := range s.metrics(t, fam) {
				n += v
			}
		}
		return int(n)
	}
	var cutAt time.Time
	var cutFor time.Duration
	for k := range perVehicle {
		switch k {
		case perVehicle / 3:
			pub.wait(t)
			px.SetCut(true)
			cutAt = time.Now()
		case 2 * perVehicle / 3:
			pub.wait(t)
			// The servers took the fixes sent during the cut into the log.
			sent := pub.sent()
			eventually(t, 30*time.Second, "the fixes sent during the cut journaled", func() bool { return journaled(a) >= sent-vehicles })
			// And the leader's writer did meet the outage.
			eventually(t, 30*time.Second, "a failed flush on the leader", func() bool {
				return a.metrics(t, "twin_writer_flush_errors_total")[""] > 0
			})
			cutFor = time.Since(cutAt)
			px.SetCut(false)
		}
		for v, n := range names {
			pub.publish(t, "twin/telemetry/"+n, fix(t0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
		}
		// A stream, not one burst: ~3 s of it while the store is away.
		if !cutAt.IsZero() && cutFor == 0 {
			time.Sleep(150 * time.Millisecond)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	pub.wait(t)
	t.Logf("PostgreSQL cut for %s mid-stream", cutFor.Round(100*time.Millisecond))

	lost, doubled := 0, 0
	for v, n := range names {
		for _, s := range []*server{a, b} {
			eventually(t, 30*time.Second, n+" at its last fix on "+s.url, func() bool {
				f, _ := s.get(t, tok, "vehicles", n)
				return near(f.point(t), lon(perVehicle-1), lat(v))
			})
		}
		eventually(t, 30*time.Second, n+": every fix in history", func() bool {
			return len(a.historyTimes(t, tok, "vehicles", n)) >= perVehicle
		})
		seen := map[int64]int{}
		for _, ts := range a.historyTimes(t, tok, "vehicles", n) {
			seen[ts.UnixNano()]++
		}
		for k := range perVehicle {
			switch c := seen[t0.Add(time.Duration(k)*time.Second).UnixNano()]; {
			case c == 0:
				lost++
			case c > 1:
				doubled += c - 1
			}
		}
	}
	t.Logf("%d fixes: lost %d, doubled %d", vehicles*perVehicle, lost, doubled)
	if lost != 0 || doubled != 0 {
		t.Errorf("history after the store outage: lost %d, doubled %d of %d fixes; want 0 and 0", lost, doubled, vehicles*perVehicle)
	}
}
