package telemetry

import (
	"errors"
	"fmt"

	"github.com/citytwin/citytwin/twin"
)

// Reason is the machine-readable cause of a rejected message. It is the
// "reason" field of a dead letter and the label of twin_deadletter_total, so
// the set is small and stable.
type Reason string

// Reasons a message can be rejected for (CONTRACT §3).
const (
	BadJSON       Reason = "bad_json"       // not a JSON object
	BadTS         Reason = "bad_ts"         // ts present but not RFC 3339 / epoch ms
	MissingTS     Reason = "missing_ts"     // no ts
	OutOfRange    Reason = "out_of_range"   // lon/lat (or speed) outside its domain
	NotFinite     Reason = "not_finite"     // NaN or ±Inf, literally or by overflow
	FutureTS      Reason = "future_ts"      // ts beyond now + Limits.MaxFuture
	Oversized     Reason = "oversized"      // payload larger than Limits.MaxBytes
	BadField      Reason = "bad_field"      // a known field with the wrong type
	UnknownDevice Reason = "unknown_device" // set by callers: the name resolves to no object
	ApplyFailed   Reason = "apply_failed"   // set by callers: the twin refused a valid message
	// BadText: a string the store cannot hold (NUL, invalid UTF-8) or
	// over its length limit: a reading's name, the NDJSON id, the topic's name.
	BadText Reason = "bad_text"
	// TooManyValues: more distinct readings than twin.MaxValues in one
	// message or, with those the object holds, on one object.
	TooManyValues Reason = "too_many_values"
	// NotYours: set by callers: the token may not report this object (a
	// field token reports only its own worker, workers/{subject}).
	NotYours Reason = "not_yours"
)

// Reasons lists every Reason, so twin_deadletter_total has a series for
// each from start (an operator's rate() and alerts see 0, not nothing).
// A new Reason must be added here (TestReasonsListsEveryReason).
func Reasons() []Reason {
	return []Reason{BadJSON, BadTS, MissingTS, OutOfRange, NotFinite, FutureTS, Oversized, BadField,
		UnknownDevice, ApplyFailed, BadText, TooManyValues, NotYours}
}

// Error is a rejected message. Callers dead-letter it with Reason.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "telemetry: " + string(e.Reason)
	}
	return "telemetry: " + string(e.Reason) + ": " + e.Detail
}

// Errorf builds an *Error; callers use it for UnknownDevice.
func Errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// FromTwin turns the twin's refusals of a sample or a name (twin.ErrBadText,
// twin.ErrTooManyValues, twin.ErrBadTime) into an *Error with their
// reason; other errors come back as they are.
func FromTwin(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, twin.ErrBadText):
		return &Error{Reason: BadText, Detail: err.Error()}
	case errors.Is(err, twin.ErrTooManyValues):
		return &Error{Reason: TooManyValues, Detail: err.Error()}
	case errors.Is(err, twin.ErrBadTime):
		return &Error{Reason: BadTS, Detail: err.Error()}
	}
	return err
}

// ReasonOf returns the reason of a telemetry error anywhere in err's chain,
// and "" when err carries none.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

var _ error = (*Error)(nil)
