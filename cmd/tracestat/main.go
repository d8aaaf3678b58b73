// Command tracestat reads a Go runtime trace (go tool trace's input, e.g.
// from /debug/pprof/trace?seconds=2, or BENCH_TRACE in
// scripts/bench-e2e.sh) and prints, per kind of goroutine, how long it
// ran and how long it waited runnable for a processor, and every run
// longer than -long.
//
// Why: on a server with one core, a delta's latency is mostly time spent
// waiting for the processor, not working, and a CPU profile does not show
// waiting. This names who waits, how often over 1/2/5/10/20/50 ms, and
// which runs (a store transaction, a flush) held the core meanwhile (issue
// 16 goal 6). A goroutine's kind is the innermost function of ours (or of
// a library we run: mochi, NATS, bbolt, net/http) in the stack of its
// first state change the trace records.
//
//	curl -s 'http://127.0.0.1:6060/debug/pprof/trace?seconds=2' > trace.out
//	go run ./cmd/tracestat -long 4ms trace.out
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	long := flag.Duration("long", 4*time.Millisecond, "print every run longer than this")
	top := flag.Int("top", 30, "kinds of goroutine to print, by time run")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tracestat [-long D] [-top N] TRACE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracestat:", err)
		os.Exit(1)
	}
	defer f.Close()
	st, err := Read(f, *long)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracestat:", err)
		os.Exit(1)
	}
	st.Print(os.Stdout, *top)
}
