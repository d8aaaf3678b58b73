package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"

	"github.com/citytwin/citytwin/demo"
	"github.com/citytwin/citytwin/twin"
)

// runLoad SETs the objects into the peer and reports its memory.
func runLoad(ctx context.Context, c config, w io.Writer) error {
	var fs []*twin.Feature
	what := ""
	if c.points > 0 {
		l, err := twin.ParseLayer(c.layer)
		if err != nil {
			return err
		}
		fs, what = demo.Points(l, c.points, c.seed), fmt.Sprintf("%d %s points", c.points, l)
	} else {
		city, err := demo.Generate(demo.Options{Scale: c.scale})
		if err != nil {
			return err
		}
		fs, what = city.All(), fmt.Sprintf("the demo city at scale %d", c.scale)
	}
	conn, err := dialRESP(c.resp)
	if err != nil {
		return err
	}
	defer conn.Close()
	t0 := time.Now()
	const batch = 1000
	for i := 0; i < len(fs); i += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(i+batch, len(fs))
		for _, f := range fs[i:end] {
			args, err := setArgs(f)
			if err != nil {
				return err
			}
			conn.send(args...)
		}
		if err := conn.flush(); err != nil {
			return err
		}
		for j := i; j < end; j++ {
			if _, _, err := conn.read(); err != nil {
				return fmt.Errorf("SET %s: %w", fs[j].ID, err)
			}
		}
	}
	took := time.Since(t0)
	fmt.Fprintf(w, "set          %d objects (%s) in %s (%.0f/s)\n", len(fs), what, took.Round(time.Millisecond), float64(len(fs))/took.Seconds())
	fs = nil
	if _, _, err := conn.do("OUTPUT", "json"); err != nil {
		return err
	}
	if _, _, err := conn.do("GC"); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the peer's scavenger return what GC freed
	_, js, err := conn.do("SERVER")
	if err != nil {
		return err
	}
	var st struct {
		Stats struct {
			Heap    int64 `json:"heap_size"`
			Objects int64 `json:"num_objects"`
			Points  int64 `json:"num_points"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return fmt.Errorf("SERVER: %w", err)
	}
	n := max(st.Stats.Objects, 1)
	fmt.Fprintf(w, "peer heap    %d MB (heap_size) for %d objects (%d points): %d B/object, load average %s\n",
		st.Stats.Heap>>20, st.Stats.Objects, st.Stats.Points, st.Stats.Heap/n, loadAvg())
	if c.pid > 0 {
		rss, anon := procStatus(c.pid, "VmRSS"), procStatus(c.pid, "RssAnon")
		fmt.Fprintf(w, "peer rss     %d MB, anonymous %d MB: %d B/object (anonymous)\n", rss>>20, anon>>20, anon/n)
	}
	return nil
}

// setArgs is the SET command of one object: every prop a FIELD.
func setArgs(f *twin.Feature) ([]string, error) {
	args := []string{"SET", string(f.ID.Layer), f.ID.Name}
	for _, k := range f.Props.Keys() {
		v := f.Props.Get(k)
		var s string
		switch x := v.(type) {
		case nil:
			continue
		case string:
			s = x
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		case int:
			s = strconv.Itoa(x)
		case bool:
			s = strconv.FormatBool(x)
		default:
			b, err := json.Marshal(x)
			if err != nil {
				return nil, fmt.Errorf("%s: prop %s: %w", f.ID, k, err)
			}
			s = string(b)
		}
		args = append(args, "FIELD", k, s)
	}
	switch g := f.Geometry.(type) {
	case nil:
		args = append(args, "STRING", "")
	case orb.Point:
		args = append(args, "POINT", strconv.FormatFloat(g[1], 'f', -1, 64), strconv.FormatFloat(g[0], 'f', -1, 64))
	default:
		b, err := geojson.NewGeometry(g).MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: geometry: %w", f.ID, err)
		}
		args = append(args, "OBJECT", string(b))
	}
	return args, nil
}

// procStatus reads one "kB" line of /proc/PID/status, in bytes.
func procStatus(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
