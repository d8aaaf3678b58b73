// Package storetest is the one contract suite every twin.Store passes
// (PostGIS in twin/pgstore, bbolt in twin/boltstore), so both stores behave
// the same for the writer and the server.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Equal reports how two features differ, nil when they hold the same state
// as a store keeps it: times compared at microsecond precision (PostgreSQL's),
// props compared by their JSON form (numbers come back as float64), nil and
// empty region/cells alike.
func Equal(a, b *twin.Feature) error {
	if a == nil || b == nil {
		if a == b {
			return nil
		}
		return fmt.Errorf("one feature is nil: %v vs %v", a, b)
	}
	if a.ID != b.ID {
		return fmt.Errorf("id %s vs %s", a.ID, b.ID)
	}
	if (a.Geometry == nil) != (b.Geometry == nil) || (a.Geometry != nil && !orb.Equal(a.Geometry, b.Geometry)) {
		return fmt.Errorf("%s: geometry %#v vs %#v", a.ID, a.Geometry, b.Geometry)
	}
	ja, _ := json.Marshal(a.Props)
	jb, _ := json.Marshal(b.Props)
	if a.Props.Len() != 0 || b.Props.Len() != 0 {
		var va, vb any
		_ = json.Unmarshal(ja, &va)
		_ = json.Unmarshal(jb, &vb)
		if !reflect.DeepEqual(va, vb) {
			return fmt.Errorf("%s: props %s vs %s", a.ID, ja, jb)
		}
	}
	if a.Version != b.Version {
		return fmt.Errorf("%s: version %d vs %d", a.ID, a.Version, b.Version)
	}
	if !sameTime(a.Updated.Time(), b.Updated.Time()) || !sameTime(a.Observed.Time(), b.Observed.Time()) {
		return fmt.Errorf("%s: times %v/%v vs %v/%v", a.ID, a.Updated, a.Observed, b.Updated, b.Observed)
	}
	if len(a.Region()) != 0 || len(b.Region()) != 0 {
		if !reflect.DeepEqual(a.Region(), b.Region()) {
			return fmt.Errorf("%s: region %v vs %v", a.ID, a.Region(), b.Region())
		}
	}
	if len(a.Cells()) != 0 || len(b.Cells()) != 0 {
		if !reflect.DeepEqual(a.Cells(), b.Cells()) {
			return fmt.Errorf("%s: cells %v vs %v", a.ID, a.Cells(), b.Cells())
		}
	}
	if a.Grid() != b.Grid() || a.Source() != b.Source() {
		return fmt.Errorf("%s: grid/source %q/%q vs %q/%q", a.ID, a.Grid(), a.Source(), b.Grid(), b.Source())
	}
	return nil
}

func sameTime(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
}

// Features returns one feature per geometry type the twin uses, including a
// nil geometry (a device not yet placed), with every field set.
func Features() []*twin.Feature {
	t0 := time.Date(2026, 5, 1, 8, 30, 0, 123456000, time.UTC)
	ring := orb.Ring{{106.50, 29.50}, {106.51, 29.50}, {106.51, 29.51}, {106.50, 29.51}, {106.50, 29.50}}
	hole := orb.Ring{{106.502, 29.502}, {106.504, 29.502}, {106.504, 29.504}, {106.502, 29.502}}
	line := orb.LineString{{106.5, 29.5}, {106.55, 29.52}, {106.6, 29.53}}
	mk := func(l twin.Layer, name string, g orb.Geometry) *twin.Feature {
		f := &twin.Feature{
			ID: twin.NewID(l, name), Geometry: g, Version: 3, Updated: twin.StampOf(t0), Observed: twin.StampOf(t0.Add(-time.Second)),
			Props: twin.NewProps(map[string]any{"name": "名字 " + name, "n": 2.5, "ok": true,
				"nested": map[string]any{"a": []any{1.0, "x"}}}),
			Place: twin.NewPlace([]string{"500000", "500105"}, "g-1"),
		}
		if _, ok := g.(orb.Point); ok {
			f.SetCell(0x8930e1d8a2fffff) // a point's one cell, held inline
		} else {
			f.SetCells([]uint64{0x8930e1d8a2fffff, 0x8930e1d8a27ffff})
		}
		f.SetSource("osm:" + name)
		return f
	}
	fs := []*twin.Feature{
		mk(twin.Vehicles, "BP2968", orb.Point{106.55, 29.56}),
		mk(twin.Devices, "cam-1", orb.MultiPoint{{106.5, 29.5}, {106.6, 29.6}}),
		mk(twin.Roads, "r1", line),
		mk(twin.Rivers, "jialing", orb.MultiLineString{line, {{106.4, 29.4}, {106.41, 29.41}}}),
		mk(twin.Buildings, "b1", orb.Polygon{ring, hole}),
		mk(twin.Regions, "500105", orb.MultiPolygon{{ring}, {{{107, 30}, {107.1, 30}, {107.1, 30.1}, {107, 30}}}}),
		mk(twin.Bridges, "br1", orb.Collection{orb.Point{106.5, 29.5}, line}),
	}
	bare := &twin.Feature{ID: twin.NewID(twin.Devices, "unplaced"), Version: 1, Props: twin.NewProps(map[string]any{})}
	// A setting (the running rules): no geometry, not a map layer, kept
	// all the same.
	setting := &twin.Feature{ID: twin.NewID(twin.Settings, "rules"), Version: 2, Updated: twin.StampOf(t0),
		Props: twin.NewProps(map[string]any{"source": []any{"rules: []\n"}, "json": false})}
	return append(fs, bare, setting)
}

