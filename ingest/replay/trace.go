// Package replay reads GPS traces (id,time,lon,lat CSV rows) and publishes
// them as telemetry (`twin replay`). It keeps the file's order, duplicates
// and disorder included, because that is what real trackers send and what
// ingest must cope with; only the pacing is scaled.
package replay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Row is one trace point.
type Row struct {
	Line int // 1-based line in the file
	ID   string
	Time time.Time
	Lon  float64 // WGS84 degrees
	Lat  float64
}

// LineError is one unreadable line.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// TraceError lists every unreadable line of a trace.
type TraceError struct{ Lines []LineError }

func (e *TraceError) Error() string {
	const show = 5
	var b strings.Builder
	fmt.Fprintf(&b, "trace: %d bad line(s)", len(e.Lines))
	for i, l := range e.Lines {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(e.Lines)-show)
			break
		}
		b.WriteString("; ")
		b.WriteString(l.Error())
	}
	return b.String()
}

// Shanghai returns the Asia/Shanghai zone, or a fixed UTC+8 when the
// system has no tz database (China has kept UTC+8 without DST since 1991).
func Shanghai() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*3600)
}

// ReadTrace reads `id,time,lon,lat` rows. time is RFC 3339, epoch
// milliseconds, or YYYY/MM/DD/HH/MM/SS local time in loc (nil =
// Asia/Shanghai). A first line that is not data is taken as a header; blank
// lines are skipped. rows holds every good row even when bad lines make
// err a *TraceError naming them.
func ReadTrace(r io.Reader, loc *time.Location) ([]Row, error) {
	if loc == nil {
		loc = Shanghai()
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rows []Row
	var bad []LineError
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		row, err := parseRow(text, loc)
		if err != nil {
			if len(rows) == 0 && len(bad) == 0 && looksLikeHeader(text) {
				continue
			}
			bad = append(bad, LineError{Line: line, Err: err})
			continue
		}
		row.Line = line
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return rows, fmt.Errorf("trace: read line %d: %w", line+1, err)
	}
	if len(bad) > 0 {
		return rows, &TraceError{Lines: bad}
	}
	return rows, nil
}

func looksLikeHeader(text string) bool {
	f := strings.Split(text, ",")
	if len(f) < 4 {
		return false
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(f[2]), 64)
	return err != nil
}

func parseRow(text string, loc *time.Location) (Row, error) {
	f := strings.Split(text, ",")
	if len(f) != 4 {
		return Row{}, fmt.Errorf("want 4 fields id,time,lon,lat, got %d", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	if f[0] == "" {
		return Row{}, errors.New("empty id")
	}
	ts, err := ParseTime(f[1], loc)
	if err != nil {
		return Row{}, err
	}
	lon, err := coord(f[2], 180)
	if err != nil {
		return Row{}, fmt.Errorf("lon: %w", err)
	}
	lat, err := coord(f[3], 90)
	if err != nil {
		return Row{}, fmt.Errorf("lat: %w", err)
	}
	return Row{ID: f[0], Time: ts, Lon: lon, Lat: lat}, nil
}

func coord(s string, max float64) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if math.IsNaN(v) || v < -max || v > max {
		return 0, fmt.Errorf("%v outside [-%v,%v]", v, max, max)
	}
	return v, nil
}

// ParseTime reads a trace time: RFC 3339, epoch milliseconds, or
// YYYY/MM/DD/HH/MM/SS in loc.
func ParseTime(s string, loc *time.Location) (time.Time, error) {
	if strings.Count(s, "/") == 5 {
		t, err := time.ParseInLocation("2006/1/2/15/4/5", s, loc)
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: want YYYY/MM/DD/HH/MM/SS", s)
		}
		return t, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, fmt.Errorf("time %q: negative epoch ms", s)
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339, epoch ms or YYYY/MM/DD/HH/MM/SS", s)
	}
	return t, nil
}
