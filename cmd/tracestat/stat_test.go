package main

import (
	"bytes"
	"runtime"
	"runtime/trace"
	"strings"
	"testing"
)

// spin works until stop is closed, checking it now and then.
func spin(stop <-chan struct{}, done chan<- struct{}) {
	x := 0
	for i := 0; ; i++ {
		x += i
		if i%1024 == 0 {
			select {
			case <-stop:
				done <- struct{}{}
				return
			default:
			}
		}
	}
}

// wake waits on c once.
func wake(c <-chan struct{}, done chan<- struct{}) {
	<-c
	done <- struct{}{}
}

// recorded runs a spinner and a goroutine woken by a channel under
// runtime/trace and returns the trace.
func recorded(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("tracing unavailable: %v", err)
	}
	stop, done := make(chan struct{}), make(chan struct{}, 2)
	c := make(chan struct{})
	go spin(stop, done)
	go wake(c, done)
	for range 100 {
		runtime.Gosched()
	}
	c <- struct{}{}
	close(stop)
	<-done
	<-done
	trace.Stop()
	return buf.Bytes()
}

// TestRead: the goroutines of a real trace are named by their own
// function, the woken one has waited runnable at least once, every run is
// listed with -long 0, and the summary prints them.
func TestRead(t *testing.T) {
	st, err := Read(bytes.NewReader(recorded(t)), 0)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*Kind{}
	for _, k := range st.Kinds {
		by[k.Name] = k
	}
	s, w := by["github.com/citytwin/citytwin/cmd/tracestat.spin"], by["github.com/citytwin/citytwin/cmd/tracestat.wake"]
	if s == nil || w == nil {
		names := []string{}
		for n := range by {
			names = append(names, n)
		}
		t.Fatalf("spin or wake not among the kinds: %v", names)
	}
	if s.Ran <= 0 || w.Waits < 1 {
		t.Errorf("spin ran %v; wake waited %d times, want > 0 and >= 1", s.Ran, w.Waits)
	}
	runs := 0
	for _, r := range st.Long {
		if r.Kind == s.Name {
			runs++
		}
	}
	if runs == 0 {
		t.Error("no run of spin listed with -long 0")
	}
	var out bytes.Buffer
	st.Print(&out, 100)
	if !strings.Contains(out.String(), "tracestat.spin") || !strings.Contains(out.String(), "long runs") {
		t.Errorf("summary lacks spin or the long runs:\n%s", out.String())
	}
}

// TestReadRefusesOther: what is not a trace is an error.
func TestReadRefusesOther(t *testing.T) {
	for _, in := range []string{"", "hello", "go 1.22 trace\x00\x00\x00", "\x00\xff"} {
		if _, err := Read(strings.NewReader(in), 0); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// FuzzRead: damaged traces (a real one cut or flipped anywhere) give an
// error or a summary, never a panic.
func FuzzRead(f *testing.F) {
	f.Add([]byte("go 1.23 trace\x00\x00\x00"))
	var buf bytes.Buffer
	if trace.Start(&buf) == nil {
		go func() {}()
		runtime.Gosched()
		trace.Stop()
		b := buf.Bytes()
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Read(bytes.NewReader(b), 0)
		if err == nil {
			st.Print(&bytes.Buffer{}, 10)
		}
	})
}
