package twin

import (
	"testing"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/paulmach/orb"
)

// TestUpdateAt: an event time stamps Updated, never before the object's
// last Updated; zero takes the clock.
func TestUpdateAt(t *testing.T) {
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	tw := New(Options{Clock: clock.NewFake(now)})
	id := NewID(Alerts, "a1")
	past := now.Add(-time.Hour)
	c, err := tw.PutAt(&Feature{ID: id, Geometry: orb.Point{106, 29}, Props: NewProps(map[string]any{"state": "open"})}, past)
	if err != nil || !c.New.Updated.Time().Equal(past) || c.New.Version != 1 {
		t.Fatalf("PutAt: %v %v", c.New, err)
	}
	set := func(at time.Time) *Feature {
		c, ok, err := tw.UpdateAt(id, at, func(f *Feature) (*Feature, error) { f.Props.Set("n", 1.0); return f, nil })
		if err != nil || !ok {
			t.Fatal(err)
		}
		return c.New
	}
	if f := set(past.Add(time.Minute)); !f.Updated.Time().Equal(past.Add(time.Minute)) {
		t.Fatalf("updated %v", f.Updated)
	}
	if f := set(past); !f.Updated.Time().Equal(past.Add(time.Minute)) {
		t.Fatalf("went back in time: %v", f.Updated)
	}
	if f := set(time.Time{}); !f.Updated.Time().Equal(now) {
		t.Fatalf("zero at: %v, want the clock", f.Updated)
	}
}
