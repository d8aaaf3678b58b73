package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/internal/promtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
)

// TestCorruptRecordQuarantined (issue 11 item 9, in the style of
// prometheus' WAL repair tests): bytes of one stored record's value are
// flipped on disk (found by its content; bbolt's page structure is left
// intact, as a bad sector inside a record or a bug in an encoder would).
// The store still loads every other object, moves the bad record, raw
// bytes kept, to its quarantine, counts it, and the next load is clean.
func TestCorruptRecordQuarantined(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var fs []*twin.Feature
	for i := 0; i < 300; i++ {
		note := fmt.Sprintf("ordinary-%d", i)
		if i == 137 {
			note = "MARKER-corrupt-me"
		}
		fs = append(fs, &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprintf("b%03d", i)), Version: 1,
			Geometry: orb.Point{106.5, 29.5}, Props: twin.NewProps(map[string]any{"note": note})})
	}
	if err := st.Upsert(ctx, fs); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Flip the record's props into garbage (bytes that are not UTF-8), in place.
	path := filepath.Join(dir, "twin.db")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte(`MARKER-corrupt-me`)
	at := bytes.Index(raw, marker)
	if at < 0 || bytes.Count(raw, marker) != 1 {
		t.Fatalf("marker found %d times", bytes.Count(raw, marker))
	}
	for i := range marker {
		raw[at+i] ^= 0xA5
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	st, err = boltstore.Open(dir, boltstore.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bad := twin.NewID(twin.Buildings, "b137")
	load := func() map[twin.ID]bool {
		got := map[twin.ID]bool{}
		if err := st.Load(ctx, func(f *twin.Feature) error { got[f.ID] = true; return nil }); err != nil {
			t.Fatalf("load with a corrupt record: %v", err)
		}
		return got
	}
	got := load()
	if len(got) != len(fs)-1 || got[bad] {
		t.Fatalf("loaded %d objects (bad one loaded: %v), want %d without it", len(got), got[bad], len(fs)-1)
	}
	qs, err := st.Quarantined(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Kind != twin.QuarantineLoad || qs[0].ID != bad || !strings.Contains(qs[0].Err, "decode") ||
		!bytes.Contains(qs[0].Data, []byte{'M' ^ 0xA5, 'A' ^ 0xA5}) {
		t.Fatalf("quarantine %+v", qs)
	}
	if v := promtest.Value(t, reg, "twin_store_corrupt_records_total"); v != 1 {
		t.Fatalf("corrupt_records_total = %v", v)
	}
	// Moved, not copied: the next start is clean.
	if got := load(); len(got) != len(fs)-1 {
		t.Fatalf("second load: %d objects", len(got))
	}
	if qs, _ := st.Quarantined(ctx, 0); len(qs) != 1 {
		t.Fatalf("second load quarantined again: %d records", len(qs))
	}
	if _, err := st.Get(ctx, bad); err == nil {
		t.Fatal("the corrupt record is still readable by Get")
	}
}

// TestDamagedPagesFailClearly: when bbolt's own structure is damaged (both
// meta pages overwritten), Open fails with a message naming the file and
// how to check and recover it, instead of an opaque error or a crash.
func TestDamagedPagesFailClearly(t *testing.T) {
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Upsert(context.Background(), batch(0)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	path := filepath.Join(dir, "twin.db")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := max(os.Getpagesize(), boltstore.PageSize) // a file's two meta pages are its first two
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 2*page), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = boltstore.Open(dir, boltstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "bbolt check "+path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open of a damaged file: %v", err)
	}
	t.Log(err)
}
