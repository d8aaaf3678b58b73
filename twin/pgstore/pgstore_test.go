package pgstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/pgstore"
	"github.com/citytwin/citytwin/twin/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) twin.Store {
		s, err := pgstore.Open(context.Background(), pgtest.New(t), pgstore.Options{Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	_, err := pgstore.Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("database down: %v", err)
	}
	_, err = pgstore.Open(ctx, pgtest.New(t), pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "twin migrate") {
		t.Fatalf("schema missing: %v", err)
	}
	s, err := pgstore.Open(ctx, pgtest.Migrated(t), pgstore.Options{})
	if err != nil {
		t.Fatalf("migrated database: %v", err)
	}
	s.Close()
}

// A source id moves to the newest object claiming it instead of failing the
// batch on the unique index.
func TestSourceMoves(t *testing.T) {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgtest.Migrated(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := &twin.Feature{ID: twin.NewID(twin.Buildings, "a"), Version: 1}
	a.SetSource("osm:w1")
	b := &twin.Feature{ID: twin.NewID(twin.Buildings, "b"), Version: 1}
	b.SetSource("osm:w1")
	if err := s.Upsert(ctx, []*twin.Feature{a}); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, []*twin.Feature{b}); err != nil {
		t.Fatalf("second object with the same source: %v", err)
	}
	ga, _ := s.Get(ctx, a.ID)
	gb, _ := s.Get(ctx, b.ID)
	if ga == nil || gb == nil || ga.Source() != "" || gb.Source() != "osm:w1" {
		t.Fatalf("sources: %+v %+v", ga, gb)
	}
}
