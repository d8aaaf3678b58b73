package wshub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
)

// BenchmarkFanout is wsload in one process, for FlushInterval off, at its
// default and longer: 200 websocket clients on
// random viewports of the city (as wsload picks them) over loopback, and
// vehicle moves applied to the twin at 5,000 and 20,000 a second in 5 ms
// bursts.
// It reports the process's CPU time per move (cpu-µs/move: the twin's
// apply, the router, the writers, the clients' reads of whole batches)
// and the deltas each move became, a figure that holds on a busy machine
// where wall times do not. The clients only count bytes, so their cost is
// a read per batch, not a JSON decode.
func BenchmarkFanout(b *testing.B) {
	for _, rate := range []int{5000, 20000} {
		for _, fl := range []time.Duration{-1, 10 * time.Millisecond, 25 * time.Millisecond} {
			b.Run(fmt.Sprintf("rate=%d/flush=%v", rate, max(fl, 0)), func(b *testing.B) { benchFanout(b, rate, fl) })
		}
	}
}

func benchFanout(b *testing.B, rate int, flush time.Duration) {
	const clients, objects = 200, 2000
	r := rand.New(rand.NewPCG(1, 2))
	tw := twin.New(twin.Options{FeedSize: 1 << 16, Enricher: westEast{}})
	pos := make([]orb.Point, objects)
	for i := range pos {
		pos[i] = randIn(r, city)
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i)), Geometry: pos[i],
			Props: twin.NewProps(map[string]any{"kind": "muck_truck", "speed_kmh": 30.0})}); err != nil {
			b.Fatal(err)
		}
	}
	h := New(tw, Options{MaxPerIP: -1, MaxPerPrincipal: -1, FlushInterval: flush})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = h.Run(ctx) }()
	srv := httptest.NewServer(h)
	defer func() { cancel(); <-runDone; srv.Close() }()

	var got atomic.Int64 // bytes the clients read
	for _, conn := range dialViewers(b, srv.URL, r, clients, func(n int) { got.Add(int64(n)) }) {
		defer conn.Close()
	}
	ts := time.Now()
	move := func(i int) {
		k := i % objects
		p := pos[k]
		p = orb.Point{min(max(p[0]+(r.Float64()-0.5)*0.004, city.Min[0]), city.Max[0]), min(max(p[1]+(r.Float64()-0.5)*0.003, city.Min[1]), city.Max[1])}
		pos[k] = p
		ts = ts.Add(time.Microsecond)
		if _, _, err := tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", k)), Time: ts,
			HasPos: true, Pos: p, HasSpeed: true, SpeedKmh: 30}); err != nil {
			b.Fatal(err)
		}
	}
	burst := rate / 200 // every 5 ms
	time.Sleep(100 * time.Millisecond)
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	got0 := got.Load()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += burst {
		for j := i; j < min(i+burst, b.N); j++ {
			move(j)
		}
		// Pace to the rate; a machine too busy to keep it just runs late.
		if d := time.Until(start.Add(time.Duration(i+burst) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
	}
	// Let the writers finish (FlushInterval and the router).
	time.Sleep(100 * time.Millisecond)
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/move")
	b.ReportMetric(float64(got.Load()-got0)/float64(b.N), "B-delivered/move")
}

// dialViewers connects n websocket clients to the hub at url, each
// subscribed to vehicles on a random city viewport (as wsload picks
// them), and past its snapshot; each then reads whole batches in a
// goroutine of its own and passes read the bytes of each read, until its
// connection is closed.
func dialViewers(b *testing.B, url string, r *rand.Rand, n int, read func(int)) []*websocket.Conn {
	b.Helper()
	conns := make([]*websocket.Conn, 0, n)
	for range n {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, conn)
		w := 0.02 + r.Float64()*0.08
		min := randIn(r, orb.Bound{Min: city.Min, Max: orb.Point{city.Max[0] - w, city.Max[1] - w*0.75}})
		req := fmt.Sprintf(`{"op":"subscribe","layers":["vehicles"],"bbox":[%f,%f,%f,%f]}`, min[0], min[1], min[0]+w, min[1]+w*0.75)
		if err := conn.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := conn.ReadMessage(); err != nil { // the snapshot
			b.Fatal(err)
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				k, err := conn.NetConn().Read(buf)
				read(k)
				if err != nil {
					return
				}
			}
		}()
	}
	return conns
}
