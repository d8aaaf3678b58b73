package twin

import (
	"fmt"
	"time"
)

// UpdateAt is Update for a change caused by an event at time at (an alert
// fired by a telemetry sample): the new state's Updated is at rather than
// the twin's clock, so a replay of timestamped telemetry shows the change
// at its event's time (twin/timeline). A zero at takes the clock's now;
// Updated never goes back: an at before the object's Updated takes that.
func (t *Twin) UpdateAt(id ID, at time.Time, fn func(cur *Feature) (*Feature, error)) (Change, bool, error) {
	if err := t.feed.waitSeq(); err != nil {
		return Change{}, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return Change{}, false, err
	}
	old := t.get(id)
	var arg *Feature
	if old != nil {
		arg = old.Clone()
	}
	nf, err := fn(arg)
	if err != nil || nf == nil {
		return Change{}, false, err
	}
	if err := t.checkProps(nf.Props); err != nil {
		return Change{}, false, fmt.Errorf("%s: %w", id, err)
	}
	nf.ID = id
	if old == nil || !sameGeometry(old.Geometry, nf.Geometry) {
		t.locateFrom(nf, old) // geometry changed: recompute cells, region, grid
	}
	return t.commitAt(old, nf, at), true, nil
}

// PutAt is Put for an object created or replaced by an event at time at
// (see UpdateAt).
func (t *Twin) PutAt(f *Feature, at time.Time) (Change, error) {
	if err := ValidName(f.ID.Name); err != nil && !t.opts.Unchecked {
		return Change{}, err
	}
	if _, err := ParseStoredLayer(string(f.ID.Layer)); err != nil {
		return Change{}, err
	}
	if err := t.feed.waitSeq(); err != nil {
		return Change{}, err
	}
	if err := t.checkProps(f.Props); err != nil {
		return Change{}, fmt.Errorf("%s: %w", f.ID, err)
	}
	nf := f.clonePacked()
	t.locate(nf)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return Change{}, err
	}
	old := t.get(nf.ID)
	if old == nil && isTracked(nf.ID.Layer) {
		if other, taken := t.resolve(nf.ID.Name); taken && other != nf.ID {
			return Change{}, fmt.Errorf("%w: name %q is already used by %s (telemetry names are unique across vehicles, workers and devices)", ErrConflict, nf.ID.Name, other)
		}
	}
	return t.commitAt(old, nf, at), nil
}

// commitAt stamps Updated with at (the clock's now when zero), never
// before the old state's Updated. Caller holds t.mu.
func (t *Twin) commitAt(old, nf *Feature, at time.Time) Change {
	if at.IsZero() {
		at = t.opts.Clock.Now()
	}
	nf.Updated = StampOf(at)
	if old != nil && old.Updated != 0 && nf.Updated < old.Updated {
		nf.Updated = old.Updated
	}
	if old != nil && nf.Observed.IsZero() {
		nf.Observed = old.Observed
	}
	return t.commitKeepTime(old, nf, nil)
}
