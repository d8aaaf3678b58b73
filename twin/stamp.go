package twin

import "time"

// Stamp is an instant as Unix nanoseconds, 0 for none: a Feature's Updated
// and Observed. Eight bytes where a time.Time takes 24 (wall clock,
// monotonic reading and location pointer), which a million held features
// paid twice (issue 16 goal 4). It keeps what every surface and store
// kept already: the instant, read back in UTC (the wire writes UTC, the
// stores keep Unix nanoseconds or timestamptz); the zone and monotonic
// reading of the time.Time it was made from are dropped. The range is
// int64 nanoseconds' (years 1678-2262), as the stores' was.
type Stamp int64

// StampOf returns t's stamp (0 for the zero time).
func StampOf(t time.Time) Stamp {
	if t.IsZero() {
		return 0
	}
	return Stamp(t.UnixNano())
}

// Time returns the instant in UTC (the zero time for 0).
func (s Stamp) Time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s)).UTC()
}

// IsZero reports whether s is unset.
func (s Stamp) IsZero() bool { return s == 0 }

// UnixNano returns s in Unix nanoseconds (0 when unset).
func (s Stamp) UnixNano() int64 { return int64(s) }

// String formats s as RFC 3339 in UTC, for logs and test messages.
func (s Stamp) String() string {
	if s == 0 {
		return "0"
	}
	return s.Time().Format(time.RFC3339Nano)
}
