package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// waitSteps are the thresholds of Kind.Over.
var waitSteps = [...]time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}

// Kind is what the trace shows of one kind of goroutine.
type Kind struct {
	Name            string
	Ran, Waited     time.Duration // running; runnable, waiting for a P
	Waits           int           // times it went from runnable to running
	MaxWait, MaxRun time.Duration
	Over            [len(waitSteps)]int // waits longer than each of waitSteps
}

// Run is one stretch a goroutine ran without a break.
type Run struct {
	Kind  string
	Took  time.Duration
	Until string // the state it left running for, and where
}

// Stats is a trace's summary.
type Stats struct {
	Span  time.Duration // first to last event
	Kinds []*Kind       // by time run, most first
	Long  []Run         // runs longer than the threshold, in trace order
}

// ours marks the functions a goroutine is named by.
var ours = []string{"citytwin", "mochi-mqtt", "nats-io", "bbolt", "net/http"}

func kindOf(fn string) bool {
	for _, s := range ours {
		if strings.Contains(fn, s) {
			return true
		}
	}
	return false
}

// Read summarises the trace in r; runs longer than long are listed. A
// damaged trace is an error, never a panic (the parser is x/exp's).
func Read(r io.Reader, long time.Duration) (st *Stats, err error) {
	defer func() {
		if p := recover(); p != nil {
			st, err = nil, fmt.Errorf("damaged trace: %v", p)
		}
	}()
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a Go runtime trace: %w", err)
	}
	name := map[trace.GoID]string{}
	runnable := map[trace.GoID]trace.Time{}
	running := map[trace.GoID]trace.Time{}
	kinds := map[string]*Kind{}
	st = &Stats{}
	var first, last trace.Time
	kind := func(g trace.GoID) *Kind {
		n := name[g]
		if n == "" {
			n = "(unnamed)"
		}
		k := kinds[n]
		if k == nil {
			k = &Kind{Name: n}
			kinds[n] = k
		}
		return k
	}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the trace: %w", err)
		}
		t := ev.Time()
		if first == 0 {
			first = t
		}
		last = t
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		tx := ev.StateTransition()
		if tx.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		g := tx.Resource.Goroutine()
		if name[g] == "" {
			for fr := range tx.Stack.Frames() {
				if kindOf(fr.Func) {
					name[g] = fr.Func // the outermost one wins: a goroutine's own function
				}
			}
		}
		from, to := tx.Goroutine()
		switch to {
		case trace.GoRunnable:
			runnable[g] = t
		case trace.GoRunning:
			if t0, ok := runnable[g]; ok {
				w := time.Duration(t - t0)
				k := kind(g)
				k.Waited += w
				k.Waits++
				k.MaxWait = max(k.MaxWait, w)
				for i, s := range waitSteps {
					if w > s {
						k.Over[i]++
					}
				}
				delete(runnable, g)
			}
			running[g] = t
		}
		if from == trace.GoRunning {
			if t0, ok := running[g]; ok {
				d := time.Duration(t - t0)
				k := kind(g)
				k.Ran += d
				k.MaxRun = max(k.MaxRun, d)
				if d > long {
					var where []string
					for fr := range tx.Stack.Frames() {
						if len(where) == 4 {
							break
						}
						where = append(where, fr.Func)
					}
					st.Long = append(st.Long, Run{Kind: k.Name, Took: d, Until: to.String() + ": " + strings.Join(where, " < ")})
				}
				delete(running, g)
			}
		}
	}
	st.Span = time.Duration(last - first)
	for _, k := range kinds {
		st.Kinds = append(st.Kinds, k)
	}
	slices.SortFunc(st.Kinds, func(a, b *Kind) int {
		return cmp.Or(cmp.Compare(b.Ran, a.Ran), strings.Compare(a.Name, b.Name))
	})
	return st, nil
}

// Print writes the summary: the top kinds by time run, then the long runs.
func (s *Stats) Print(w io.Writer, top int) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }
	fmt.Fprintf(w, "trace of %s ms; per kind of goroutine: ms run, ms waited runnable, waits, longest wait and run (ms), waits over 1/2/5/10/20/50 ms\n", ms(s.Span))
	for i, k := range s.Kinds {
		if i == top {
			break
		}
		over := make([]string, len(k.Over))
		for j, n := range k.Over {
			over[j] = fmt.Sprint(n)
		}
		fmt.Fprintf(w, "%-80s %8s %8s %6d %6s %6s  %s\n", short(k.Name, 80), ms(k.Ran), ms(k.Waited), k.Waits, ms(k.MaxWait), ms(k.MaxRun), strings.Join(over, "/"))
	}
	fmt.Fprintf(w, "%d long runs\n", len(s.Long))
	for _, r := range s.Long {
		fmt.Fprintf(w, "%6s ms %s -> %s\n", ms(r.Took), short(r.Kind, 70), r.Until)
	}
}

// short keeps the end of a long name, where the function is.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}
