package wshub

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// routeFixture is a hub with n connection-less subscribers on random city
// viewports (0.02..0.1 degrees wide, about zoom 12..14) and a stream of
// vehicle moves over the demo city.
type routeFixture struct {
	h       *Hub
	changes []twin.Change
}

func newRouteFixture(b testing.TB, subs, objects int) *routeFixture {
	b.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	tw := twin.New(twin.Options{FeedSize: 16})
	h := New(tw, Options{QueueBytes: 1 << 30})
	for range subs {
		w := 0.02 + r.Float64()*0.08
		ht := w * 0.75
		min := randIn(r, orb.Bound{Min: city.Min, Max: orb.Point{city.Max[0] - w, city.Max[1] - ht}})
		c := newClient(h, nil, auth.Principal{Region: auth.CityCode}, "bench")
		s := &sub{c: c, layers: []twin.Layer{twin.Vehicles}, p: c.p,
			bbox: orb.Bound{Min: min, Max: orb.Point{min[0] + w, min[1] + ht}}}
		c.sub = s
		h.ix.add(s)
		h.clients[c] = struct{}{}
	}
	cur := make([]*twin.Feature, objects)
	for i := range cur {
		cur[i] = &twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i)), Geometry: randIn(r, city),
			Version: 1, Place: twin.NewPlace([]string{"500000"}, ""), Props: twin.NewProps(map[string]any{"speed_kmh": 30.0, "heading": 90.0})}
	}
	const n = 1 << 14
	fx := &routeFixture{h: h, changes: make([]twin.Change, n)}
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	for i := range fx.changes {
		k := r.IntN(objects)
		old := cur[k]
		nf := *old
		p := old.Geometry.(orb.Point)
		nf.Geometry = orb.Point{p[0] + (r.Float64()-0.5)*0.004, p[1] + (r.Float64()-0.5)*0.003}
		nf.Version++
		nf.Updated = twin.StampOf(t0.Add(time.Duration(i) * time.Millisecond))
		cur[k] = &nf
		fx.changes[i] = twin.Change{Seq: uint64(i + 1), Kind: twin.Upsert, Old: old, New: &nf}
	}
	return fx
}

// drain empties every client's queue, as their writers would.
func (fx *routeFixture) drain() {
	for c := range fx.h.clients {
		c.mu.Lock()
		c.taken = c.q.take(c.taken[:0], math.MaxInt)
		clear(c.taken)
		c.mu.Unlock()
	}
}

// BenchmarkRoute measures routing one vehicle move to its subscribers
// through the tile buckets, encoding included (once per change).
func BenchmarkRoute(b *testing.B) {
	for _, subs := range []int{200, 2000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			fx := newRouteFixture(b, subs, 5000)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c := &fx.changes[i%len(fx.changes)]
				if i%256 == 255 { // writers drain queues continuously; do it here off the clock
					b.StopTimer()
					fx.drain()
					b.StartTimer()
				}
				fx.h.mu.RLock()
				fx.h.route(c)
				fx.h.mu.RUnlock()
			}
		})
	}
}

// BenchmarkRouteScan is the baseline the index avoids: the same delivery,
// but checking every subscription for every change.
func BenchmarkRouteScan(b *testing.B) {
	for _, subs := range []int{200, 2000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			fx := newRouteFixture(b, subs, 5000)
			all := make([]*sub, 0, subs)
			for c := range fx.h.clients {
				all = append(all, c.sub)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c := &fx.changes[i%len(fx.changes)]
				if i%256 == 255 { // writers drain queues continuously; do it here off the clock
					b.StopTimer()
					fx.drain()
					b.StartTimer()
				}
				ob, nb := c.Old.Geometry.Bound(), c.New.Geometry.Bound()
				var up, rm []byte
				for _, s := range all {
					switch {
					case s.sees(c.New, &nb):
						if up == nil {
							up, _ = encodeDelta(c.Seq, twin.Upsert, c.New)
						}
						s.c.enqueueDelta(&item{id: c.New.ID, seq: c.Seq, msg: up})
					case s.sees(c.Old, &ob):
						if rm == nil {
							rm, _ = encodeDelta(c.Seq, twin.Remove, c.Old)
						}
						s.c.enqueueDelta(&item{id: c.Old.ID, seq: c.Seq, msg: rm})
					}
				}
			}
		})
	}
}

// TestRouteVisitsFewCandidates checks the point of the index: a change
// visits a small fraction of 2,000 subscriptions, and every subscription
// whose view holds the change is among them.
func TestRouteVisitsFewCandidates(t *testing.T) {
	fx := newRouteFixture(t, 2000, 100)
	all := []*sub{}
	for c := range fx.h.clients {
		all = append(all, c.sub)
	}
	visited, matched := 0, 0
	for i := range 2000 {
		c := &fx.changes[i]
		ob, nb := c.Old.Geometry.Bound(), c.New.Geometry.Bound()
		got := map[*sub]bool{}
		fx.h.ix.candidates(twin.Vehicles, &ob, &nb, func(s *sub) {
			if got[s] {
				t.Fatalf("candidate visited twice")
			}
			got[s] = true
		})
		visited += len(got)
		for _, s := range all {
			if s.visible(c.New) || s.visible(c.Old) {
				matched++
				if !got[s] {
					t.Fatalf("change %d in view of a subscription the index missed", i)
				}
			}
		}
	}
	if frac := float64(visited) / float64(2000*len(all)); frac > 0.25 {
		t.Errorf("visited %.0f%% of subscriptions per change", frac*100)
	}
	t.Logf("per change: %.1f candidates, %.1f in view, of %d", float64(visited)/2000, float64(matched)/2000, len(all))
}

// discardConn is a socket that takes every write at once: BenchmarkDrain
// measures the writer's own work, not the kernel's.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkDrain measures a busy client's writer per delta: the router
// queues a flush interval's worth of deltas (perDrain, about what a client
// of wsload's gets in 10 ms at 20,000 moves a second), the writer takes
// them, frames them into its batch and writes it (to a socket that
// discards).
func BenchmarkDrain(b *testing.B) {
	for _, perDrain := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("perDrain=%d", perDrain), func(b *testing.B) {
			tw := twin.New(twin.Options{FeedSize: 16})
			h := New(tw, Options{})
			c := newClient(h, nil, auth.Principal{Region: auth.CityCode}, "bench")
			c.bc = &batchConn{Conn: discardConn{}}
			msg := bytes.Repeat([]byte{'x'}, 270)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += perDrain {
				for j := range perDrain {
					c.enqueueDelta(&item{id: twin.NewID(twin.Vehicles, "v"), seq: uint64(i + j + 1), msg: msg})
				}
				if _, _, err := c.drain(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
