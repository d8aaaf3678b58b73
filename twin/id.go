// Package twin holds the city model as an in-memory digital twin: typed
// object IDs and layers, immutable feature snapshots, the one change feed that
// every consumer reads, and the Store contract that persists it.
package twin

import (
	"errors"
	"fmt"
	"strings"
)

// Layer names one kind of city object (CONTRACT §2).
type Layer string

// The layers of the city model.
const (
	Regions   Layer = "regions"
	Grids     Layer = "grids"
	Roads     Layer = "roads"
	Bridges   Layer = "bridges"
	Rivers    Layer = "rivers"
	Buildings Layer = "buildings"
	Devices   Layer = "devices"
	Vehicles  Layer = "vehicles"
	Workers   Layer = "workers"
	Incidents Layer = "incidents"
	Alerts    Layer = "alerts"
	// Tasks are units of governance work with one loop (issued, acked,
	// reported, closed): directive targets, rectification, enforcement
	// (governance/tasks, CONTRACT §8).
	Tasks Layer = "tasks"
	// Directives are orders from a tier with their live roll-up.
	Directives Layer = "directives"
)

// Layers lists every layer in drawing order (bottom first).
var Layers = []Layer{Regions, Grids, Rivers, Roads, Bridges, Buildings, Devices, Vehicles, Workers, Incidents, Alerts, Tasks, Directives}

// Settings is not a map layer: it holds the twin's configuration as
// objects without geometry (settings/rules: the running rules, rules.Shared),
// so a setting travels through the change log and the store like any
// change and every server of a twin, and every restart, runs the same one.
// It is not in Layers and ParseLayer refuses it: no HTTP, OGC, tile,
// websocket, replay or import surface reads or writes it; the owning
// component does (GET/PUT /api/rules).
const Settings Layer = "settings"

// StoredLayers are the layers the twin holds and the stores keep: Layers
// and Settings.
var StoredLayers = append(append([]Layer(nil), Layers...), Settings)

// ParseStoredLayer checks that s names a layer of StoredLayers (the twin's
// and the stores' own check; surfaces use ParseLayer).
func ParseStoredLayer(s string) (Layer, error) {
	if Layer(s) == Settings {
		return Settings, nil
	}
	return ParseLayer(s)
}

// TrackedLayers are the layers whose objects receive telemetry; an object's
// name is unique across them, so telemetry topics carry the name only.
var TrackedLayers = []Layer{Vehicles, Workers, Devices}

// ErrUnknownLayer is returned for a layer name that is not in the model.
var ErrUnknownLayer = errors.New("unknown layer")

// ParseLayer checks that s names a layer of the model.
func ParseLayer(s string) (Layer, error) {
	for _, l := range Layers {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownLayer, s)
}

// Live reports whether objects of the layer change often (telemetry, alerts,
// incidents): caches keep such tiles briefly.
func (l Layer) Live() bool {
	switch l {
	case Vehicles, Workers, Devices, Alerts, Incidents, Tasks, Directives:
		return true
	}
	return false
}

// ID identifies one object: "{layer}/{name}". It is comparable and used as a map key.
type ID struct {
	Layer Layer
	Name  string
}

// NewID builds an ID; it does not validate.
func NewID(l Layer, name string) ID { return ID{Layer: l, Name: name} }

// String renders the wire form "layer/name".
func (id ID) String() string { return string(id.Layer) + "/" + id.Name }

// IsZero reports an unset ID.
func (id ID) IsZero() bool { return id.Layer == "" && id.Name == "" }

// ParseID parses "layer/name", checking the layer and that the name is
// non-empty and has no slash.
func ParseID(s string) (ID, error) {
	l, name, ok := strings.Cut(s, "/")
	if !ok {
		return ID{}, fmt.Errorf("id %q: want layer/name", s)
	}
	return MakeID(l, name)
}

// MakeID validates a layer and name taken from two URL path segments.
func MakeID(layer, name string) (ID, error) {
	l, err := ParseLayer(layer)
	if err != nil {
		return ID{}, err
	}
	if err := ValidName(name); err != nil {
		return ID{}, err
	}
	return ID{Layer: l, Name: name}, nil
}

// ValidName checks an object name: 1..200 bytes of valid UTF-8, no slash,
// no control characters (NUL included), no MQTT wildcards (names appear in
// topics, and the store refuses NUL and invalid UTF-8).
func ValidName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("name %q: must be 1..200 bytes", name)
	}
	if err := textChars(name); err != nil {
		return fmt.Errorf("name %q: %w", name, err)
	}
	for _, r := range name {
		if r == '/' || r == '+' || r == '#' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("name %q: must not contain '/', '+', '#' or control characters", name)
		}
	}
	return nil
}

// MarshalText renders the wire form.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the wire form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
