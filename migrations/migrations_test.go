package migrations_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/migrations"
	_ "github.com/jackc/pgx/v5/stdlib"
)

func tables(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name IN ('regions','grids','roads','bridges','rivers',
		'buildings','devices','vehicles','workers','incidents','alerts','telemetry','meta','quarantine','tasks','directives','indicators','indicator_objects','timeline_changes','timeline_checkpoints','timeline_versions','settings')`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("pgx", pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for round := 0; round < 2; round++ {
		if err := migrations.Up(ctx, db); err != nil {
			t.Fatalf("round %d up: %v", round, err)
		}
		if err := migrations.Up(ctx, db); err != nil { // idempotent
			t.Fatalf("round %d second up: %v", round, err)
		}
		v, err := migrations.Version(ctx, db)
		if err != nil || v != 8 {
			t.Fatalf("version = %d, %v; want 8", v, err)
		}
		if n := tables(t, db); n != 22 {
			t.Fatalf("round %d: %d tables after up, want 22", round, n)
		}
		// The tasks layer's typed columns follow props too.
		if _, err := db.Exec(`INSERT INTO tasks (name, version, props) VALUES ('t1', 1,
			'{"kind":"rectification","state":"issued","due":"2026-01-02T03:04:05Z","subject":"buildings/b1"}')`); err != nil {
			t.Fatal(err)
		}
		var kind, tstate string
		var due sql.NullTime
		if err := db.QueryRow(`SELECT kind, state, due FROM tasks WHERE name = 't1'`).Scan(&kind, &tstate, &due); err != nil ||
			kind != "rectification" || tstate != "issued" || !due.Valid {
			t.Fatalf("tasks typed columns: %q %q %v %v", kind, tstate, due, err)
		}
		// Typed columns follow props.
		if _, err := db.Exec(`INSERT INTO incidents (name, version, props) VALUES ('i1', 1,
			'{"state":"dispatched","type":"fire","sla":{"accept_by":"2026-01-02T03:04:05Z","arrive_by":"junk"}}')`); err != nil {
			t.Fatal(err)
		}
		var state, typ string
		var acceptBy sql.NullTime
		var arriveBy sql.NullTime
		if err := db.QueryRow(`SELECT state, type, accept_by, arrive_by FROM incidents WHERE name = 'i1'`).Scan(&state, &typ, &acceptBy, &arriveBy); err != nil {
			t.Fatal(err)
		}
		if state != "dispatched" || typ != "fire" || !acceptBy.Valid || acceptBy.Time.Unix() != 1767323045 || arriveBy.Valid {
			t.Fatalf("typed columns: %q %q %v %v", state, typ, acceptBy, arriveBy)
		}
		if _, err := db.Exec(`UPDATE incidents SET props = '{"state":"closed"}' WHERE name = 'i1'`); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT state FROM incidents WHERE name = 'i1'`).Scan(&state); err != nil || state != "closed" {
			t.Fatalf("state after update = %q, %v", state, err)
		}
		if err := migrations.Down(ctx, db, -1); err != nil {
			t.Fatalf("round %d down: %v", round, err)
		}
		if n := tables(t, db); n != 0 {
			t.Fatalf("round %d: %d tables after down, want 0", round, n)
		}
		v, err = migrations.Version(ctx, db)
		if err != nil || v != 0 {
			t.Fatalf("version after down = %d, %v", v, err)
		}
	}
	// Down by steps beyond what is applied is fine.
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Down(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	if v, _ := migrations.Version(ctx, db); v != 7 {
		t.Fatalf("after down 1: version %d", v)
	}
	if err := migrations.Down(ctx, db, 10); err != nil {
		t.Fatal(err)
	}
}
