package twin

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/paulmach/orb"
)

// Errors a caller can act on.
var (
	ErrNotFound  = errors.New("object not found")
	ErrDuplicate = errors.New("duplicate telemetry (same object and ts)")
	ErrConflict  = errors.New("version conflict")
)

// Enricher computes where an object is: its H3 cells and its place (region
// path and grid; nil when in none). The twin calls it whenever an object's
// geometry is set or moves. Implementations must be safe for concurrent
// use, and should hand out one *Place per answer (Places): every object
// holding the place keeps it.
type Enricher interface {
	Locate(g orb.Geometry) (cells []uint64, place *Place)
}

// MoveEnricher is an optional fast path of an Enricher for a point object
// that moved: knowing the object's previous state (nil when unknown; it may
// be stale, as it is read before the change is committed) it may skip what
// did not change, such as the H3 cell. Its answer must equal Locate(p)'s.
// ApplySample uses it when the Enricher implements it.
type MoveEnricher interface {
	LocateMove(p orb.Point, prev *Feature) (cells []uint64, place *Place)
}

// Options configure a Twin. Zero values take defaults.
type Options struct {
	FeedSize int          // changes kept for resuming consumers; default 1<<20
	Clock    clock.Clock  // default wall clock
	Enricher Enricher     // default: no H3/region enrichment
	Logger   *slog.Logger // default slog.Default()
	// Unchecked skips the name, text and readings checks of Put, Update
	// and ApplySample (ValidName, ValidProps, MaxValues, MinTime). Only for tests of the
	// layers behind the twin that must survive what it refuses (the
	// writer's quarantine); a server never sets it.
	Unchecked bool
}

// Twin is the in-memory city: every object's latest state, a spatial index per
// layer, and the change feed. All methods are safe for concurrent use; the
// *Feature values it hands out are immutable snapshots. Mutations (Put,
// Update, Delete, ApplySample) wait while the feed's reserved sequence
// numbers are used up (Feed.SetLimit), and fail with ErrSeqExhausted when
// no reservation will come; ApplySample (telemetry, the flood) also waits
// while a required feed consumer is a window behind (Feed).
//
// Reads never run their callers' code under the lock (issue 13 item 6: a
// planner's H3 query over 200k vehicles held it for 1.1 s and ingest
// stood still): see read.go.
type Twin struct {
	opts Options
	mu   sync.RWMutex
	// layers numbers Layers (a map, not a switch, so a new layer needs no
	// edit here); objs and index are per layer in that order.
	layers map[Layer]int
	objs   []names // by name
	// tracked are the indexes in Layers of the layers telemetry names
	// resolve in (names are unique across them): Resolve looks in each
	// layer's map rather than in a map of its own, which cost ~110 B per
	// tracked object (issue 16 goal 4).
	tracked []int
	index   []boxTree
	// gen counts the changes to the indexes (insert, unindex): a reader
	// that sees the same gen twice under the read lock saw the same trees
	// (Nearest's later chunks).
	gen  uint64
	feed *Feed
	// Buffers of the reads (read.go), reused so that a read storm is not
	// an allocation storm.
	fpool, hpool sync.Pool
}

// layerIndex is l's position in Layers (-1 for none).
func (t *Twin) layerIndex(l Layer) int {
	if i, ok := t.layers[l]; ok {
		return i
	}
	return -1
}

// get returns the current state of id (nil when absent). Caller holds mu.
func (t *Twin) get(id ID) *Feature {
	if i := t.layerIndex(id.Layer); i >= 0 {
		return t.objs[i].Get(id.Name)
	}
	return nil
}

