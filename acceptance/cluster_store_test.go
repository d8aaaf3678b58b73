package acceptance

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	_, pxdb, px := proxiedDB(t)
	const vehicles, perVehicle = 10, 60
	a, b, tok, names := twoServersWithVehicles(t, pxdb, nats, "acc-pgcut", vehicles)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
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

	for v, n := range names {
		for _, s := range []*server{a, b} {
			eventually(t, 30*time.Second, n+" at its last fix on "+s.url, func() bool {
				f, _ := s.get(t, tok, "vehicles", n)
				return near(f.point(t), lon(perVehicle-1), lat(v))
			})
		}
	}
	lost, doubled := historyOnce(t, a, tok, names, t0, perVehicle, 30*time.Second)
	t.Logf("%d fixes: lost %d, doubled %d", vehicles*perVehicle, lost, doubled)
	if lost != 0 || doubled != 0 {
		t.Errorf("history after the store outage: lost %d, doubled %d of %d fixes; want 0 and 0", lost, doubled, vehicles*perVehicle)
	}
}

// TestStoreRestartTwoServers (issue 13, "PostgreSQL restarted
// mid-stream"): two servers of one twin (one nats-server, the test's
// Mosquitto) take QoS 1 telemetry while their PostgreSQL server itself is
// restarted, not just cut away as in TestStoreCutTwoServers: pg_ctl stop
// -m fast (every session terminated, a shutdown checkpoint) or -m
// immediate (a crash: the start replays the WAL), held down until the
// leader's writer has failed a flush and /readyz shows the store away,
// started again; later a back-to-back restart while changes wait to be
// written. The restarts hit a PostgreSQL of the test's own
// (pgtest.StartCluster), never the machine's shared one. Afterwards, read
// from PostGIS itself: history holds every fix exactly once (lost and
// doubled both 0), every vehicle's stored state is its last fix, nothing
// was dead-lettered or quarantined, and both servers are ready again
// without anyone restarting them.
func TestStoreRestartTwoServers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the PostgreSQL restarts under two servers")
	}
	for _, mode := range []string{pgtest.Fast, pgtest.Immediate} {
		t.Run(mode, func(t *testing.T) { storeRestartCheck(t, mode) })
	}
}

