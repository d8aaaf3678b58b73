package pgtest

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
)

// TestClusterRestart: a cluster of the test's own has PostGIS, keeps a
// committed row across a fast and an immediate (crash) restart, and leaves
// neither its directory nor a process behind.
func TestClusterRestart(t *testing.T) {
	var c *Cluster
	t.Run("restarts", func(t *testing.T) {
		c = StartCluster(t)
		db, err := sql.Open("pgx", c.New(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE p (g geometry); INSERT INTO p VALUES (ST_MakePoint(106.5, 29.5))`); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{Fast, Immediate} {
			c.Restart(t, mode)
			var wkt string
			// The pool's connection died with the old server: database/sql
			// retries a query on a fresh one (driver.ErrBadConn).
			if err := db.QueryRowContext(ctx, `SELECT ST_AsText(g) FROM p`).Scan(&wkt); err != nil {
				t.Fatalf("after %s restart: %v", mode, err)
			}
			if wkt != "POINT(106.5 29.5)" {
				t.Fatalf("after %s restart: %q", mode, wkt)
			}
		}
		if !strings.Contains(c.Log(), "redo") {
			t.Errorf("no WAL recovery after the immediate restart in the server log:\n%s", c.Log())
		}
	})
	if c == nil {
		return
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still there after the cleanup (%v)", c.dir, err)
	}
	if pids := postmastersIn(t, c.dir); len(pids) > 0 {
		t.Errorf("postgres processes of the cluster still running after the cleanup: %v", pids)
	}
}

// postmastersIn lists the pids of processes whose command line names dir.
func postmastersIn(t *testing.T, dir string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), dir) {
			out = append(out, e.Name())
		}
	}
	return out
}