// New makes an empty twin.
func New(opts Options) *Twin {
	if opts.FeedSize <= 0 {
		opts.FeedSize = 1 << 20
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := &Twin{opts: opts, feed: NewFeed(opts.FeedSize), layers: map[Layer]int{},
		objs: make([]names, len(StoredLayers)), index: make([]boxTree, len(StoredLayers))}
	for i, l := range StoredLayers {
		t.layers[l] = i
		if isTracked(l) {
			t.tracked = append(t.tracked, i)
		}
	}
	return t
}

// Feed returns the change feed.
func (t *Twin) Feed() *Feed { return t.feed }

// Clock returns the twin's clock.
func (t *Twin) Clock() clock.Clock { return t.opts.Clock }

// Get returns the object's current state.
func (t *Twin) Get(id ID) (*Feature, bool) {
	t.mu.RLock()
	f := t.get(id)
	t.mu.RUnlock()
	return f, f != nil
}

// Resolve finds a tracked object (vehicle, worker, device) by its telemetry name.
func (t *Twin) Resolve(name string) (ID, bool) {
	t.mu.RLock()
	id, ok := t.resolve(name)
	t.mu.RUnlock()
	return id, ok
}

// resolve is Resolve under t.mu.
func (t *Twin) resolve(name string) (ID, bool) {
	for _, i := range t.tracked {
		if f := t.objs[i].Get(name); f != nil {
			return f.ID, true
		}
	}
	return ID{}, false
}

// Load puts stored objects into the twin without producing changes; used
// once at start to rebuild the twin from the store. Objects keep their
// stored version, region and cells (they are recomputed only when empty).
//
// Placing objects (H3 cover via cgo, ~15 µs per building) dominates a load
// whose store has no cells, so it runs on every CPU: the Enricher is safe
// for concurrent use and each goroutine writes only its own features.
func (t *Twin) Load(fs []*Feature) {
	t.prepareAll(fs)
	add := make([]int, len(t.objs))
	for _, f := range fs {
		if i := t.layerIndex(f.ID.Layer); i >= 0 {
			add[i]++
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, n := range add {
		// One allocation instead of a dozen doublings (and rehashes)
		// of a million-entry table.
		t.objs[i].Grow(t.objs[i].Len() + n)
	}
	// A layer whose index is empty (the first load of it, at start) gets
	// a packed one (boxTree.fill): fuller nodes than one built insert by
	// insert, ~16 B less per point (issue 16 goal 4).
	packed := make([]bool, len(t.objs))
	for i := range packed {
		packed[i] = add[i] > 0 && t.index[i].Len() == 0
	}
	for _, f := range fs {
		i := t.layerIndex(f.ID.Layer)
		if i < 0 || !packed[i] {
			if old := t.get(f.ID); old != nil {
				t.unindex(old)
			}
			t.insert(f)
			continue
		}
		if !f.Props.packed() {
			f.Props = f.Props.Pack()
		}
		t.objs[i].Put(f)
	}
	// The objects of fs that stayed (a later one of a name replaces an
	// earlier) and have a geometry, by layer.
	geo := make([][]*Feature, len(t.objs))
	for _, f := range fs {
		if i := t.layerIndex(f.ID.Layer); i >= 0 && packed[i] && f.Geometry != nil && t.objs[i].Get(f.ID.Name) == f {
			geo[i] = append(geo[i], f)
		}
	}
	for i, l := range geo {
		if len(l) > 0 {
			t.index[i].fill(l)
			t.gen++
		}
	}
}

// prepareAll packs the props of fs and locates the features that have a
// geometry and no cells, in parallel chunks (outside the twin's lock).
func (t *Twin) prepareAll(fs []*Feature) {
	const chunk = 1024
	workers := min(runtime.GOMAXPROCS(0), (len(fs)+chunk-1)/chunk)
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		defer wg.Done()
		for {
			end := int(next.Add(chunk))
			start := end - chunk
			if start >= len(fs) {
				return
			}
			for _, f := range fs[start:min(end, len(fs))] {
				if !f.Props.packed() {
					f.Props = f.Props.Pack()
				}
				if t.opts.Enricher != nil && f.Geometry != nil && f.Cells() == nil {
					var cs []uint64
					cs, f.Place = t.opts.Enricher.Locate(f.Geometry)
					f.SetCells(cs)
				}
			}
		}
	}
	wg.Add(workers)
	for range workers {
		go work()
	}
	wg.Wait()
}

// Put registers or replaces an object (an import, PUT /api/entities, a rule
// writing an alert). The version becomes the old version plus one (or 1);
// Updated is set to now (never before the old state's); Observed is kept
// from the old state when unset.
func (t *Twin) Put(f *Feature) (Change, error) { return t.PutAt(f, time.Time{}) }

// Update applies fn to the object's current state under the twin's lock and
// commits what it returns (nil = no change). fn receives a clone it may
// modify; it must be quick and must not call the twin. If the object does not
// exist, fn receives nil and may return a new object to create it.
func (t *Twin) Update(id ID, fn func(cur *Feature) (*Feature, error)) (Change, bool, error) {
	return t.UpdateAt(id, time.Time{}, fn)
}

// Delete removes an object.
func (t *Twin) Delete(id ID) (Change, error) {
	if err := t.feed.waitSeq(); err != nil {
		return Change{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return Change{}, err
	}
	old := t.get(id)
	if old == nil {
		return Change{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	t.unindex(old)
	t.objs[t.layerIndex(id.Layer)].Delete(id.Name)
	c := Change{Kind: Remove, Time: t.opts.Clock.Now(), Old: old}
	t.feed.append(&c)
	return c, nil
}

// Outcome says what ApplySample did with a sample.
type Outcome uint8

const (
	// Applied: the sample moved the twin forward.
	Applied Outcome = iota + 1
	// HistoryOnly: the sample is older than the object's state; it was
	// recorded for history but did not change the twin.
	HistoryOnly
)

// ApplySample applies one telemetry sample to its object. A sample with the
// same ts as the object's newest is ErrDuplicate; an older one yields a
// History change only; a newer one updates position, speed, heading and
// readings (and H3 cell, region and grid when it moves) and yields one Upsert.
// A sample before MinTime is ErrBadTime, reading names must pass ValidKey
// (ErrBadText), and a sample that would give its object more than
// MaxValues readings is ErrTooManyValues; then nothing is applied or
// recorded.
func (t *Twin) ApplySample(s Sample) (Outcome, Change, error) {
	if err := t.feed.waitSeq(); err != nil {
		return 0, Change{}, err
	}
	if err := validSample(&s); err != nil && !t.opts.Unchecked {
		return 0, Change{}, fmt.Errorf("%s: %w", s.ID, err)
	}
	t.feed.waitRoom() // back-pressure from a lagging required consumer (Feed)
	var cells []uint64
	var place *Place
	if s.HasPos && t.opts.Enricher != nil {
		if me, ok := t.opts.Enricher.(MoveEnricher); ok {
			t.mu.RLock()
			prev := t.get(s.ID)
			t.mu.RUnlock()
			cells, place = me.LocateMove(s.Pos, prev)
		} else {
			cells, place = t.opts.Enricher.Locate(s.Pos)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return 0, Change{}, err
	}
	old := t.get(s.ID)
	if old == nil {
		return 0, Change{}, fmt.Errorf("%s: %w", s.ID, ErrNotFound)
	}
	ts := StampOf(s.Time)
	if ts == old.Observed {
		return 0, Change{}, ErrDuplicate
	}
	// The old readings are merged as packed bytes when they are packed
	// (packedReadings), else decoded into prev. A sample without readings
	// (a tracker's fix) leaves them as they are, unread: finding them in
	// the props was ~2 % of a geofenced write (issue 16 goal 1).
	var prev map[string]any
	var entries string
	var held, added int
	packed := true
	if !s.Values.IsZero() {
		if entries, held, packed = packedReadings(old.Props); packed {
			added = readingsAdded(entries, s.Values)
		} else {
			prev = valuesOf(old)
			held = len(prev)
			for k := range s.Values.All() {
				if _, ok := prev[k]; !ok {
					added++
				}
			}
		}
	}
	if added > 0 && held+added > MaxValues && !t.opts.Unchecked {
		return 0, Change{}, fmt.Errorf("%s: %w: holds %d readings, the sample adds %d, at most %d", s.ID, ErrTooManyValues, held, added, MaxValues)
	}
	if old.Observed != 0 && ts < old.Observed {
		c := Change{Kind: History, Time: t.opts.Clock.Now(), Old: old, New: old, Sample: &s}
		t.feed.append(&c)
		return HistoryOnly, c, nil
	}
	nf := *old
	nf.Observed = ts
	nf.Updated = ts
	if s.HasPos {
		nf.Geometry = s.Pos
		if t.opts.Enricher != nil {
			nf.SetCells(cells)
			nf.Place = place
		}
	}
	// One packed copy of the props with the sample's fields (the feed
	// keeps every version of a moving object for its window, 1<<20
	// changes by default: a map per version was ~300 B).
	var kv [3]propKV
	set := kv[:0]
	if s.HasSpeed {
		set = append(set, propKV{"speed_kmh", s.SpeedKmh})
	}
	if s.HasHeading {
		set = append(set, propKV{"heading", s.Heading})
	}
	var readings []byte
	if !s.Values.IsZero() && packed {
		var rb [512]byte
		readings = appendMergedReadings(rb[:0], entries, held, s.Values, added)
	} else if !s.Values.IsZero() {
		vals := make(map[string]any, len(prev)+added)
		for k, v := range prev {
			vals[k] = v
		}
		for k, v := range s.Values.All() {
			vals[strings.Clone(k)] = v // k points into the sample's bytes
		}
		set = append(set, propKV{"values", vals})
	}
	if len(set) > 0 || readings != nil {
		nf.Props = old.Props.with(set, readings)
	}
	c := t.commitKeepTime(old, &nf, &s)
	return Applied, c, nil
}

func (t *Twin) checkProps(props Props) error {
	if t.opts.Unchecked {
		return nil
	}
	return ValidProps(props)
}

// valuesOf returns an object's readings (props.values), nil when none.
func valuesOf(f *Feature) map[string]any {
	m, _ := f.Props.Get("values").(map[string]any)
	return m
}

// locate fills cells, region and grid from the geometry.
func (t *Twin) locate(f *Feature) {
	if t.opts.Enricher == nil {
		return
	}
	if f.Geometry == nil {
		f.SetCells(nil)
		f.Place = nil
		return
	}
	cs, place := t.opts.Enricher.Locate(f.Geometry)
	f.SetCells(cs)
	f.Place = place
}

// locateFrom is locate for f, whose previous state was prev (nil when
// new): a point takes the Enricher's MoveEnricher path when it has one,
// which skips what did not change since prev (an alert that follows its
// vehicle from one firing to the next; issue 16 goal 1).
func (t *Twin) locateFrom(f, prev *Feature) {
	me, ok := t.opts.Enricher.(MoveEnricher)
	p, isPoint := f.Geometry.(orb.Point)
	if !ok || !isPoint || prev == nil {
		t.locate(f)
		return
	}
	cs, place := me.LocateMove(p, prev)
	f.SetCells(cs)
	f.Place = place
}

// commitKeepTime stores nf as the new state of its object, stamping its
// version; its times are the caller's (commitAt). Caller holds t.mu.
func (t *Twin) commitKeepTime(old, nf *Feature, s *Sample) Change {
	if old != nil {
		nf.Version = old.Version + 1
		t.replace(old, nf)
	} else {
		if nf.Version == 0 {
			nf.Version = 1
		}
		t.insert(nf)
	}
	c := Change{Kind: Upsert, Time: t.opts.Clock.Now(), Old: old, New: nf, Sample: s}
	t.feed.append(&c)
	return c
}

// insert adds f to the maps and index. Caller holds t.mu and has removed any old state.
func (t *Twin) insert(f *Feature) {
	i := t.layerIndex(f.ID.Layer)
	if i < 0 {
		return
	}
	t.put(i, f)
	if f.Geometry != nil {
		t.index[i].insert(f)
	}
}

// put puts f in layer i's map, its props packed. Caller holds t.mu.
func (t *Twin) put(i int, f *Feature) {
	if !f.Props.packed() {
		// Only then: a state put back by undo (replica.go) is read by
		// consumers of the feed at the same time, so no write to it.
		f.Props = f.Props.Pack()
	}
	t.objs[i].Put(f)
	t.gen++
}

// replace puts nf, the next state of old's object, in the maps and index
// in old's place. Caller holds t.mu.
func (t *Twin) replace(old, nf *Feature) {
	i := t.layerIndex(nf.ID.Layer)
	if i < 0 || old.Geometry == nil || nf.Geometry == nil {
		t.unindex(old)
		t.insert(nf)
		return
	}
	t.put(i, nf)
	t.index[i].replace(old, nf)
}

func (t *Twin) unindex(f *Feature) {
	if f.Geometry == nil {
		return
	}
	if i := t.layerIndex(f.ID.Layer); i >= 0 {
		t.index[i].remove(f)
		t.gen++
	}
}

func isTracked(l Layer) bool { return l == Vehicles || l == Workers || l == Devices }

func sameGeometry(a, b orb.Geometry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return orb.Equal(a, b)
}

// Now returns the twin clock's time.
func (t *Twin) Now() time.Time { return t.opts.Clock.Now() }
