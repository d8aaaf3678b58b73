package locate

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/spatial/hex"
	"github.com/citytwin/citytwin/spatial/planar"
	"github.com/citytwin/citytwin/twin"
)

// Follower keeps a Locator in step with a twin's regions and grids layers:
// a change to either (a redrawn, added or removed region or grid) rebuilds
// the index at once and re-places every object it may affect, so each
// object whose region path or grid changes gets an Upsert on the feed (and
// so reaches the store, websockets, tiles and the scope checks) without a
// restart. Regions and grids themselves are not re-placed.
//
// On a server that does not lead a replicated twin the index is rebuilt
// the same way but nothing is re-placed (SetPlacing(false)): the leader
// re-places and the change log brings its upserts.
type Follower struct {
	scan    []twin.Change // the last read from the feed, reused for the next (Feed.SinceAppend)
	l       *Locator
	tw      *twin.Twin
	log     *slog.Logger
	after   uint64
	placing atomic.Bool
}

// SetPlacing turns re-placing objects on or off (on by default).
func (fl *Follower) SetPlacing(on bool) { fl.placing.Store(on) }

// NewFollower follows tw's feed from its current end. Make it after
// boot.Load (which builds the first index) and before anything can change
// the skeleton; then Run it.
func NewFollower(l *Locator, tw *twin.Twin, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.Default()
	}
	fl := &Follower{l: l, tw: tw, log: log, after: tw.Feed().Last()}
	fl.placing.Store(true)
	return fl
}

// Run follows the feed until ctx ends.
func (fl *Follower) Run(ctx context.Context) error {
	cur := fl.tw.Feed().Subscribe()
	defer cur.Close()
	for {
		fl.drain()
		select {
		case <-ctx.Done():
			return nil
		case <-cur.C():
		}
	}
}

// drain processes the feed since the last call. It returns how many objects
// it re-placed.
func (fl *Follower) drain() int {
	n := 0
	for {
		cs, err := fl.tw.Feed().SinceAppend(fl.scan[:0], fl.after, 4096)
		fl.scan = cs
		if errors.Is(err, twin.ErrTooOld) {
			// Missed changes: the skeleton may have changed; rebuild and
			// re-place everything.
			fl.after = fl.tw.Feed().Last()
			fl.log.Warn("locate: fell behind the feed; re-placing every object")
			n += fl.replace(nil, true)
			continue
		}
		if len(cs) == 0 {
			return n
		}
		var dirty []orb.Bound
		for i := range cs {
			c := &cs[i]
			if !skeletonChanged(c) {
				continue
			}
			for _, f := range []*twin.Feature{c.Old, c.New} {
				if f != nil && f.Geometry != nil {
					dirty = append(dirty, f.Geometry.Bound())
				}
			}
		}
		fl.after = cs[len(cs)-1].Seq
		if len(dirty) > 0 {
			n += fl.replace(dirty, false)
		}
	}
}

// skeletonChanged reports whether a change alters what the index is built
// from: a region's or grid's geometry, code, level or parent.
func skeletonChanged(c *twin.Change) bool {
	id := c.ID()
	if id.Layer != twin.Regions && id.Layer != twin.Grids || c.Kind == twin.History {
		return false
	}
	if c.Old == nil || c.New == nil {
		return true
	}
	for _, k := range []string{"code", "level", "parent"} {
		if c.Old.Prop(k) != c.New.Prop(k) {
			return true
		}
	}
	if (c.Old.Geometry == nil) != (c.New.Geometry == nil) {
		return true
	}
	return c.Old.Geometry != nil && !orb.Equal(c.Old.Geometry, c.New.Geometry)
}

// replace rebuilds the index from the twin's regions and grids, then
// re-places the objects whose bounds meet one of dirty (all when all).
func (fl *Follower) replace(dirty []orb.Bound, all bool) int {
	var regions, grids []*twin.Feature
	fl.tw.Range(twin.Regions, func(f *twin.Feature) bool { regions = append(regions, f); return true })
	fl.tw.Range(twin.Grids, func(f *twin.Feature) bool { grids = append(grids, f); return true })
	fl.l.Reset(regions, grids)
	if !fl.placing.Load() {
		return 0
	}
	n := 0
	for _, layer := range twin.Layers {
		if layer == twin.Regions || layer == twin.Grids {
			continue // the skeleton itself: placing it changes nothing it is built from
		}
		var cand []*twin.Feature
		seen := map[twin.ID]bool{}
		collect := func(f *twin.Feature) bool {
			if !seen[f.ID] {
				seen[f.ID] = true
				cand = append(cand, f)
			}
			return true
		}
		if all {
			fl.tw.Range(layer, func(f *twin.Feature) bool {
				if f.Geometry != nil {
					collect(f)
				}
				return true
			})
		} else {
			for _, b := range dirty {
				fl.tw.Search(layer, b, collect)
			}
		}
		for _, f := range cand {
			if fl.replaceOne(f) {
				n++
			}
		}
	}
	if n > 0 {
		fl.log.Info("locate: regions or grids changed; objects re-placed", "objects", n)
	}
	return n
}

// replaceOne recomputes f's region path and grid with the current index
// and commits them when they differ. An object that moved meanwhile was
// placed by its move and is left alone.
func (fl *Follower) replaceOne(f *twin.Feature) bool {
	place := fl.l.place(f.Geometry)
	if place.Equal(f.Place) {
		return false
	}
	_, ok, err := fl.tw.Update(f.ID, func(cur *twin.Feature) (*twin.Feature, error) {
		if cur == nil || cur.Geometry == nil || !orb.Equal(cur.Geometry, f.Geometry) {
			return nil, nil
		}
		if place.Equal(cur.Place) {
			return nil, nil
		}
		cur.Place = place
		return cur, nil
	})
	if err != nil {
		fl.log.Warn("locate: re-place", "id", f.ID.String(), "err", err)
	}
	return ok
}

// place is Locate without the H3 cover: region path and grid only.
func (l *Locator) place(g orb.Geometry) *twin.Place {
	if g == nil {
		return nil
	}
	var rep orb.Point
	var repCell uint64
	switch x := g.(type) {
	case orb.Point:
		rep, repCell = x, hex.PointCell(x, hex.PointRes)
	default:
		if c, ok := exactCell(g); ok {
			rep, repCell = hex.CellCenter(c), c
		} else {
			var ok bool
			if rep, ok = planar.Centroid(g); !ok {
				return nil
			}
			repCell = hex.PointCell(rep, hex.PointRes)
		}
	}
	if repCell == 0 {
		return nil
	}
	return l.placeAt(l.idx.Load(), rep, repCell)
}
