package importer

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line bar: bytes of the file read so far against its
// size, and the running counts. Redraws are limited to one every 100 ms of
// wall time, so drawing costs nothing next to parsing.
type progress struct {
	w     io.Writer
	name  string
	size  int64
	cr    *countingReader
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer, name string, size int64, cr *countingReader) *progress {
	return &progress{w: w, name: name, size: size, cr: cr}
}

func (p *progress) update(s Summary) {
	if p == nil || p.w == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.draw(s, false)
	}
}

func (p *progress) done(s Summary) {
	if p == nil || p.w == nil {
		return
	}
	p.draw(s, true)
	fmt.Fprintln(p.w)
}

func (p *progress) draw(s Summary, final bool) {
	const width = 30
	frac := 1.0
	if !final && p.size > 0 {
		frac = float64(p.cr.count()) / float64(p.size)
		if frac > 1 {
			frac = 1
		}
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% read %d, imported %d, unchanged %d, skipped %d",
		p.name, strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100,
		s.Read, s.Imported, s.Unchanged, s.Skipped)
	p.drawn = true
}
