package boot

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/writer"
	"github.com/paulmach/orb"
)

func TestLoadPlacesObjectsAndRestoresSeq(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	square := func(x0, y0, x1, y1 float64) orb.Polygon {
		return orb.Polygon{{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}}
	}
	fs := []*twin.Feature{
		{ID: twin.NewID(twin.Vehicles, "v1"), Version: 3, Geometry: orb.Point{106.55, 29.55}, Props: twin.NewProps(map[string]any{})},
		{ID: twin.NewID(twin.Regions, "500000"), Version: 1, Geometry: square(106, 29, 107, 30), Props: twin.NewProps(map[string]any{"level": "city", "code": "500000"})},
		{ID: twin.NewID(twin.Regions, "500103"), Version: 1, Geometry: square(106.5, 29.5, 106.6, 29.6), Props: twin.NewProps(map[string]any{"level": "district", "code": "500103", "parent": "500000"})},
	}
	if err := StoreAll(ctx, st, fs); err != nil {
		t.Fatal(err)
	}
	seq := make([]byte, 8)
	binary.BigEndian.PutUint64(seq, 41)
	if err := st.PutMeta(ctx, writer.MetaFeedSeq, seq); err != nil {
		t.Fatal(err)
	}
	loc := locate.New()
	tw := twin.New(twin.Options{Enricher: loc})
	n, err := Load(ctx, st, tw, loc)
	if err != nil || n != 3 {
		t.Fatalf("loaded %d: %v", n, err)
	}
	v, ok := tw.Get(twin.NewID(twin.Vehicles, "v1"))
	if !ok || v.Version != 3 || len(v.Region()) < 2 || v.Region()[1] != "500103" {
		t.Fatalf("vehicle not placed: %+v", v)
	}
	c, _ := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v2"), Geometry: orb.Point{106.55, 29.55}})
	if c.Seq != 42 {
		t.Fatalf("feed continues at %d, want 42", c.Seq)
	}

	// With a reservation stored above the flushed seq (a crash), the feed
	// continues above the reservation.
	binary.BigEndian.PutUint64(seq, 1000)
	if err := st.PutMeta(ctx, writer.MetaFeedHWM, seq); err != nil {
		t.Fatal(err)
	}
	tw = twin.New(twin.Options{Enricher: loc})
	if _, err := Load(ctx, st, tw, loc); err != nil {
		t.Fatal(err)
	}
	c, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v2"), Geometry: orb.Point{106.55, 29.55}})
	if c.Seq != 1001 {
		t.Fatalf("feed continues at %d after a reservation of 1000, want 1001", c.Seq)
	}
}
