package main

import (
	"slices"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// TestSetArgs: every prop becomes a FIELD (nested values as JSON, nil
// left out), a point a POINT lat lon, another geometry an OBJECT.
func TestSetArgs(t *testing.T) {
	f := &twin.Feature{ID: twin.NewID(twin.Vehicles, "v1"), Geometry: orb.Point{106.5, 29.5},
		Props: twin.NewProps(map[string]any{"kind": "taxi", "speed_kmh": 12.5, "levels": 3, "on": true, "gone": nil,
			"owners": []any{"a", "b"}})}
	got, err := setArgs(f)
	want := []string{"SET", "vehicles", "v1", "FIELD", "kind", "taxi", "FIELD", "levels", "3", "FIELD", "on", "true",
		"FIELD", "owners", `["a","b"]`, "FIELD", "speed_kmh", "12.5", "POINT", "29.5", "106.5"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q %v\nwant %q", got, err, want)
	}
	f.Geometry = orb.LineString{{1, 2}, {3, 4}}
	got, _ = setArgs(f)
	if got[len(got)-2] != "OBJECT" || got[len(got)-1] != `{"type":"LineString","coordinates":[[1,2],[3,4]]}` {
		t.Fatalf("line: %q", got[len(got)-2:])
	}
}
