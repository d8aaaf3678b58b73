package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// deltaMsg builds a delta as the hub writes it (wshub encodeDelta) around
// the twin's own encoding of f.
func deltaMsg(t *testing.T, seq uint64, kind string, f *twin.Feature) []byte {
	t.Helper()
	fb, err := f.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `{"op":"delta","seq":%d,"kind":%q,"feature":%s}`, seq, kind, fb)
}

// TestScanDeltaAgreesWithJSON: the scanner reads what encoding/json reads
// from the server's deltas, and leaves what it cannot read to it.
func TestScanDeltaAgreesWithJSON(t *testing.T) {
	f := &twin.Feature{ID: twin.NewID("vehicles", "wsl-7"), Geometry: orb.Point{106.5, 29.6}, Version: 42,
		Updated: twin.StampOf(time.UnixMilli(1_700_000_000_123)), Place: twin.NewPlace([]string{"500000"}, ""),
		Props: twin.NewProps(map[string]any{"kind": "patrol", "id": "x", "version": 1.0,
			"speed_kmh": 31.5, "values": map[string]any{"sent_ms": 1700000000123.456}})}
	noSent := &twin.Feature{ID: twin.NewID("vehicles", "wsl-8"), Geometry: orb.Point{106.5, 29.6}, Version: 3,
		Props: twin.NewProps(map[string]any{"kind": "patrol"})}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"upsert", deltaMsg(t, 99, "upsert", f)},
		{"remove", deltaMsg(t, 100, "remove", f)},
		{"no sent_ms", deltaMsg(t, 101, "upsert", noSent)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := scanDelta(tc.msg)
			if !ok {
				t.Fatalf("scanDelta did not read %s", tc.msg)
			}
			var m wsMsg
			if err := json.Unmarshal(tc.msg, &m); err != nil {
				t.Fatal(err)
			}
			want := delta{remove: m.Kind == "remove", id: m.Feature.ID, version: m.Feature.Version}
			if s := m.Feature.Props.Values.SentMS; s != nil {
				want.sentMS, want.hasSent = *s, true
			}
			if got != want {
				t.Fatalf("scanDelta %+v, encoding/json %+v", got, want)
			}
		})
	}
	for _, msg := range []string{
		`{"op":"resync"}`,
		`{"op":"snapshot","seq":5,"features":[]}`,
		`{"op":"delta","seq":5,"kind":"upsert","feature":{"id":"vehicles/a\"b","version":1,"properties":{}}}`,
		`{"op":"delta","seq":5,"kind":"other","feature":{"id":"vehicles/a","version":1,"properties":{}}}`,
		`{"op":"delta","seq":5,"kind":"upsert","feature":{"id":"vehicles/a","version":"x","properties":{}}}`,
	} {
		if d, ok := scanDelta([]byte(msg)); ok {
			t.Errorf("scanDelta(%s) = %+v, want it left to encoding/json", msg, d)
		}
	}
}

// TestReceiveCounts: versions, gaps, regressions and latencies from a
// snapshot and deltas, through both the scanner and encoding/json.
func TestReceiveCounts(t *testing.T) {
	c := &wsClient{last: map[string]uint64{}}
	f := func(v uint64) *twin.Feature {
		return &twin.Feature{ID: twin.NewID("vehicles", "a"), Geometry: orb.Point{1, 2}, Version: v,
			Props: twin.NewProps(map[string]any{"values": map[string]any{"sent_ms": 1000.0}})}
	}
	c.receive([]byte(`{"op":"snapshot","seq":1,"features":[{"type":"Feature","id":"vehicles/a","version":1,"properties":{}}]}`), 0)
	c.receive(deltaMsg(t, 2, "upsert", f(2)), 1010)
	c.receive(deltaMsg(t, 3, "upsert", f(5)), 1020) // versions 3 and 4 skipped
	c.receive(deltaMsg(t, 4, "upsert", f(5)), 1030) // a duplicate
	// The same delta with a space encoding/json accepts and the scanner does not.
	c.receive([]byte(`{"op": "delta","seq":5,"kind":"upsert","feature":{"id":"vehicles/a","version":6,"properties":{"values":{"sent_ms":1000}}}}`), 1040)
	c.receive([]byte(`{"op":"resync"}`), 0)
	if c.msgs != 6 || c.gaps != 2 || c.regressions != 1 || c.resyncs != 1 || len(c.lat) != 4 {
		t.Fatalf("msgs %d gaps %d regressions %d resyncs %d latencies %v", c.msgs, c.gaps, c.regressions, c.resyncs, c.lat)
	}
	if c.lat[0] != 10 || c.lat[3] != 40 {
		t.Fatalf("latencies %v", c.lat)
	}
}