func storeRestartCheck(t *testing.T, mode string) {
	pg := pgtest.StartCluster(t)
	u, err := url.Parse(pg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	db := u.String()
	nats := startNATS(t)
	const vehicles, perVehicle = 10, 60
	a, b, tok, names := twoServersWithVehicles(t, db, nats, "acc-pgrestart", vehicles)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	dead := dialMQTT(t, mosquitto)
	sfx := names[0][strings.LastIndexByte(names[0], '-')+1:] // this test's vehicles' suffix
	dead.subscribe(t, "twin/deadletter", func(_ string, p []byte) bool { return strings.Contains(string(p), sfx) })
	pub := newPacedPublisher(t)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	ts := func(k int) time.Time { return t0.Add(time.Duration(k) * time.Second) }
	journaled := func(s *server) int {
		n := 0.0
		for _, fam := range []string{"twin_journal_appended_total", "twin_journal_duplicates_total"} {
			for _, v := range s.metrics(t, fam) {
				n += v
			}
		}
		return int(n)
	}
	readyChecks := func(s *server) (int, map[string]string) {
		r := s.do(t, http.MethodGet, "/readyz", "", nil)
		var ready struct {
			Checks map[string]string `json:"checks"`
		}
		r.json(t, &ready)
		return r.status, ready.Checks
	}
	down := false
	for k := range perVehicle {
		switch k {
		case perVehicle / 4:
			pub.wait(t)
			pg.Stop(t, mode)
			down = true
		case perVehicle / 2:
			pub.wait(t)
			// Ingest went on: the fixes sent while PostgreSQL is down are
			// in the log.
			sent := pub.sent()
			eventually(t, 30*time.Second, "the fixes sent while PostgreSQL is down journaled", func() bool { return journaled(a) >= sent-vehicles })
			// The leader's writer met the stopped server, and readiness
			// says so.
			eventually(t, 30*time.Second, "a failed flush on the leader", func() bool {
				return a.metrics(t, "twin_writer_flush_errors_total")[""] > 0
			})
			eventually(t, 30*time.Second, "/readyz 503 naming the store", func() bool {
				st, checks := readyChecks(a)
				return st == http.StatusServiceUnavailable && checks["store"] != "ok"
			})
			pg.Start(t)
			down = false
		case 3 * perVehicle / 4:
			// Back to back, without waiting for the broker's PUBACKs:
			// changes wait to be written while the server goes and comes.
			pg.Restart(t, mode)
		}
		for v, n := range names {
			pub.publish(t, "twin/telemetry/"+n, fix(ts(k), lon(k), lat(v)))
		}
		if down {
			time.Sleep(100 * time.Millisecond) // a stream, not one burst, while the store is away
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	pub.wait(t)
	if pub.sent() != vehicles*perVehicle {
		t.Fatalf("published %d, want %d", pub.sent(), vehicles*perVehicle)
	}

	// The writer recovers by itself: both servers ready again.
	for _, s := range []*server{a, b} {
		eventually(t, 60*time.Second, "/readyz 200 again on "+s.url, func() bool {
			st, _ := readyChecks(s)
			return st == http.StatusOK
		})
	}
	for v, n := range names {
		for _, s := range []*server{a, b} {
			eventually(t, 30*time.Second, n+" at its last fix on "+s.url, func() bool {
				f, _ := s.get(t, tok, "vehicles", n)
				return near(f.point(t), lon(perVehicle-1), lat(v))
			})
		}
	}

	// What PostGIS holds, read from PostGIS. First the writer's position:
	// every change of the leader's feed is written.
	ctx, conn := storeConn(t, db)
	rows := func() int {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM telemetry WHERE layer = 'vehicles' AND name = ANY($1)`, names).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitStoreAt(t, conn, a, "the leader's last change")
	seen := map[string]int{}
	hr, err := conn.Query(ctx, `SELECT name, ts FROM telemetry WHERE layer = 'vehicles' AND name = ANY($1)`, names)
	if err != nil {
		t.Fatal(err)
	}
	for hr.Next() {
		var n string
		var at time.Time
		if err := hr.Scan(&n, &at); err != nil {
			t.Fatal(err)
		}
		seen[fmt.Sprintf("%s@%d", n, at.UnixNano())]++
	}
	if err := hr.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		for k := range perVehicle {
			want[fmt.Sprintf("%s@%d", n, ts(k).UnixNano())] = true
		}
	}
	lost, doubled := 0, 0
	for key := range want {
		if seen[key] == 0 {
			lost++
		}
	}
	for key, c := range seen {
		if want[key] {
			c-- // the fix itself
		}
		doubled += c // copies, and rows that are no fix
	}
	t.Logf("%d fixes published, %d history rows in PostGIS: lost %d, doubled %d", vehicles*perVehicle, rows(), lost, doubled)
	if lost != 0 || doubled != 0 || rows() != vehicles*perVehicle {
		t.Errorf("history after the %s restarts: %d rows for %d fixes, lost %d, doubled %d; want every fix once",
			mode, rows(), vehicles*perVehicle, lost, doubled)
	}
	stored := func(n string) (lon, lat float64, observed time.Time) {
		if err := conn.QueryRow(ctx, `SELECT ST_X(geom), ST_Y(geom), observed FROM vehicles WHERE name = $1`, n).Scan(&lon, &lat, &observed); err != nil {
			t.Fatalf("%s in PostGIS: %v", n, err)
		}
		return lon, lat, observed
	}
	for v, n := range names {
		eventually(t, 30*time.Second, n+" stored at its last fix", func() bool {
			x, y, obs := stored(n)
			return near([2]float64{x, y}, lon(perVehicle-1), lat(v)) && obs.Equal(ts(perVehicle-1))
		})
	}

	// Nothing dead-lettered (of this test's: the broker may carry other
	// traffic), nothing quarantined by a writer.
	if n := len(dead.msgs); n != 0 {
		m := <-dead.msgs
		t.Errorf("%d dead letters for this test's vehicles, want 0; the first: %s", n, m.payload)
	}
	for _, s := range []*server{a, b} {
		if q := s.metrics(t, "twin_writer_quarantined_total")[""]; q != 0 {
			t.Errorf("%s quarantined %v rows, want 0", s.url, q)
		}
	}
}

// twoServersWithVehicles starts two servers of one twin on db and nats (A
// leading), and registers n vehicles named prefix-i-suffix through B (the
// relay). It returns the servers, an operator token and the names.
// proxiedDB is a database of the test's own and its URL through a TCP
// proxy the test can cut (every connection closed, new ones refused), with
// a 2 s connect timeout.
func proxiedDB(t *testing.T) (db, proxied string, px *tcpproxy.Proxy) {
	t.Helper()
	db = pgtest.New(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	px = tcpproxy.New(t, u.Host)
	pu := *u
	pu.Host = px.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()
	return db, pu.String(), px
}

// storeConn connects to db for the test's own reads; closed when the
// test ends, its context bounding them to 2 minutes.
func storeConn(t *testing.T, db string) (context.Context, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return ctx, conn
}

// waitStoreAt waits until the store's feed_seq is s's last seq: every
// change of s's feed is written.
func waitStoreAt(t *testing.T, conn *pgx.Conn, s *server, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	feedSeq := func() float64 {
		var v []byte
		if err := conn.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'feed_seq'`).Scan(&v); err != nil || len(v) != 8 {
			return -1
		}
		return float64(binary.BigEndian.Uint64(v))
	}
	eventually(t, 60*time.Second, "the store's feed_seq at "+what, func() bool {
		return feedSeq() == s.metrics(t, "twin_feed_last_seq")[""]
	})
}

// historyOnce waits (up to wait) until s's history of each of names holds
// perVehicle fixes, then counts the fixes at t0, t0+1 s, ... missing from
// it and those in it more than once.
func historyOnce(t *testing.T, s *server, tok string, names []string, t0 time.Time, perVehicle int, wait time.Duration) (lost, doubled int) {
	t.Helper()
	for _, n := range names {
		eventually(t, wait, n+": every fix in history", func() bool {
			return len(s.historyTimes(t, tok, "vehicles", n)) >= perVehicle
		})
		seen := map[int64]int{}
		for _, ts := range s.historyTimes(t, tok, "vehicles", n) {
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
	return lost, doubled
}

func twoServersWithVehicles(t *testing.T, db, nats, prefix string, n int, args ...string) (a, b *server, tok string, names []string) {
	t.Helper()
	o := serveOpts{mqtt: mosquitto, db: db, key: writeKey(t), args: append([]string{"--nats", nats}, args...)}
	a = startServer(t, o)
	eventually(t, 30*time.Second, "A leads", func() bool { return a.metrics(t, "twin_changelog_leader")[""] == 1 })
	b = startServer(t, o)
	tok = a.token(t, "operator", "500000")
	sfx := suffix(t)
	names = make([]string, n)
	for v := range names {
		names[v] = fmt.Sprintf("%s-%d-%s", prefix, v, sfx)
		b.putVehicle(t, tok, names[v], 106.5, 29.5, nil)
	}
	return a, b, tok, names
}

// TestFailoverDuringStoreCut: the leader's store writer cannot write (its
// PostgreSQL cut away) while more fixes arrive than the follower's feed
// window holds (--feed-size 64), and then the leader is killed. The new
// leader's writer resumes at the store's seq, which its feed no longer
// holds: it reads the changes from the change log
// (twin_writer_backfilled_changes_total), so once PostgreSQL is back,
// history holds every fix exactly once. Before, the writer re-upserted
// every object and the fixes of the outage were missing from the history.
func TestFailoverDuringStoreCut(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the failover during a store outage")
	}
	nats := startNATS(t)
	db, pxdb, px := proxiedDB(t)
	const vehicles, perVehicle = 10, 40
	a, b, tok, names := twoServersWithVehicles(t, pxdb, nats, "acc-focut", vehicles, "--feed-size", "64")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	lon := func(k int) float64 { return 106.5 + float64(k+1)*1e-5 }
	lat := func(v int) float64 { return 29.5 + float64(v)*1e-3 }
	pub := newPacedPublisher(t)
	publish := func(k int) {
		for v, n := range names {
			pub.publish(t, "twin/telemetry/"+n, fix(t0.Add(time.Duration(k)*time.Second), lon(k), lat(v)))
		}
	}
	for k := range 5 {
		publish(k)
	}
	pub.wait(t)
	for _, n := range names {
		eventually(t, 30*time.Second, n+": the first fixes stored", func() bool { return len(a.historyTimes(t, tok, "vehicles", n)) >= 5 })
	}
	px.SetCut(true)
	for k := 5; k < perVehicle; k++ { // 350 fixes: over five windows of 64
		publish(k)
		time.Sleep(10 * time.Millisecond)
	}
	pub.wait(t)
	for v, n := range names {
		eventually(t, 30*time.Second, n+" at its last fix on the follower", func() bool {
			f, _ := b.get(t, tok, "vehicles", n)
			return near(f.point(t), lon(perVehicle-1), lat(v))
		})
	}
	eventually(t, 30*time.Second, "a failed flush on the leader", func() bool {
		return a.metrics(t, "twin_writer_flush_errors_total")[""] > 0
	})
	a.kill9(t)
	// The new leader leads with its store away (its writer waits for the
	// store; rules, telemetry and writes do not).
	eventually(t, 60*time.Second, "the follower leads", func() bool { return b.metrics(t, "twin_changelog_leader")[""] == 1 })
	late := fmt.Sprintf("acc-focut-late-%s", suffix(t))
	b.putVehicle(t, tok, late, 106.6, 29.6, nil)
	px.SetCut(false)
	eventually(t, 30*time.Second, "the new leader's writer reading the change log", func() bool {
		return b.metrics(t, "twin_writer_backfilled_changes_total")[""] > 0
	})
	ctx, conn := storeConn(t, db)
	waitStoreAt(t, conn, b, "the new leader's last change ("+late+" included)")
	var stored int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM vehicles WHERE name = $1`, late).Scan(&stored); err != nil || stored != 1 {
		t.Errorf("%s, put while the store was away: %d rows in the vehicles table (%v), want 1", late, stored, err)
	}
	lost, doubled := historyOnce(t, b, tok, names, t0, perVehicle, 60*time.Second)
	t.Logf("%d fixes: lost %d, doubled %d", vehicles*perVehicle, lost, doubled)
	if lost != 0 || doubled != 0 {
		t.Errorf("history after a failover during the store outage: lost %d, doubled %d of %d fixes; want 0 and 0", lost, doubled, vehicles*perVehicle)
	}
	if r := b.metrics(t, "twin_writer_resyncs_total")[""]; r != 0 {
		t.Errorf("the new leader's writer resynced %v times, want 0", r)
	}
}
