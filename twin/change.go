package twin

import "time"

// Change is the one record every twin mutation yields: the object before and
// after, when, and a server-wide increasing sequence number. Rules, the
// websocket hub, the tile cache, the store writer and notifications all read
// the same records from the Feed.
type Change struct {
	Seq  uint64
	Kind ChangeKind
	Time time.Time // server time of the change
	Old  *Feature  // nil when the object was created
	New  *Feature  // nil when the object was removed
	// Sample is the telemetry that caused the change, if any; the store
	// writer appends it to history.
	Sample *Sample
}

// ID returns the changed object's ID.
func (c Change) ID() ID {
	if c.New != nil {
		return c.New.ID
	}
	if c.Old != nil {
		return c.Old.ID
	}
	return ID{}
}

// Removed reports a deletion.
func (c Change) Removed() bool { return c.New == nil }

// ChangeKind tells what a change did.
type ChangeKind uint8

const (
	// Upsert created or updated the object (New is set).
	Upsert ChangeKind = iota + 1
	// Remove deleted the object (New is nil).
	Remove
	// History carries a telemetry sample older than the object's state: it
	// goes to history only, and Old == New (the twin did not move back in time).
	History
)

func (k ChangeKind) String() string {
	switch k {
	case Upsert:
		return "upsert"
	case Remove:
		return "remove"
	case History:
		return "history"
	}
	return "unknown"
}
