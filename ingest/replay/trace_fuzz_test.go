package replay

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// FuzzReadTrace: any trace file (`twin replay` reads what a user hands
// it) gives its good rows and a *TraceError naming each bad line, never a
// panic; a row is inside the world with an id, its line is one of the
// file's, and a line is either a row, a bad line, blank or the header.
func FuzzReadTrace(f *testing.F) {
	f.Add([]byte("id,time,lon,lat\nv1,2026-12-04T08:00:00+08:00,106.5,29.5\nv1,1764806400000,106.6,29.6\n"))
	f.Add([]byte("v2,2026/12/4/8/0/1,106.5,29.5\n\nv2,bad,1,1\nv3,2026-12-04T08:00:00Z,181,0\n"))
	f.Add([]byte("v\x00,2026-12-04T08:00:00Z,NaN,1\n\xff,1,1,1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := ReadTrace(bytes.NewReader(b), nil)
		var te *TraceError
		if err != nil && !errors.As(err, &te) {
			return // a line longer than the scanner's 1 MB: reported as such
		}
		lines := strings.Count(string(b), "\n") + 1
		seen := map[int]bool{}
		for _, r := range rows {
			if r.ID == "" || math.IsNaN(r.Lon) || math.IsNaN(r.Lat) || math.Abs(r.Lon) > 180 || math.Abs(r.Lat) > 90 || r.Time.IsZero() {
				t.Fatalf("accepted row %+v", r)
			}
			if r.Line < 1 || r.Line > lines || seen[r.Line] {
				t.Fatalf("row of line %d (file has %d lines, seen %v)", r.Line, lines, seen[r.Line])
			}
			seen[r.Line] = true
		}
		if te != nil {
			if len(te.Lines) == 0 {
				t.Fatal("a TraceError naming no line")
			}
			for _, l := range te.Lines {
				if l.Line < 1 || l.Line > lines || seen[l.Line] || l.Err == nil {
					t.Fatalf("bad line %d: %v (a row too: %v)", l.Line, l.Err, seen[l.Line])
				}
				seen[l.Line] = true
			}
		}
	})
}