// Run runs the contract suite; open returns a fresh, empty store that the
// suite closes.
func Run(t *testing.T, open func(t *testing.T) twin.Store) {
	t.Run("Roundtrip", func(t *testing.T) { testRoundtrip(t, open(t)) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t)) })
	t.Run("History", func(t *testing.T) { testHistory(t, open(t)) })
	t.Run("Meta", func(t *testing.T) { testMeta(t, open(t)) })
	t.Run("Quarantine", func(t *testing.T) { testQuarantine(t, open(t)) })
	t.Run("Indicators", func(t *testing.T) { testIndicators(t, open(t)) })
	t.Run("Timeline", func(t *testing.T) { testTimeline(t, open(t)) })
}

// testQuarantine: a store keeps quarantined records with any bytes in the
// name and data (NUL, invalid UTF-8: why they are quarantined), in order.
func testQuarantine(t *testing.T, st twin.Store) {
	closeStore(t, st)
	q, ok := st.(twin.Quarantiner)
	if !ok {
		t.Fatalf("%T does not implement twin.Quarantiner", st)
	}
	ctx := context.Background()
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	in := []twin.Quarantined{
		{Kind: twin.QuarantineUpsert, ID: twin.NewID(twin.Vehicles, "bad\xffname\x00"), Version: 7,
			Err: "invalid byte sequence \x00", At: at, Data: []byte(`{"note":"a\u0000b"}`)},
		{Kind: twin.QuarantineSample, ID: twin.NewID(twin.Devices, "d1"), Err: "nul key", At: at.Add(time.Second), Data: []byte(`{}`)},
	}
	if err := q.Quarantine(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
	if err := q.Quarantine(ctx, in[1:]); err != nil {
		t.Fatal(err)
	}
	out, err := q.Quarantined(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d records back, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Kind != b.Kind || a.ID != b.ID || a.Version != b.Version || !sameTime(a.At, b.At) || string(a.Data) != string(b.Data) {
			t.Errorf("record %d: got %+v, want %+v", i, b, a)
		}
		if b.Err == "" {
			t.Errorf("record %d: no error text", i)
		}
	}
	if out, err := q.Quarantined(ctx, 1); err != nil || len(out) != 1 || out[0].ID != in[0].ID {
		t.Fatalf("limit 1: %v, %v", out, err)
	}
}

func closeStore(t *testing.T, s twin.Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

func testRoundtrip(t *testing.T, s twin.Store) {
	closeStore(t, s)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	want := Features()
	if err := s.Upsert(ctx, want); err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if err := s.Upsert(ctx, want); err != nil { // idempotent retry
		t.Fatalf("upsert again: %v", err)
	}
	for _, w := range want {
		got, err := s.Get(ctx, w.ID)
		if err != nil {
			t.Fatalf("get %s: %v", w.ID, err)
		}
		if err := Equal(w, got); err != nil {
			t.Error(err)
		}
	}
	if _, err := s.Get(ctx, twin.NewID(twin.Vehicles, "nope")); !errors.Is(err, twin.ErrNotFound) {
		t.Fatalf("get absent: %v, want ErrNotFound", err)
	}
	byID := map[twin.ID]*twin.Feature{}
	for _, w := range want {
		byID[w.ID] = w
	}
	n := 0
	err := s.Load(ctx, func(f *twin.Feature) error {
		n++
		w := byID[f.ID]
		if w == nil {
			return fmt.Errorf("load: unexpected %s", f.ID)
		}
		return Equal(w, f)
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if n != len(want) {
		t.Fatalf("load gave %d features, want %d", n, len(want))
	}
	stop := errors.New("stop")
	if err := s.Load(ctx, func(*twin.Feature) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("load with failing fn: %v, want the fn's error", err)
	}
}

func testVersions(t *testing.T, s twin.Store) {
	closeStore(t, s)
	ctx := context.Background()
	id := twin.NewID(twin.Vehicles, "v1")
	at := func(v uint64, speed float64) *twin.Feature {
		return &twin.Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Version: v,
			Props: twin.NewProps(map[string]any{"speed_kmh": speed})}
	}
	if err := s.Upsert(ctx, []*twin.Feature{at(5, 50)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, []*twin.Feature{at(4, 40)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, id); err != nil || got.Version != 5 || got.Props.Get("speed_kmh") != 50.0 {
		t.Fatalf("lower version overwrote: %+v, %v", got, err)
	}
	// Several states of one object in one batch: the highest version wins.
	if err := s.Upsert(ctx, []*twin.Feature{at(7, 70), at(8, 80), at(6, 60)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, id); err != nil || got.Version != 8 || got.Props.Get("speed_kmh") != 80.0 {
		t.Fatalf("batch: %+v, %v", got, err)
	}
	// Many objects in one batch.
	var many []*twin.Feature
	for i := 0; i < 500; i++ {
		many = append(many, &twin.Feature{ID: twin.NewID(twin.Buildings, fmt.Sprint("b", i)), Version: 1,
			Geometry: orb.Point{106 + float64(i)/1000, 29}, Props: twin.NewProps(map[string]any{"i": float64(i)})})
	}
	if err := s.Upsert(ctx, many); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Load(ctx, func(*twin.Feature) error { n++; return nil }); err != nil || n != 501 {
		t.Fatalf("load: %d, %v", n, err)
	}
}

func testDelete(t *testing.T, s twin.Store) {
	closeStore(t, s)
	ctx := context.Background()
	fs := Features()
	if err := s.Upsert(ctx, fs); err != nil {
		t.Fatal(err)
	}
	gone := []twin.ID{fs[0].ID, fs[4].ID, twin.NewID(twin.Alerts, "never-existed")}
	if err := s.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, gone); err != nil { // idempotent
		t.Fatal(err)
	}
	for _, id := range gone {
		if _, err := s.Get(ctx, id); !errors.Is(err, twin.ErrNotFound) {
			t.Fatalf("get deleted %s: %v", id, err)
		}
	}
	n := 0
	if err := s.Load(ctx, func(*twin.Feature) error { n++; return nil }); err != nil || n != len(fs)-2 {
		t.Fatalf("load after delete: %d, %v", n, err)
	}
}

func testHistory(t *testing.T, s twin.Store) {
	closeStore(t, s)
	ctx := context.Background()
	id := twin.NewID(twin.Vehicles, "BP2968")
	other := twin.NewID(twin.Devices, "BP2968") // same name, other layer
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	sample := func(i int) twin.Sample {
		s := twin.Sample{ID: id, Time: t0.Add(time.Duration(i) * time.Second)}
		if i%2 == 0 {
			s.HasPos, s.Pos = true, orb.Point{106.5 + float64(i)/1e4, 29.5}
			s.HasSpeed, s.SpeedKmh = true, float64(i)
			s.HasHeading, s.Heading = true, 90
		} else {
			s.Values = twin.ReadingsOf(map[string]float64{"ch4": float64(i) / 10})
		}
		return s
	}
	var batch []twin.Sample
	for _, i := range []int{5, 1, 3, 0, 2, 4, 9, 8, 7, 6} { // out of order
		batch = append(batch, sample(i))
	}
	batch = append(batch, sample(3), twin.Sample{ID: other, Time: t0, Values: twin.ReadingsOf(map[string]float64{"p": 1})})
	if err := s.AppendHistory(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory(ctx, batch[:4]); err != nil { // retry of a batch
		t.Fatal(err)
	}
	got, err := s.History(ctx, id, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("history has %d samples, want 10 (duplicates stored once)", len(got))
	}
	for i, g := range got {
		if w := sample(i); !reflect.DeepEqual(normSample(g), normSample(w)) {
			t.Fatalf("sample %d: got %+v want %+v", i, g, w)
		}
	}
	got, err = s.History(ctx, id, t0.Add(2*time.Second), t0.Add(7*time.Second), 0)
	if err != nil || len(got) != 5 || !got[0].Time.Equal(t0.Add(2*time.Second)) || !got[4].Time.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("from/to: %d samples, %v", len(got), err)
	}
	got, err = s.History(ctx, id, t0.Add(2*time.Second), time.Time{}, 3)
	if err != nil || len(got) != 3 || !got[2].Time.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("limit: %d samples, %v", len(got), err)
	}
	got, err = s.History(ctx, other, time.Time{}, time.Time{}, 0)
	if err != nil || len(got) != 1 || !hasReading(got[0].Values, "p", 1) {
		t.Fatalf("other layer: %+v, %v", got, err)
	}
	if got, err := s.History(ctx, twin.NewID(twin.Workers, "none"), time.Time{}, time.Time{}, 0); err != nil || len(got) != 0 {
		t.Fatalf("absent: %v, %v", got, err)
	}
}

// normSample puts a sample in comparable form (UTC time; readings are
// canonical: the same readings are the same bytes).
func normSample(s twin.Sample) twin.Sample {
	s.Time = s.Time.UTC()
	return s
}

// hasReading reports whether r holds name with value v.
func hasReading(r twin.Readings, name string, v float64) bool {
	got, ok := r.Get(name)
	return ok && got == v
}

func testMeta(t *testing.T, s twin.Store) {
	closeStore(t, s)
	ctx := context.Background()
	if v, err := s.GetMeta(ctx, "feed_seq"); err != nil || v != nil {
		t.Fatalf("absent meta: %q, %v", v, err)
	}
	if err := s.PutMeta(ctx, "feed_seq", []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, "feed_seq", []byte("42")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetMeta(ctx, "feed_seq"); err != nil || string(v) != "42" {
		t.Fatalf("meta: %q, %v", v, err)
	}
}
