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
	offer   FileOffer
}

// WatchFile reloads path whenever its modification time or size changes,
// checking every `every` (default 3 s) until ctx ends. A file that fails to
// parse is logged and skipped: the previous rules keep running. The first
// check only records the file's state (the caller loaded it at start).
func (e *Engine) WatchFile(ctx context.Context, path string, every time.Duration) error {
	return e.WatchFileWith(ctx, path, every, nil)
}

// FileOffer hands a changed rules file on instead of loading it here: the
// server offers it to the twin through the leader (see shared.go), which
// takes it unless the twin's rules were set after modified.
type FileOffer func(ctx context.Context, name string, data []byte, modified time.Time) error

// WatchFileWith is WatchFile handing the file to offer (nil: load it
// into this engine) first as it is now, then each time it changes.
func (e *Engine) WatchFileWith(ctx context.Context, path string, every time.Duration, offer FileOffer) error {
	if every <= 0 {
		every = 3 * time.Second
	}
	w := &fileWatch{path: path, offer: offer}
	// The first offer may wait for a leader: the file's state is taken
	// before it, so an edit meanwhile is offered next.
	if _, err := e.reloadIfChanged(ctx, w, offer != nil); err != nil {
		e.log.Warn("rules: watch", "file", path, "err", err)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := e.reloadIfChanged(ctx, w, true); err != nil {
				e.log.Error("rules: reload rejected; previous rules keep running", "file", path, "err", err)
			}
		}
	}
}

// reloadIfChanged loads (or offers) w.path if it changed since the last
// call. It reports whether new rules were loaded or offered.
func (e *Engine) reloadIfChanged(ctx context.Context, w *fileWatch, load bool) (bool, error) {
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
	if w.offer != nil {
		return true, w.offer(ctx, w.path, data, st.ModTime())
	}
	rs, err := Parse(w.path, data)
	if err != nil {
		return false, err
	}
	e.Load(rs)
	return true, nil
}
