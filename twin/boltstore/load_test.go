package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/storetest"
)

// TestLoadManyInOrder: a load spanning several parallel decoding waves and
// two layers returns every object once, equal to what was stored, layer by
// layer in key order; an error from fn stops it and comes back.
func TestLoadManyInOrder(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 11000
	bs := buildings(n, 3)
	for i, f := range bs {
		f.ID.Name = fmt.Sprintf("b%06d", i)
		f.Props.Set("levels", float64(i%7))
		f.Props.Set("owners", []any{fmt.Sprint("person-", i%13)})
	}
	ds := buildings(3, 1)
	for i, f := range ds {
		f.ID = twin.NewID(twin.Devices, fmt.Sprint("d", i))
	}
	if err := s.Upsert(ctx, append(bs, ds...)); err != nil {
		t.Fatal(err)
	}
	var got []*twin.Feature
	if err := s.Load(ctx, func(f *twin.Feature) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n+3 {
		t.Fatalf("loaded %d, want %d", len(got), n+3)
	}
	for i, f := range bs {
		if err := storetest.Equal(got[i], f); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	for i, f := range ds {
		if err := storetest.Equal(got[n+i], f); err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
	}
	stop := errors.New("stop")
	seen := 0
	err = s.Load(ctx, func(*twin.Feature) error {
		if seen++; seen == 5000 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 5000 {
		t.Fatalf("stop: %v after %d", err, seen)
	}
}
