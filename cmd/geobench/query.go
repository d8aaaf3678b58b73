package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citytwin/citytwin/demo"
)

// runQuery drives the target with c.clients connections for c.duration.
func runQuery(ctx context.Context, c config, w io.Writer) error {
	var dial func() (func(lon, lat float64) (int, error), func(), error)
	switch {
	case strings.HasPrefix(c.target, "resp://"):
		addr := strings.TrimPrefix(c.target, "resp://")
		dial = func() (func(lon, lat float64) (int, error), func(), error) {
			conn, err := dialRESP(addr)
			if err != nil {
				return nil, nil, err
			}
			return func(lon, lat float64) (int, error) {
				args := []string{"NEARBY", c.layer, "LIMIT", "10"}
				if c.kind == "within" {
					args[3] = "1000"
				}
				if c.ids {
					args = append(args, "IDS")
				}
				args = append(args, "POINT", ftoa(lat), ftoa(lon))
				if c.kind == "within" {
					args = append(args, "500")
				}
				n, _, err := conn.do(args...)
				return n, err
			}, func() { conn.Close() }, nil
		}
	case strings.HasPrefix(c.target, "http://"):
		base := strings.TrimRight(c.target, "/")
		dial = func() (func(lon, lat float64) (int, error), func(), error) {
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
			q := "&radius_m=50000&limit=10"
			if c.kind == "within" {
				q = "&radius_m=500&limit=1000"
			}
			if c.ids {
				q += "&format=ids"
			}
			return func(lon, lat float64) (int, error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet,
					base+"/api/nearby?layer="+c.layer+"&lon="+ftoa(lon)+"&lat="+ftoa(lat)+q, nil)
				if err != nil {
					return 0, err
				}
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				resp, err := cl.Do(req)
				if err != nil {
					return 0, err
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				return int(n), err
			}, cl.CloseIdleConnections, nil
		}
	default:
		return fmt.Errorf("-target %q: want resp://host:port or http://host:port", c.target)
	}
	if c.kind != "nearby" && c.kind != "within" {
		return fmt.Errorf("-kind %q: want nearby or within", c.kind)
	}
	box := demo.Box()
	type result struct {
		lat           []time.Duration
		bytes, errors int64
		firstErr      error
	}
	results := make([]result, c.clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(c.duration)
	for i := range c.clients {
		query, closeFn, err := dial()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closeFn()
			r := rand.New(rand.NewPCG(c.seed, uint64(i)+100))
			res := &results[i]
			for time.Now().Before(deadline) && ctx.Err() == nil {
				lon := box.Min[0] + r.Float64()*(box.Max[0]-box.Min[0])
				lat := box.Min[1] + r.Float64()*(box.Max[1]-box.Min[1])
				t0 := time.Now()
				n, err := query(lon, lat)
				d := time.Since(t0)
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
					continue
				}
				res.lat = append(res.lat, d)
				res.bytes += int64(n)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	var bytes, errs int64
	var firstErr error
	for _, r := range results {
		all = append(all, r.lat...)
		bytes += r.bytes
		errs += r.errors
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	fmt.Fprintf(w, "target       %s %s (%s, ids %v), %d clients, load average %s\n", c.target, c.kind, c.layer, c.ids, c.clients, loadAvg())
	fmt.Fprintf(w, "queries      %d (%d errors) in %s: %.0f/s, mean answer %d B\n", len(all), errs, elapsed.Round(time.Millisecond),
		float64(len(all))/elapsed.Seconds(), bytes/int64(max(len(all), 1)))
	fmt.Fprintf(w, "latency      p50 %s  p99 %s  max %s\n", pct(0.5), pct(0.99), pct(1))
	if firstErr != nil {
		fmt.Fprintf(w, "first error  %v\n", firstErr)
	}
	return nil
}

func ftoa(x float64) string { return strconv.FormatFloat(x, 'f', 7, 64) }
