package wshub

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRouteFlush is the hub's own work per change, in lockstep and
// on one thread, so that a busy machine changes neither what is done nor
// what is counted: 200 websocket clients over loopback on random city
// viewports (as wsload picks them), vehicle moves routed a round at a
// time (200 moves: 10 ms at 20,000 a second, the default FlushInterval;
// 500: 25 ms) and each round flushed as the flusher does. It reports the CPU time of the benchmark's thread per
// move (cpu-ns/move: routing, encoding, queueing, framing and the write
// syscalls with the loopback delivery they do in the kernel), not the
// clients' reads, which run on other threads.
func BenchmarkRouteFlush(b *testing.B) {
	for _, round := range []int{200, 500} {
		b.Run(fmt.Sprintf("round=%d", round), func(b *testing.B) { benchRouteFlush(b, round) })
	}
}

func benchRouteFlush(b *testing.B, round int) {
	const clients, objects = 200, 2000
	fx := newRouteFixture(b, 0, objects)
	h := fx.h
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := rand.New(rand.NewPCG(1, 2))
	conns := dialViewers(b, srv.URL, r, clients, func(int) {})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond) // the writers are back waiting
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sc flushScratch
	var list []*client
	base := uint64(1 << 20) // after every snapshot's seq
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(rusageThread, &ru0)
	b.ResetTimer()
	for i := 0; i < b.N; i += round {
		h.mu.RLock()
		for j := i; j < min(i+round, b.N); j++ {
			c := fx.changes[j%len(fx.changes)]
			c.Seq = base + uint64(j)
			h.route(&c)
		}
		h.mu.RUnlock()
		h.handOff()
		h.flushMu.Lock()
		list = append(list[:0], h.flushing...)
		h.flushing = h.flushing[:0]
		h.flushMu.Unlock()
		for _, c := range list {
			c.flushTurn(&sc)
		}
	}
	b.StopTimer()
	_ = syscall.Getrusage(rusageThread, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/move")
}

// rusageThread is Linux's RUSAGE_THREAD: the calling thread's usage.
const rusageThread = 1
