package rules

import (
	"context"
	"fmt"
	"os"
	"time"
)

// fileWatch remembers the last loaded state of a rules file.
type fileWatch struct {
	path    string
	modTime time.Time
	size    int64
}

// WatchFile reloads path whenever its modification time or size changes,
// checking every `every` (default 3 s) until ctx ends. A file that fails to
// parse is logged and skipped: the previous rules keep running. The first
// check only records the file's state (the caller loaded it at start).
func (e *Engine) WatchFile(ctx context.Context, path string, every time.Duration) error {
	if every <= 0 {
		every = 3 * time.Second
	}
	w := &fileWatch{path: path}
	if _, err := e.reloadIfChanged(w, false); err != nil {
		e.log.Warn("rules: watch", "file", path, "err", err)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := e.reloadIfChanged(w, true); err != nil {
				e.log.Error("rules: reload rejected; previous rules keep running", "file", path, "err", err)
			}
		}
	}
}

// reloadIfChanged loads w.path if it changed since the last call. It
// reports whether new rules were loaded.
func (e *Engine) reloadIfChanged(w *fileWatch, load bool) (bool, error) {
	st, err := os.Stat(w.path)
	if err != nil {
		return false, fmt.Errorf("stat rules: %w", err)
	}
	if st.ModTime().Equal(w.modTime) && st.Size() == w.size {
		return false, nil
	}
	w.modTime, w.size = st.ModTime(), st.Size()
	if !load {
		return false, nil
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		return false, fmt.Errorf("read rules: %w", err)
	}
	rs, err := Parse(w.path, data)
	if err != nil {
		return false, err
	}
	e.Load(rs)
	return true, nil
}
