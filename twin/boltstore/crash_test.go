package boltstore_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/paulmach/orb"
	"go.uber.org/goleak"
)

const batchSize = 200

func batch(i int) []*twin.Feature {
	fs := make([]*twin.Feature, batchSize)
	for j := range fs {
		fs[j] = &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprintf("b%d-%d", i, j)), Version: uint64(i + 1),
			Geometry: orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29}}},
			Props:    twin.NewProps(map[string]any{"batch": float64(i), "pad": strings.Repeat("x", 200)})}
	}
	return fs
}

// TestMain lets the test binary act as the writer process that the crash
// test kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("BOLTSTORE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}

// crashChild writes batches forever, printing each batch number after its
// Upsert (or, with BOLTSTORE_CRASH_WRITEBATCH set, its WriteBatch of the
// features, samplesPerBatch samples and meta "batch") returned (committed),
// until killed.
func crashChild(dir string) {
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	wb := os.Getenv("BOLTSTORE_CRASH_WRITEBATCH") != ""
	for i := 0; ; i++ {
		if wb {
			err = s.WriteBatch(context.Background(), nil, batch(i), samples(i), "batch", []byte(strconv.Itoa(i)))
		} else {
			err = s.Upsert(context.Background(), batch(i))
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", i)
	}
}

const samplesPerBatch = 50

var crashT0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func samples(i int) []twin.Sample {
	ss := make([]twin.Sample, samplesPerBatch)
	for j := range ss {
		ss[j] = twin.Sample{ID: twin.NewID(twin.Vehicles, fmt.Sprint("v", j%5)),
			Time: crashT0.Add(time.Duration(i*samplesPerBatch+j) * 10 * time.Millisecond), HasSpeed: true, SpeedKmh: float64(i)}
	}
	return ss
}

// TestKill9 kills a writing process with SIGKILL and checks that the file
// reopens with every committed batch whole and no partial batch.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	last, s, perBatch := kill9(t, dir, "BOLTSTORE_CRASH_CHILD="+dir)
	defer s.Close()
	t.Logf("killed after %d reported batches; %d batches on disk", last+1, len(perBatch))
	// The reopened store is writable.
	if err := s.Upsert(context.Background(), batch(last+1000)); err != nil {
		t.Fatal(err)
	}
}

// TestKill9WriteBatch: the same with WriteBatch, as twin/writer flushes:
// every reported batch has its features, samples and meta; no batch is
// partial, and meta names the newest batch on disk.
func TestKill9WriteBatch(t *testing.T) {
	dir := t.TempDir()
	last, s, perBatch := kill9(t, dir, "BOLTSTORE_CRASH_CHILD="+dir, "BOLTSTORE_CRASH_WRITEBATCH=1")
	defer s.Close()
	ctx := context.Background()
	newest := 0
	for b := range perBatch {
		newest = max(newest, b)
	}
	m, err := s.GetMeta(ctx, "batch")
	if err != nil || string(m) != strconv.Itoa(newest) {
		t.Fatalf("meta batch %q (%v), newest batch on disk %d", m, err, newest)
	}
	n := 0
	for j := 0; j < 5; j++ {
		h, err := s.History(ctx, twin.NewID(twin.Vehicles, fmt.Sprint("v", j)), time.Time{}, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n += len(h)
		for _, sm := range h {
			if _, ok := perBatch[int(sm.SpeedKmh)]; !ok {
				t.Fatalf("sample of batch %v whose features are not on disk", sm.SpeedKmh)
			}
		}
	}
	if want := len(perBatch) * samplesPerBatch; n != want {
		t.Fatalf("%d samples on disk, want %d for %d batches", n, want, len(perBatch))
	}
	t.Logf("killed after %d reported batches; %d batches on disk", last+1, len(perBatch))
}

// kill9 runs the crash child with env, SIGKILLs it after 30 committed
// batches, reopens the store and checks every reported batch is whole and
// none is partial. It returns the last reported batch, the reopened store
// and the features per batch found.
func kill9(t *testing.T, dir string, env ...string) (int, *boltstore.Store, map[int]int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		n, ok := strings.CutPrefix(line, "committed ")
		if !ok {
			t.Fatalf("child: %s", line)
		}
		last, _ = strconv.Atoi(n)
		if last >= 30 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // batches committed before the signal landed
		if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			last, _ = strconv.Atoi(n)
		}
	}
	_ = cmd.Wait()
	if last < 30 {
		t.Fatalf("child committed only %d batches", last)
	}

	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	perBatch := map[int]int{}
	err = s.Load(context.Background(), func(f *twin.Feature) error {
		b, _ := twin.ToFloat(f.Props.Get("batch"))
		perBatch[int(b)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= last; i++ {
		if perBatch[i] != batchSize {
			t.Fatalf("committed batch %d has %d of %d features", i, perBatch[i], batchSize)
		}
	}
	for i, n := range perBatch {
		if n != batchSize {
			t.Fatalf("batch %d is partial: %d of %d", i, n, batchSize)
		}
	}
	return last, s, perBatch
}

// TestGarbageTail appends random bytes to the file: bbolt never reads past
// its high-water mark, so Open succeeds with all data and keeps working.
func TestGarbageTail(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.Upsert(ctx, batch(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "twin.db"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 10000) // not a page multiple
	_, _ = rand.Read(junk)
	if _, err := f.Write(junk); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatalf("open with garbage tail: %v", err)
	}
	defer s.Close()
	n := 0
	if err := s.Load(ctx, func(*twin.Feature) error { n++; return nil }); err != nil || n != 5*batchSize {
		t.Fatalf("load: %d, %v", n, err)
	}
	for i := 5; i < 40; i++ { // grows the file over the garbage
		if err := s.Upsert(ctx, batch(i)); err != nil {
			t.Fatal(err)
		}
	}
	n = 0
	if err := s.Load(ctx, func(*twin.Feature) error { n++; return nil }); err != nil || n != 40*batchSize {
		t.Fatalf("load after growth: %d, %v", n, err)
	}
}

// TestLocked: a second Open of the same directory fails with a clear error
// instead of hanging.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOLTSTORE_CRASH_CHILD="+dir)
	b, _ := cmd.CombinedOutput()
	if !strings.Contains(string(b), "locked by another process") {
		t.Fatalf("second process: %s", b)
	}
}
