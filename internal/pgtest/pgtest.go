// Package pgtest gives tests a fresh PostGIS database of their own, created
// on the server named by TWIN_TEST_DB and dropped when the test ends, so
// tests against real PostGIS run in parallel without sharing state. A test
// that stops or restarts PostgreSQL itself starts a server of its own
// instead (StartCluster).
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/migrations"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// DefaultAdminURL is used when TWIN_TEST_DB is unset: the local server with
// trust auth, as set up by scripts/ensure-postgis.sh.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the URL of the server tests create databases on.
func AdminURL() string {
	if u := os.Getenv("TWIN_TEST_DB"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// New creates a database named twin_test_<random> with PostGIS enabled and
// returns its URL; t.Cleanup drops it (terminating leftover connections).
// It fails the test, with the fix, when the server is down or lacks PostGIS.
func New(t testing.TB) string {
	t.Helper()
	return create(t, AdminURL(), true)
}

// New creates a database with PostGIS enabled in the cluster and returns
// its URL. It is not dropped: the cluster goes away whole.
func (c *Cluster) New(t testing.TB) string {
	t.Helper()
	return create(t, c.AdminURL(), false)
}

// create makes a twin_test_<random> database with PostGIS on the server
// of admin, dropped at t.Cleanup when drop is set.
func create(t testing.TB, admin string, drop bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adb, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("pgtest: open %s: %v", redact(admin), err)
	}
	defer adb.Close()
	if err := adb.PingContext(ctx); err != nil {
		t.Fatalf("pgtest: PostgreSQL at %s is not reachable (%v); start it, set TWIN_TEST_DB, or run make test", redact(admin), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "twin_test_" + hex.EncodeToString(b[:])
	if _, err := adb.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if !drop {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", admin)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse TWIN_TEST_DB: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatalf("pgtest: open %s: %v", name, err)
	}
	defer db.Close()
	var avail bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis')").Scan(&avail); err != nil {
		t.Fatalf("pgtest: check postgis: %v", err)
	}
	if !avail {
		t.Fatalf("pgtest: the postgis extension is not available on %s; run make test, which installs postgresql-15-postgis-3 (or apt-get install postgresql-<major>-postgis-3)", redact(admin))
	}
	if _, err := db.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS postgis"); err != nil {
		t.Fatalf("pgtest: create extension postgis: %v", err)
	}
	return dbURL
}

// Migrated is New followed by migrations.Up: a database with the twin schema.
func Migrated(t testing.TB) string {
	t.Helper()
	u := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return u
}

// redact hides a password in a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.TrimSpace(u.String())
}
