// Package importer loads city data files (GeoJSON, OpenStreetMap XML/PBF and
// the "mesh" road-link XML) into a twin.Store.
//
// Imports are idempotent: every object's name is derived from a stable
// source id (an OSM element id, a GeoJSON feature id or id property, a mesh
// linkID), so importing the same file again upserts the same objects. Before
// writing, the importer reads each object back (Store.Get) and leaves it
// untouched when its props and geometry (and, with an Enricher, its region
// and grid) are the same, so an unchanged re-import bumps no version.
//
// A bad feature (invalid GeoJSON, empty geometry, coordinates out of range,
// self-intersecting polygon ring, unknown layer, duplicate id) is reported as
// a Problem with its line and index and skipped; the import goes on. Only a
// whole-file failure (unreadable, not JSON/XML, a store error) is returned as
// an error, and it names the file.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/spatial/gcj02"
	"github.com/citytwin/citytwin/twin"
	"golang.org/x/term"
)

// CRS names accepted by Options.CRS.
const (
	WGS84 = "wgs84"
	GCJ02 = "gcj02"
)

// Options configure one Import. Zero values take defaults.
type Options struct {
	// Store receives the objects; required.
	Store twin.Store
	// Layer forces the layer of every GeoJSON feature; "" infers it from
	// the properties (DataV boundaries -> regions, ROADLEVEL/highway ->
	// roads, ...) or a "layer" property. For OSM and mesh files a non-empty
	// Layer keeps only objects of that layer.
	Layer twin.Layer
	// CRS of the file's coordinates: "wgs84" (default) or "gcj02", which is
	// converted to WGS84 (the twin's datum) on the way in.
	CRS string
	// Props renames source properties to twin properties (source -> twin).
	Props map[string]string
	// NameProp is the source property used as the object name; default the
	// GeoJSON feature id (or a known id property, see Import).
	NameProp string
	// Enricher, when set, fills each object's H3 cells, region path and grid.
	Enricher twin.Enricher
	// Progress, when non-nil, receives a one-line progress bar redrawn with
	// carriage returns; pass ProgressWriter(os.Stderr) so that it is only
	// drawn on a terminal.
	Progress io.Writer
	// BatchSize is the number of objects per Store.Upsert; default 500.
	BatchSize int
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock sets the objects' Updated time; default the wall clock.
	Clock clock.Clock
	// MaxProblems caps Summary.Problems (Skipped still counts them all);
	// default 1000, so a wholly bad file cannot exhaust memory.
	MaxProblems int
	// Readers is the number of concurrent Store.Get calls used to compare
	// a batch with what is stored; default 4.
	Readers int
}

func (o Options) withDefaults() (Options, error) {
	if o.Store == nil {
		return o, errors.New("importer: Options.Store is required")
	}
	switch strings.ToLower(o.CRS) {
	case "", WGS84, "epsg:4326":
		o.CRS = WGS84
	case GCJ02, "gcj-02":
		o.CRS = GCJ02
	default:
		return o, fmt.Errorf("importer: unknown CRS %q (want wgs84 or gcj02)", o.CRS)
	}
	if o.Layer != "" {
		if _, err := twin.ParseLayer(string(o.Layer)); err != nil {
			return o, fmt.Errorf("importer: %w", err)
		}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 1000
	}
	if o.Readers <= 0 {
		o.Readers = 4
	}
	return o, nil
}

// Problem is one skipped feature.
type Problem struct {
	File   string
	Line   int // 1-based line where the feature starts; 0 when unknown
	Index  int // 0-based position of the feature in the file (GeoJSON features[i], OSM element, mesh link)
	Reason string
}

// String renders "file.geojson:123 (feature 45): self-intersecting polygon".
// The line is left out when unknown (OSM files).
func (p Problem) String() string {
	if p.Line <= 0 {
		return fmt.Sprintf("%s (feature %d): %s", p.File, p.Index, p.Reason)
	}
	return fmt.Sprintf("%s:%d (feature %d): %s", p.File, p.Line, p.Index, p.Reason)
}

// Summary reports one file's import.
type Summary struct {
	File      string
	Read      int // features read from the file
	Imported  int // objects created or changed in the store
	Unchanged int // objects already stored with the same content
	Skipped   int // features skipped as problems
	Repeated  int // exact repeats of an earlier feature, merged into it (mesh files list a link in every submap it crosses)
	Problems  []Problem
	Duration  time.Duration
}

// Import loads one file into opts.Store, choosing the reader by extension:
// .geojson/.json (a FeatureCollection), .osm / .osm.pbf (OpenStreetMap),
// .xml / .xml.gz (mesh road links). It returns the summary so far together
// with any whole-file error. Safe to call concurrently for different files.
func Import(ctx context.Context, path string, opts Options) (Summary, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Summary{File: path}, err
	}
	r := &run{opts: opts, sum: Summary{File: path}, seen: map[twin.ID]firstSeen{}, start: time.Now()}
	defer func() { r.sum.Duration = time.Since(r.start) }()

	f, err := os.Open(path)
	if err != nil {
		return r.sum, fmt.Errorf("import %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return r.sum, fmt.Errorf("import %s: %w", path, err)
	}
	cr := &countingReader{r: f}
	r.prog = newProgress(opts.Progress, filepath.Base(path), st.Size(), cr)

	lower := strings.ToLower(path)
	switch {
	case strings.HasSuffix(lower, ".geojson"), strings.HasSuffix(lower, ".json"):
		err = r.geojson(ctx, cr)
	case strings.HasSuffix(lower, ".osm.pbf"), strings.HasSuffix(lower, ".pbf"):
		err = r.osm(ctx, cr, true)
	case strings.HasSuffix(lower, ".osm"):
		err = r.osm(ctx, cr, false)
	case strings.HasSuffix(lower, ".xml"), strings.HasSuffix(lower, ".xml.gz"):
		err = r.mesh(ctx, cr)
	default:
		err = fmt.Errorf("unknown file type (want .geojson, .json, .osm, .osm.pbf, .xml, .xml.gz)")
	}
	if err == nil {
		err = r.flush(ctx)
	}
	r.sum.Duration = time.Since(r.start)
	r.prog.done(r.sum)
	if err != nil {
		return r.sum, fmt.Errorf("import %s: %w", path, err)
	}
	opts.Logger.Info("import done", "file", path, "read", r.sum.Read, "imported", r.sum.Imported,
		"unchanged", r.sum.Unchanged, "skipped", r.sum.Skipped, "duration", r.sum.Duration)
	return r.sum, nil
}

