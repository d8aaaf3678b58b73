package telemetry

import (
	"errors"
	"fmt"

	"github.com/citytwin/citytwin/twin"
)

// Apply resolves a telemetry name to its tracked object and applies the
// message to the twin, returning the outcome label (OutcomeApplied,
// OutcomeHistory or OutcomeDuplicate). An unknown name is an *Error with
// UnknownDevice, unless autoRegister: then vehicles/{name} is created first
// (atomically, so concurrent sources cannot overwrite each other's state).
// MQTT and HTTP ingest share it so both behave the same.
func Apply(tw *twin.Twin, name string, m Message, register bool) (string, error) {
	id, ok := tw.Resolve(name)
	if !ok {
		if !register {
			return "", Errorf(UnknownDevice, "no vehicle, worker or device named %q", name)
		}
		var err error
		if id, err = autoRegister(tw, name); err != nil {
			return "", err
		}
	}
	out, _, err := tw.ApplySample(ToSample(id, m))
	switch {
	case errors.Is(err, twin.ErrDuplicate):
		return OutcomeDuplicate, nil
	case errors.Is(err, twin.ErrNotFound):
		// Deleted between Resolve and ApplySample.
		return "", Errorf(UnknownDevice, "%s was removed", id)
	case err != nil:
		var te *Error
		if errors.As(FromTwin(err), &te) {
			return "", te // too many readings on the object, a bad name or time
		}
		return "", fmt.Errorf("apply %s: %w", id, err)
	case out == twin.HistoryOnly:
		return OutcomeHistory, nil
	}
	return OutcomeApplied, nil
}

// ValidName checks a telemetry name (the MQTT topic's last level, the
// NDJSON id) with twin.ValidName: bad_text for NUL or invalid UTF-8,
// bad_field for anything else.
func ValidName(name string) error {
	err := twin.ValidName(name)
	if err == nil {
		return nil
	}
	if errors.Is(err, twin.ErrBadText) {
		return &Error{Reason: BadText, Detail: err.Error()}
	}
	return &Error{Reason: BadField, Detail: err.Error()}
}

// autoRegister creates vehicles/{name} unless it exists.
func autoRegister(tw *twin.Twin, name string) (twin.ID, error) {
	if err := ValidName(name); err != nil {
		return twin.ID{}, err
	}
	id := twin.NewID(twin.Vehicles, name)
	_, _, err := tw.Update(id, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur != nil {
			return nil, nil
		}
		return &twin.Feature{ID: id, Props: twin.NewProps(map[string]any{"auto_registered": true})}, nil
	})
	if err != nil {
		return twin.ID{}, fmt.Errorf("auto-register %s: %w", id, err)
	}
	return id, nil
}
