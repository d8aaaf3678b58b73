package twin

import (
	"errors"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// A leader's changes, logged and installed on a follower, give the
// follower the same objects, versions and seqs; the leader's consumers see
// a change only once it is committed; Fence takes back what was not.
func TestReplicaLeaderFollower(t *testing.T) {
	leader, clk := newTestTwin(t)
	follower, _ := newTestTwin(t)
	leader.Replicate()
	follower.Replicate()
	if _, err := leader.Put(&Feature{ID: NewID(Vehicles, "v1")}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a replica that does not lead took a write: %v", err)
	}
	leader.Lead()
	id := NewID(Vehicles, "v1")
	if _, err := leader.Put(&Feature{ID: id, Geometry: orb.Point{106.5, 29.5}, Props: NewProps(map[string]any{"kind": "bus", "n": 3.0})}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	t0 := time.Date(2026, 11, 23, 8, 0, 1, 0, time.UTC)
	if _, _, err := leader.ApplySample(Sample{ID: id, Time: t0, HasPos: true, Pos: orb.Point{106.6, 29.6}, Values: ReadingsOf(map[string]float64{"co": 1.5})}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := leader.ApplySample(Sample{ID: id, Time: t0.Add(-time.Minute), HasPos: true, Pos: orb.Point{106.4, 29.4}}); err != nil {
		t.Fatal(err)
	}
	b := NewID(Buildings, "b1")
	if _, err := leader.Put(&Feature{ID: b, Geometry: orb.Polygon{{{106, 29}, {106.1, 29}, {106.1, 29.1}, {106, 29}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Delete(b); err != nil {
		t.Fatal(err)
	}
	if got := leader.Feed().Last(); got != 0 {
		t.Fatalf("consumers see %d before any commit", got)
	}
	cs, err := leader.Feed().Tentative(0, 0)
	if err != nil || len(cs) != 5 {
		t.Fatalf("tentative: %d %v", len(cs), err)
	}
	// TentativeAppend reads the same into the caller's buffer, in pieces.
	buf := make([]Change, 0, 2)
	for after, part := uint64(0), 0; after < 5; part++ {
		got, err := leader.Feed().TentativeAppend(buf[:0], after, 2)
		if err != nil || len(got) == 0 || len(got) > 2 || (part < 2 && &got[0] != &buf[:1][0]) {
			t.Fatalf("tentative append after %d: %d changes, %v (buffer reused: %v)", after, len(got), err, len(got) > 0 && &got[0] == &buf[:1][0])
		}
		for _, c := range got {
			if want := cs[c.Seq-1]; c.Seq != after+1 || c.New != want.New || c.Kind != want.Kind {
				t.Fatalf("tentative append after %d gave seq %d %v, want seq %d", after, c.Seq, c.Kind, after+1)
			}
			after = c.Seq
		}
	}
	for _, c := range cs {
		raw, err := MarshalChange(&c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := UnmarshalChange(raw)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := follower.Install(d); err != nil || !ok {
			t.Fatalf("install %d: %v %v", c.Seq, ok, err)
		}
		leader.Feed().Commit(c.Seq)
	}
	if ok, err := follower.Install(cs[0]); ok || err != nil {
		t.Fatalf("a seq installed twice: %v %v", ok, err)
	}
	if _, err := follower.Install(Change{Seq: 9, Kind: Remove, Old: &Feature{ID: id}}); !errors.Is(err, ErrSeqGap) {
		t.Fatalf("gap not reported: %v", err)
	}
	lf, _ := leader.Get(id)
	ff, _ := follower.Get(id)
	if !sameFeature(lf, ff) {
		t.Fatalf("follower differs:\n%+v\n%+v", lf, ff)
	}
	if _, ok := follower.Get(b); ok || follower.Count(Buildings) != 0 {
		t.Fatal("removal not installed")
	}
	if leader.Feed().Last() != 5 || follower.Feed().Last() != 5 {
		t.Fatalf("seqs: leader %d follower %d", leader.Feed().Last(), follower.Feed().Last())
	}
	fc, _ := follower.Feed().Since(0, 0)
	if len(fc) != 5 || fc[2].Kind != History || fc[2].Sample == nil || fc[4].Kind != Remove {
		t.Fatalf("follower feed: %+v", fc)
	}

	// Tentative changes are taken back by Fence.
	if _, err := leader.Put(&Feature{ID: id, Props: NewProps(map[string]any{"kind": "truck"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Put(&Feature{ID: NewID(Vehicles, "v2"), Geometry: orb.Point{1, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Delete(id); err != nil {
		t.Fatal(err)
	}
	n, err := leader.Fence()
	if n != 3 || err != nil {
		t.Fatalf("fence took back %d: %v", n, err)
	}
	after, _ := leader.Get(id)
	if !sameFeature(after, lf) || leader.Len() != 1 || leader.Feed().Head() != 5 {
		t.Fatalf("fence left %+v, %d objects, head %d", after, leader.Len(), leader.Feed().Head())
	}
	var hits int
	leader.Search(Vehicles, orb.Bound{Min: orb.Point{0, 0}, Max: orb.Point{180, 90}}, func(*Feature) bool { hits++; return true })
	if hits != 1 {
		t.Fatalf("index holds %d vehicles after fence", hits)
	}
	if _, ok := leader.Resolve("v2"); ok {
		t.Fatal("taken-back object still resolves")
	}
	if _, err := leader.Put(&Feature{ID: id}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("fenced twin took a write: %v", err)
	}
	// The fenced leader now follows: the next logged change is 6.
	if ok, err := leader.Install(Change{Seq: 6, Kind: Remove, Old: &Feature{ID: id}}); !ok || err != nil {
		t.Fatalf("fenced leader cannot follow: %v %v", ok, err)
	}
}

func TestChangeCodecRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	c := Change{Seq: 42, Kind: Upsert, Time: ts, New: &Feature{ID: NewID(Roads, "r1"),
		Geometry: orb.LineString{{106.123456789012, 29.1}, {106.2, 29.2}}, Props: NewProps(map[string]any{"name": "解放碑", "lanes": 4.0, "tags": []any{"a"}}),
		Version: 7, Updated: StampOf(ts), Observed: StampOf(ts.Add(-time.Second)), Place: NewPlace([]string{"500000", "500103"}, "g1"), more: &more{source: "osm:w1", cells: &[]uint64{1, 2}}},
		Sample: &Sample{ID: NewID(Roads, "r1"), Time: ts, HasPos: true, Pos: orb.Point{1, 2}, Values: ReadingsOf(map[string]float64{"x": 0.1})}}
	c.New.Props = c.New.Props.Pack() // as the twin holds them
	b, err := MarshalChange(&c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := UnmarshalChange(b)
	if err != nil {
		t.Fatal(err)
	}
	sameChange(t, c, d)
}

func FuzzUnmarshalChange(f *testing.F) {
	c := Change{Seq: 1, Kind: Upsert, Time: time.Unix(1, 0).UTC(), New: &Feature{ID: NewID(Vehicles, "v"), Geometry: orb.Point{1, 2}, Props: NewProps(map[string]any{"a": 1.0})}}
	b, _ := MarshalChange(&c)
	f.Add(b)
	c.New.Props = c.New.Props.Pack()
	c.Sample = &Sample{ID: c.New.ID, Time: c.Time, HasPos: true, Pos: orb.Point{1, 2}, Values: ReadingsOf(map[string]float64{"x": 1})}
	b, _ = MarshalChange(&c) // binary
	f.Add(b)
	f.Add([]byte(`{"seq":2,"k":2,"l":"vehicles","n":"v"}`))
	f.Add([]byte(`{"seq":3,"k":3,"l":"vehicles","n":"v","s":{"t":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"seq":3,"k":1,"l":"roads","n":"v","new":{"g":{"type":"GeometryCollection","geometries":[]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChange(b)
		if err != nil {
			return
		}
		// What decodes installs on a follower without panicking, and
		// encodes again to the same change.
		tw := New(Options{FeedSize: 16})
		tw.Feed().SetLast(c.Seq - 1)
		tw.Replicate()
		if c.Seq == 0 {
			return
		}
		if _, err := tw.Install(c); err != nil {
			t.Fatalf("install of a decoded change: %v", err)
		}
		again, err := MarshalChange(&c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := UnmarshalChange(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// A snapshot on the leader is exactly at its committed seq: tentative
// changes (not in the change log yet) are undone in the view, so a client
// never sees a state that a failover could take back.
func TestReplicaViewExcludesTentative(t *testing.T) {
	tw, _ := newTestTwin(t)
	tw.Replicate()
	tw.Lead()
	id := NewID(Vehicles, "v1")
	if _, err := tw.Put(&Feature{ID: id, Geometry: orb.Point{106.5, 29.5}}); err != nil {
		t.Fatal(err)
	}
	tw.Feed().Commit(1)
	if _, err := tw.Put(&Feature{ID: id, Geometry: orb.Point{106.6, 29.6}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Put(&Feature{ID: NewID(Vehicles, "v2"), Geometry: orb.Point{106.5, 29.5}}); err != nil {
		t.Fatal(err)
	}
	tw.View(func(seq uint64, r Reader) {
		if seq != 1 {
			t.Fatalf("view at %d, want the committed 1", seq)
		}
		f, ok := r.Get(id)
		if !ok || f.Version != 1 || f.Geometry.(orb.Point)[0] != 106.5 {
			t.Fatalf("view shows %+v, want version 1", f)
		}
		if _, ok := r.Get(NewID(Vehicles, "v2")); ok {
			t.Fatal("view shows a tentative object")
		}
		n := 0
		r.Search(Vehicles, orb.Bound{Min: orb.Point{100, 20}, Max: orb.Point{110, 30}}, func(*Feature) bool { n++; return true })
		if n != 1 {
			t.Fatalf("view search finds %d, want 1", n)
		}
	})
}
