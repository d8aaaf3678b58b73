package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"
)

// runFailover measures a failover of a running twin end to end, as a
// client sees it: a write on the survivor (-url) must work first (relayed
// to the leader); then the leader's process (-pid) is killed with -9 and
// the same write is sent to the survivor again and again (each as soon as
// the previous is answered, at least -every apart) until one is accepted
// (2xx). The figure is the time from the kill to that answer: the lease
// running out, the survivor taking over, and the write committed in the
// change log.
func runFailover(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.pid <= 0 || cfg.url == "" {
		return fmt.Errorf("failover: -pid (the leader's process) and -url (the survivor) are required")
	}
	c := &http.Client{Timeout: cfg.attempt}
	body := []byte(`{"type":"Feature","geometry":{"type":"Point","coordinates":[106.55,29.56]},"properties":{"kind":"patrol"}}`)
	put := func() (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, cfg.url+"/api/entities/vehicles/failover-probe", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Content-Type", "application/json")
		if cfg.token != "" {
			req.Header.Set("Authorization", "Bearer "+cfg.token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Twin-Seq"), nil
	}
	if code, _, err := put(); err != nil {
		return fmt.Errorf("failover: a write on %s before the kill: %w", cfg.url, err)
	} else if code/100 != 2 {
		return fmt.Errorf("failover: a write on %s before the kill: status %d", cfg.url, code)
	}
	p, err := os.FindProcess(cfg.pid)
	if err != nil {
		return err
	}
	killed := time.Now()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("failover: kill -9 %d: %w", cfg.pid, err)
	}
	deadline := killed.Add(cfg.duration)
	refused, failed := 0, 0
	for time.Now().Before(deadline) {
		start := time.Now()
		code, seq, err := put()
		if cfg.verbose {
			fmt.Fprintf(os.Stderr, "attempt at +%s: %d %v (%s)\n", start.Sub(killed).Round(time.Millisecond), code, err, time.Since(start).Round(time.Millisecond))
		}
		switch {
		case err == nil && code/100 == 2:
			took := time.Since(killed)
			fmt.Fprintf(out, "failover     kill -9 of pid %d -> first write accepted on %s after %s (seq %s)\n", cfg.pid, cfg.url, took.Round(time.Millisecond), seq)
			fmt.Fprintf(out, "meanwhile    %d answered 503 (no leader), %d failed otherwise; last attempt took %s\n", refused, failed, time.Since(start).Round(time.Millisecond))
			fmt.Fprintf(out, "load average %s (1, 5, 15 min)\n", loadAvg())
			return nil
		case err == nil && code == http.StatusServiceUnavailable:
			refused++
		default:
			failed++
		}
		if wait := cfg.every - time.Since(start); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	return fmt.Errorf("failover: no write accepted on %s within %s of the kill (%d refused, %d failed)", cfg.url, cfg.duration, refused, failed)
}
