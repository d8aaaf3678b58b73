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
			Props:    map[string]any{"batch": float64(i), "pad": strings.Repeat("x", 200)}}
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
// Upsert returned (committed), until killed.
func crashChild(dir string) {
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		if err := s.Upsert(context.Background(), batch(i)); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", i)
	}
}

// TestKill9 kills a writing process with SIGKILL and checks that the file
// reopens with every committed batch whole and no partial batch.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOLTSTORE_CRASH_CHILD="+dir)
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
	defer s.Close()
	perBatch := map[int]int{}
	err = s.Load(context.Background(), func(f *twin.Feature) error {
		b, _ := twin.ToFloat(f.Props["batch"])
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
	t.Logf("killed after %d reported batches; %d batches on disk", last+1, len(perBatch))
	// The reopened store is writable.
	if err := s.Upsert(context.Background(), batch(last+1000)); err != nil {
		t.Fatal(err)
	}
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