// ProgressWriter returns f when it is a terminal and nil otherwise, for
// Options.Progress: a progress bar is noise in logs and pipes.
func ProgressWriter(f *os.File) io.Writer {
	if f != nil && term.IsTerminal(int(f.Fd())) {
		return f
	}
	return nil
}

// run is the state of one Import; not safe for concurrent use.
type run struct {
	opts  Options
	sum   Summary
	batch []*twin.Feature
	seen  map[twin.ID]firstSeen
	prog  *progress
	start time.Time
}

// firstSeen remembers the feature that defined an object, to tell exact
// repeats (merged) from conflicting duplicates (reported).
type firstSeen struct {
	index int
	fp    uint64
}

// problem records a skipped feature.
func (r *run) problem(line, index int, format string, args ...any) {
	r.sum.Skipped++
	if len(r.sum.Problems) < r.opts.MaxProblems {
		p := Problem{File: r.sum.File, Line: line, Index: index, Reason: fmt.Sprintf(format, args...)}
		r.sum.Problems = append(r.sum.Problems, p)
		r.opts.Logger.Debug("import: feature skipped", "problem", p.String())
	}
}

// add validates one candidate object, converts its datum, enriches it and
// queues it; a full batch is written. f.Geometry is in the file's CRS.
func (r *run) add(ctx context.Context, f *twin.Feature, line, index int) error {
	if r.opts.Layer != "" && f.ID.Layer != r.opts.Layer {
		return nil
	}
	if err := twin.ValidName(f.ID.Name); err != nil {
		r.problem(line, index, "%v", err)
		return nil
	}
	if err := twin.ValidGeometry(f.Geometry); err != nil {
		if line == 0 && f.Source() != "" {
			// No line to point at (OSM): name the element instead.
			r.problem(line, index, "%s: %v", f.Source(), err)
		} else {
			r.problem(line, index, "%v", err)
		}
		return nil
	}
	fp := fingerprint(f)
	if first, dup := r.seen[f.ID]; dup {
		if first.fp == fp {
			r.sum.Repeated++
			return nil
		}
		r.problem(line, index, "duplicate id %s with different content (first defined by feature %d)", f.ID, first.index)
		return nil
	}
	r.seen[f.ID] = firstSeen{index: index, fp: fp}
	if r.opts.CRS == GCJ02 {
		f.Geometry = gcj02.ToWGS84Geometry(f.Geometry)
	}
	if r.opts.Enricher != nil {
		var cs []uint64
		cs, f.Place = r.opts.Enricher.Locate(f.Geometry)
		f.SetCells(cs)
	}
	if f.Props.Len() == 0 {
		f.Props = twin.NewProps(map[string]any{})
	}
	r.batch = append(r.batch, f)
	r.prog.update(r.sum)
	if len(r.batch) >= r.opts.BatchSize {
		return r.flush(ctx)
	}
	return nil
}

// flush compares the queued objects with what is stored and upserts the
// new and changed ones in one batch.
func (r *run) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	batch := r.batch
	r.batch = nil
	olds, err := r.getAll(ctx, batch)
	if err != nil {
		return err
	}
	now := r.opts.Clock.Now().UTC()
	changed := make([]*twin.Feature, 0, len(batch))
	for i, f := range batch {
		old := olds[i]
		if old != nil && sameContent(old, f, r.opts.Enricher != nil) {
			r.sum.Unchanged++
			continue
		}
		f.Version = 1
		f.Updated = twin.StampOf(now)
		if old != nil {
			f.Version = old.Version + 1
			f.Observed = old.Observed
		}
		changed = append(changed, f)
	}
	if len(changed) > 0 {
		if err := r.opts.Store.Upsert(ctx, changed); err != nil {
			return fmt.Errorf("upsert %d objects: %w", len(changed), err)
		}
		r.sum.Imported += len(changed)
	}
	r.prog.update(r.sum)
	return nil
}

// getAll reads the stored state of each object (nil when absent), with up to
// opts.Readers concurrent Gets so a network store is not read serially.
func (r *run) getAll(ctx context.Context, fs []*twin.Feature) ([]*twin.Feature, error) {
	olds := make([]*twin.Feature, len(fs))
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < r.opts.Readers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				old, err := r.opts.Store.Get(ctx, fs[i].ID)
				switch {
				case errors.Is(err, twin.ErrNotFound):
				case err != nil:
					errs[i] = fmt.Errorf("read %s: %w", fs[i].ID, err)
				default:
					olds[i] = old
				}
			}
		}()
	}
	for i := range fs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first is enough: the rest usually repeat it
		}
	}
	return olds, nil
}

// countingReader counts bytes read from the file, for the progress bar.
type countingReader struct {
	r io.Reader
	n int64
	// mu guards n: the OSM PBF decoder reads on its own goroutine while the
	// progress bar reads n.
	mu sync.Mutex
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
