package twin

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/paulmach/orb"
)

func newTestTwin(t *testing.T) (*Twin, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC))
	return New(Options{FeedSize: 64, Clock: clk}), clk
}

func TestApplySampleOrdering(t *testing.T) {
	tw, _ := newTestTwin(t)
	id := NewID(Vehicles, "BP2968")
	if _, err := tw.Put(&Feature{ID: id, Props: NewProps(map[string]any{"kind": "muck_truck"})}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)
	s := func(sec int, lon float64) Sample {
		return Sample{ID: id, Time: t0.Add(time.Duration(sec) * time.Second), HasPos: true, Pos: orb.Point{lon, 29.6}}
	}
	if o, c, err := tw.ApplySample(s(10, 106.5)); err != nil || o != Applied || c.New.Version != 2 {
		t.Fatalf("apply: %v %v %+v", o, err, c)
	}
	if _, _, err := tw.ApplySample(s(10, 106.5)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate not detected: %v", err)
	}
	o, c, err := tw.ApplySample(s(5, 106.4))
	if err != nil || o != HistoryOnly || c.Kind != History {
		t.Fatalf("older sample: %v %v %v", o, c.Kind, err)
	}
	f, _ := tw.Get(id)
	if f.Geometry.(orb.Point)[0] != 106.5 || f.Version != 2 {
		t.Fatalf("older sample moved the twin back: %v v%d", f.Geometry, f.Version)
	}
	if _, _, err := tw.ApplySample(Sample{ID: NewID(Vehicles, "nope"), Time: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	got, err := tw.Feed().Since(0, 0)
	if err != nil || len(got) != 3 || got[0].Seq != 1 || got[2].Seq != 3 {
		t.Fatalf("feed: %d %v", len(got), err)
	}
	var n int
	tw.Search(Vehicles, orb.Bound{Min: orb.Point{106, 29}, Max: orb.Point{107, 30}}, func(*Feature) bool { n++; return true })
	if n != 1 || tw.Count(Vehicles) != 1 {
		t.Fatalf("index holds %d, count %d", n, tw.Count(Vehicles))
	}
}

func TestFeedWindow(t *testing.T) {
	f := NewFeed(16)
	cur := f.Subscribe()
	defer cur.Close()
	for i := 0; i < 40; i++ {
		f.append(&Change{Kind: Upsert})
	}
	select {
	case <-cur.C():
	default:
		t.Fatal("cursor not signalled")
	}
	if _, err := f.Since(3, 0); !errors.Is(err, ErrTooOld) {
		t.Fatalf("want ErrTooOld, got %v", err)
	}
	cs, err := f.Since(30, 5)
	if err != nil || len(cs) != 5 || cs[0].Seq != 31 || cs[4].Seq != 35 {
		t.Fatalf("since: %v %v", cs, err)
	}
	if f.Last() != 40 {
		t.Fatalf("last %d", f.Last())
	}
}

func TestPutDeleteAndJSON(t *testing.T) {
	tw, _ := newTestTwin(t)
	id := NewID(Buildings, "b1")
	poly := orb.Polygon{{{106.5, 29.5}, {106.51, 29.5}, {106.51, 29.51}, {106.5, 29.5}}}
	c, err := tw.Put(&Feature{ID: id, Geometry: poly, Props: NewProps(map[string]any{"height_m": 80.0})})
	if err != nil || c.Old != nil || c.New.Version != 1 {
		t.Fatal(err)
	}
	c, _ = tw.Put(&Feature{ID: id, Geometry: poly, Props: NewProps(map[string]any{"height_m": 90.0})})
	if c.New.Version != 2 || tw.Count(Buildings) != 1 {
		t.Fatalf("version %d count %d", c.New.Version, tw.Count(Buildings))
	}
	b, err := json.Marshal(c.New)
	if err != nil {
		t.Fatal(err)
	}
	var back Feature
	if err := json.Unmarshal(b, &back); err != nil || back.ID != id || back.Version != 2 || back.Props.Get("height_m") != 90.0 {
		t.Fatalf("roundtrip %s: %+v %v", b, back, err)
	}
	if _, err := tw.Put(&Feature{ID: NewID(Devices, "BP1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Put(&Feature{ID: NewID(Vehicles, "BP1")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("telemetry name reused across layers: %v", err)
	}
	if _, err := tw.Delete(id); err != nil || tw.Count(Buildings) != 0 {
		t.Fatal("delete")
	}
	if _, err := tw.Put(&Feature{ID: ID{Layer: "nope", Name: "x"}}); err == nil {
		t.Fatal("unknown layer accepted")
	}
}

// TestFeedGrows: the ring starts small and doubles up to a capacity that is
// not a power of two, keeping every change at its sequence number, then
// drops the oldest once full.
func TestFeedGrows(t *testing.T) {
	const capacity = 3*feedInitial + 7
	f := NewFeed(capacity)
	if len(f.buf) != feedInitial {
		t.Fatalf("initial ring %d, want %d", len(f.buf), feedInitial)
	}
	check := func(n int) {
		t.Helper()
		first := uint64(1)
		if n > capacity {
			first = uint64(n - capacity + 1)
		}
		cs, err := f.Since(first-1, 0)
		if err != nil || len(cs) != n-int(first)+1 {
			t.Fatalf("after %d appends: %d changes, %v", n, len(cs), err)
		}
		for i, c := range cs {
			if c.Seq != first+uint64(i) || c.Time.Unix() != int64(c.Seq) {
				t.Fatalf("after %d appends: change %d has seq %d time %d", n, i, c.Seq, c.Time.Unix())
			}
		}
	}
	for n := 1; n <= 2*capacity; n++ {
		f.append(&Change{Kind: Upsert, Time: time.Unix(int64(n), 0)})
		if n == feedInitial || n == feedInitial+1 || n == capacity || n == capacity+1 || n == 2*capacity {
			check(n)
		}
	}
	if len(f.buf) != capacity {
		t.Fatalf("ring %d, want %d", len(f.buf), capacity)
	}
	if _, err := f.Since(capacity-1, 1); !errors.Is(err, ErrTooOld) {
		t.Fatalf("want ErrTooOld, got %v", err)
	}
}

// cellEnricher places a point by its rounded coordinates; safe for
// concurrent use.
type cellEnricher struct{}

func (cellEnricher) Locate(g orb.Geometry) ([]uint64, *Place) {
	p := g.(orb.Point)
	return []uint64{uint64(p[0]*1000) + 1}, NewPlace([]string{"500000"}, "g")
}

// TestLoadEnrichesInParallel: Load places every feature without cells (in
// parallel chunks) and keeps stored cells as they are.
func TestLoadEnrichesInParallel(t *testing.T) {
	tw := New(Options{Enricher: cellEnricher{}})
	fs := make([]*Feature, 5000)
	for i := range fs {
		fs[i] = &Feature{ID: NewID(Devices, "d"+strconv.Itoa(i)), Geometry: orb.Point{float64(i), 29}, Version: 3}
	}
	fs[7].SetCell(42)
	tw.Load(fs)
	for i, f := range fs {
		got, ok := tw.Get(f.ID)
		want := uint64(i*1000) + 1
		if i == 7 {
			want = 42
		}
		if !ok || len(got.Cells()) != 1 || got.Cell() != want || (i != 7 && got.Grid() != "g") {
			t.Fatalf("%s: %+v", f.ID, got)
		}
	}
	if tw.Count(Devices) != len(fs) {
		t.Fatalf("count %d", tw.Count(Devices))
	}
}
