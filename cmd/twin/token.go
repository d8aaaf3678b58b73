package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/citytwin/citytwin/auth"
)

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "operator", "role: operator, planner, field or admin")
	region := fs.String("region", auth.CityCode, "region code the token is scoped to (500000 = whole city)")
	subject := fs.String("subject", "", "who the token is for (recorded as actor); default role@region")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	keyFile := fs.String("auth-key", "", "signing secret file (default: DATA/auth.key, as twin serve uses)")
	data := fs.String("data", "./var", "data directory (where serve keeps a generated key)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key, err := loadKey(*keyFile, *data)
	if err != nil {
		return err
	}
	sub := *subject
	if sub == "" {
		sub = *role + "@" + *region
	}
	tok, err := key.Sign(auth.Principal{Subject: sub, Role: auth.Role(*role), Region: *region}, *ttl, time.Now())
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "token for %s (role %s, region %s, valid %s):\n%s\n", sub, *role, *region, *ttl, tok)
	return nil
}

// loadKey reads --auth-key, or the key serve generated in the data dir.
func loadKey(keyFile, data string) (auth.Key, error) {
	if keyFile != "" {
		return auth.LoadKey(keyFile)
	}
	return auth.LoadOrCreateKey(filepath.Join(data, "auth.key"))
}
