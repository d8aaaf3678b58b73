package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
)

func TestParseFlagsInterspersedAndEnv(t *testing.T) {
	t.Setenv("TWIN_DB", "postgres://env")
	t.Setenv("TWIN_SPEED", "7")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	db := fs.String("db", "", "")
	speed := fs.Float64("speed", 20, "")
	demo := fs.Bool("demo", false, "")
	if err := parseFlags(fs, []string{"trace.csv", "--demo", "--speed", "40", "b.csv", "--", "--c.csv"}); err != nil {
		t.Fatal(err)
	}
	if *speed != 40 || !*demo || *db != "postgres://env" {
		t.Fatalf("flags: speed %v demo %v db %q", *speed, *demo, *db)
	}
	if got := strings.Join(fs.Args(), " "); got != "trace.csv b.csv --c.csv" {
		t.Fatalf("positional %q", got)
	}
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.Int("n", 0, "")
	if err := parseFlags(fs2, []string{"--n", "x"}); err == nil {
		t.Fatal("bad int accepted")
	}
}

func TestTokenCommandSignsWithDataKey(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "--role", "field", "--region", "500105002", "--subject", "w0001", "--data", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	words := strings.Fields(out.String())
	tok := words[len(words)-1]
	key, err := loadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := key.Parse(tok, time.Now())
	if err != nil || p.Role != auth.Field || p.Region != "500105002" || p.Subject != "w0001" {
		t.Fatalf("token: %+v %v", p, err)
	}
	if code := run(context.Background(), []string{"token", "--role", "king", "--data", dir}, &out, &errb); code != 2 {
		t.Fatalf("bad role exit %d", code)
	}
	if code := run(context.Background(), []string{"nope"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}
