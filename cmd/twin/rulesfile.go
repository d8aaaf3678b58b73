package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/rules"
)

// rulesFile is the rules a server was started with: --rules, or with
// --demo the bundled demo rules (modified at the epoch: any rules the twin
// already holds are newer).
type rulesFile struct {
	name     string
	data     []byte
	modified time.Time
	rs       *rules.RuleSet
}

// readRulesFile reads and parses --rules (nil without --rules or --demo).
// A file that does not parse stops the start, as it always did.
func readRulesFile(path string, isDemo bool) (*rulesFile, error) {
	f := &rulesFile{}
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		f.name, f.data, f.modified = path, b, st.ModTime()
	case isDemo:
		f.name, f.data, f.modified = "demo/rules.yaml", demo.Rules, time.Unix(0, 0)
	default:
		return nil, nil
	}
	rs, err := rules.Parse(f.name, f.data)
	if err != nil {
		return nil, err
	}
	f.rs = rs
	return f, nil
}

// rulesOffer returns the rules.FileOffer of this server: the file goes to
// PUT /api/rules through the relay (so it runs on the leader, whichever
// server that is) as a city admin named rules-file@SERVER, with the file's
// modification time as precondition (rules.ModifiedHeader): the twin takes
// it unless its rules were set after the file was modified (README,
// "Running several servers"). It retries while no server leads and
// returns once the leader answered; twin_rules_file_offers_total counts
// the outcomes.
func rulesOffer(h http.Handler, key auth.Key, clk clock.Clock, server string, log *slog.Logger, reg prometheus.Registerer) rules.FileOffer {
	offers := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_rules_file_offers_total",
		Help: "Rules files (--rules, or the demo's) offered to the twin, by outcome: taken (now the twin's rules, or already were), stale (the twin's rules were set after the file was modified), refused (invalid)"},
		[]string{"outcome"})
	for _, o := range []string{"taken", "stale", "refused"} {
		offers.WithLabelValues(o)
	}
	reg.MustRegister(offers)
	return func(ctx context.Context, name string, data []byte, modified time.Time) error {
		for {
			tok, err := key.Sign(auth.Principal{Subject: "rules-file@" + server, Role: auth.Admin, Region: auth.CityCode}, time.Minute, clk.Now())
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/api/rules", bytes.NewReader(data))
			if err != nil {
				return err
			}
			req.RemoteAddr = "127.0.0.1:0"
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set(rules.ModifiedHeader, modified.UTC().Format(time.RFC3339Nano))
			if strings.HasSuffix(strings.ToLower(name), ".json") {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK:
				offers.WithLabelValues("taken").Inc()
				log.Info("rules: file offered to the twin", "file", name, "modified", modified)
				return nil
			case http.StatusPreconditionFailed:
				offers.WithLabelValues("stale").Inc()
				log.Info("rules: file not taken: the twin's rules were set after it was modified", "file", name, "modified", modified)
				return nil
			case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusInternalServerError:
				// No leader yet (a start, a failover): try again.
			default:
				offers.WithLabelValues("refused").Inc()
				return fmt.Errorf("rules file %s refused (%d): %s", name, rec.Code, strings.TrimSpace(rec.Body.String()))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}
