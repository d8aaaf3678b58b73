package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for goose

	"github.com/citytwin/citytwin/migrations"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	db := fs.String("db", "", "PostGIS URL (required)")
	down := fs.Int("down", 0, "revert this many migrations instead of applying")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *db == "" {
		return usageError{fmt.Errorf("--db (or TWIN_DB) is required")}
	}
	conn, err := sql.Open("pgx", *db)
	if err != nil {
		return fmt.Errorf("open %s: %w", *db, err)
	}
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to the database: %w (is PostgreSQL running and the URL right?)", err)
	}
	if *down > 0 {
		if err := migrations.Down(ctx, conn, *down); err != nil {
			return err
		}
	} else if err := migrations.Up(ctx, conn); err != nil {
		return err
	}
	v, err := migrations.Version(ctx, conn)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema at version %d\n", v)
	return nil
}
