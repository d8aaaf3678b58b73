package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

func TestNewHasPostGIS(t *testing.T) {
	u := New(t)
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var wkt string
	if err := db.QueryRowContext(context.Background(), "SELECT ST_AsText(ST_MakePoint(106.5, 29.5))").Scan(&wkt); err != nil {
		t.Fatal(err)
	}
	if wkt != "POINT(106.5 29.5)" {
		t.Fatalf("got %q", wkt)
	}
}
