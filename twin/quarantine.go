package twin

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrBadData marks a store error caused by the data being written (a NUL
// in a text value, invalid UTF-8, a violated constraint, a value the
// encoding refuses), as opposed to the store being away
// (ErrStoreUnavailable). Writing the same data again fails again, so the
// store writer sets the row aside (Quarantiner) instead of retrying it
// forever and wedging every later write behind it.
var ErrBadData = errors.New("data the store cannot hold")

// QuarantineKind says what a quarantined record was.
type QuarantineKind string

// The kinds of quarantined records.
const (
	QuarantineUpsert QuarantineKind = "upsert" // an object state the store refused
	QuarantineDelete QuarantineKind = "delete" // a delete the store refused
	QuarantineSample QuarantineKind = "sample" // a telemetry sample the store refused
	QuarantineLoad   QuarantineKind = "load"   // a stored record that could not be decoded at start
)

// Quarantined is one record set aside: what it was, why, when, and the
// record itself (JSON for writes; the raw stored bytes for QuarantineLoad),
// so an operator can repair and replay it.
type Quarantined struct {
	Kind    QuarantineKind
	ID      ID
	Version uint64 // object version; 0 for samples and deletes
	Err     string
	At      time.Time
	Data    []byte
}

// Quarantiner is a store that can keep records it refused (or found corrupt)
// apart from the twin's data. Both stores implement it.
type Quarantiner interface {
	// Quarantine stores records; it must accept any bytes in any field
	// (that is why they are here).
	Quarantine(ctx context.Context, qs []Quarantined) error
	// Quarantined lists stored quarantine records, oldest first, at most
	// limit (0 = all).
	Quarantined(ctx context.Context, limit int) ([]Quarantined, error)
}

// PrintableName returns name as valid UTF-8 without NUL bytes (NUL as
// `\x00`, invalid bytes as U+FFFD), for logs and text columns that cannot
// hold the raw bytes of a quarantined record.
func PrintableName(name string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(name, "\x00", `\x00`), "\uFFFD")
}
