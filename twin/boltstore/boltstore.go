// Package boltstore is the embedded twin.Store: one bbolt file (dir/twin.db)
// with a bucket per layer keyed by object name, a history bucket keyed by
// time chunk + "layer/name\x00" + big-endian ts (see history.go), and a meta
// bucket.
//
// Durability: every method that writes is one bbolt transaction (WriteBatch
// puts a writer's whole flush in one), fsynced at commit, so a crash (kill -9, power loss) keeps every batch whose call
// returned and never exposes half a batch. bbolt writes a new meta page last
// and, on open, uses the newest of its two meta pages whose checksum is
// valid; bytes beyond the file's high-water mark (e.g. garbage appended to
// the tail) are never read. Both properties are tested.
package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure a Store. Zero values take defaults.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// LockTimeout bounds the wait for the file lock held by another process;
	// default 2s.
	LockTimeout time.Duration
	// HistoryChunk is the time span of one history key chunk in a new file
	// (an existing file keeps the chunk it was created with); default
	// DefaultHistoryChunk.
	HistoryChunk time.Duration
	// Registerer receives the store's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Pause is how long WriteBatch sleeps every pacedItems objects it
	// encodes and puts, or samples it groups or encodes and puts (0 or
	// negative: never). A server's store writer flushes a fifth of a
	// second's telemetry at a time (4,000 samples at 20k/s), and on a busy
	// single core that transaction was one run of 12-20 ms several times a
	// second, the longest in a runtime trace of the fan-out benchmark,
	// holding back the websocket path and the MQTT readers; the network
	// poller runs only when the core idles or every 10 ms, so a sleep (not
	// runtime.Gosched) is what lets them in (issue 16 goal 6; the replay
	// recorder's flush does the same, timeline.Options.Pause). twin serve
	// sets 500 µs; bulk writers (imports) leave it off.
	Pause time.Duration
}

// pacedItems is how many objects or samples WriteBatch encodes and puts
// between two pauses (Options.Pause): ~1-2.5 ms of CPU on a busy core.
const pacedItems = 512

// pacer calls pause once per pacedItems ticks; a nil pause never.
type pacer struct {
	pause func()
	left  int
}

func (p *pacer) tick() {
	if p.pause == nil {
		return
	}
	if p.left++; p.left >= pacedItems {
		p.left = 0
		p.pause()
	}
}

// Store is the bbolt store. It is safe for concurrent use (bbolt serialises
// writers; readers run in parallel).
type Store struct {
	db    *bolt.DB
	log   *slog.Logger
	chunk uint64       // history chunk in ns, fixed per file
	seed  maphash.Seed // putSamples' group hash
	// groupMask is ANDed with that hash: all ones; a test sets few bits
	// so that groups share hashes (the clash path).
	groupMask uint64
	// corrupt counts records found undecodable by Load and quarantined.
	corrupt prometheus.Counter
	// sampleBytes is about what the last flush's samples took each in
	// history values, to size the next flush's arena at once: grown by
	// doubling from a guess of 40 B, the arena's copies were half of the
	// history's allocations, ~2.5 MB/s at 20k samples/s (issue 16 goal 6:
	// what is allocated sets how often the GC runs).
	sampleBytes atomic.Int64
	// histVals and tlChunks are the reused value memory of history and
	// replay chunk writes (txBuf).
	histVals, tlChunks txBuf
	// pause sleeps Options.Pause inside WriteBatch; nil: never.
	pause func()
}

var (
	_ twin.Store          = (*Store)(nil)
	_ twin.IndicatorStore = (*Store)(nil)
)

var (
	historyBucket = []byte("_history")
	metaBucket    = []byte("_meta")
)

// PageSize is the bbolt page size of a file Open creates (a file keeps the
// size it was created with). Why 16 KiB, not the OS page (4 KiB): bbolt
// writes a commit's dirty pages one pwrite each, and a writer flush under
// telemetry dirties hundreds (the current history chunk's leaves, the
// moved objects', the timeline's chunk); with 4x fewer, larger pages a
// commit cost 1.6-2.3x less CPU (BenchmarkFlush/WriteBatch, 10,000 samples
// and states a flush: Tx.Commit 1.93/2.62 s -> 1.20/1.12 s of CPU over 60
// flushes, alternating, load 8-9). In the server (K=0 HTTP drive, 35k
// updates/s) the commit went from 7.2 to 5.6 % of the CPU, but inserting
// into the larger leaves costs a little more (putSamples 9.9 -> 10.7 %):
// the store's share fell 18.0 -> 17.0 % (issue 16 goal 1). A sparse update
// rewrites a 16 KiB leaf instead of 4 KiB: more bytes only where there
// are few to write.
const PageSize = 16 << 10

// Open opens (creating if needed) dir/twin.db.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.HistoryChunk <= 0 {
		opts.HistoryChunk = DefaultHistoryChunk
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("boltstore: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "twin.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType, PageSize: PageSize})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: %s is locked by another process (is another twin serve running with this --data?): %w", path, err)
	}
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return nil, fmt.Errorf("boltstore: %s is damaged (%w): %s", path, err, recoverHint(path))
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	chunk := uint64(opts.HistoryChunk)
	err = db.Update(func(tx *bolt.Tx) error {
		names := [][]byte{historyBucket, chunkBucket, metaBucket, quarantineBucket, indicatorsBucket, indicatorObjsBucket}
		for _, l := range twin.StoredLayers {
			names = append(names, []byte(l))
		}
		for _, n := range names {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return fmt.Errorf("bucket %s: %w", n, err)
			}
		}
		m := tx.Bucket(metaBucket)
		if v := m.Get([]byte(metaHistoryChunk)); len(v) == 8 && binary.BigEndian.Uint64(v) > 0 {
			chunk = binary.BigEndian.Uint64(v)
			return nil
		}
		return m.Put([]byte(metaHistoryChunk), binary.BigEndian.AppendUint64(nil, chunk))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	st := &Store{db: db, log: opts.Logger, chunk: chunk, seed: maphash.MakeSeed(), groupMask: math.MaxUint64,
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_store_corrupt_records_total",
			Help: "Stored records found undecodable at load and moved to the store's quarantine (the twin started without them)."})}
	if d := opts.Pause; d > 0 {
		st.pause = func() { time.Sleep(d) }
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(st.corrupt)
	}
	return st, nil
}

// recoverHint says how to recover a file whose bbolt page structure (not
// just one record) is damaged: the store cannot tell which objects are
// lost, so it refuses to start rather than start with a partial city.
func recoverHint(path string) string {
	return fmt.Sprintf("check it with `bbolt check %s` (go install go.etcd.io/bbolt/cmd/bbolt@v1.5.0); "+
		"if it reports errors, stop the server, move the file aside and restore a backup "+
		"(or start empty and re-import), or try `bbolt compact -o NEW %s`, which copies what is still readable", path, path)
}

// Close closes the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close: %w", err)
	}
	return nil
}

// Ping reports whether the file is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return ctx.Err() })
}

// markBadKey marks bbolt's refusals of a key or value (empty or too
// large) as twin.ErrBadData: the record cannot be stored, however often it
// is retried. Other errors (I/O, a closed transaction) are left as they are.
func markBadKey(err error) error {
	if errors.Is(err, berrors.ErrKeyRequired) || errors.Is(err, berrors.ErrKeyTooLarge) || errors.Is(err, berrors.ErrValueTooLarge) {
		return fmt.Errorf("%w: %w", twin.ErrBadData, err)
	}
	return err
}

func layerBucket(tx *bolt.Tx, l twin.Layer) (*bolt.Bucket, error) {
	if _, err := twin.ParseStoredLayer(string(l)); err != nil {
		return nil, err
	}
	return tx.Bucket([]byte(l)), nil
}

// Upsert writes the features in one transaction, keeping a stored object
// whose version is higher.
func (s *Store) Upsert(ctx context.Context, fs []*twin.Feature) error {
	if len(fs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putFeatures(tx, fs, &pacer{}) }); err != nil {
		return fmt.Errorf("boltstore: upsert %d features: %w", len(fs), err)
	}
	return nil
}

// putFeatures writes features in key order (layer, name), so each leaf page
// is visited once; encoded records share arenas that bbolt keeps until
// commit.
func putFeatures(tx *bolt.Tx, fs []*twin.Feature, pace *pacer) error {
	if !slices.IsSortedFunc(fs, cmpFeature) {
		fs = slices.Clone(fs)
		slices.SortFunc(fs, cmpFeature)
	}
	var arena []byte
	var b *bolt.Bucket
	var layer twin.Layer
	var err error
	for _, f := range fs {
		if b == nil || f.ID.Layer != layer {
			if b, err = layerBucket(tx, f.ID.Layer); err != nil {
				return fmt.Errorf("%s: %w: %w", f.ID, twin.ErrBadData, err)
			}
			layer = f.ID.Layer
		}
		key := []byte(f.ID.Name)
		if old := b.Get(key); old != nil {
			if v, _ := binary.Uvarint(old); v > f.Version {
				continue
			}
		}
		if cap(arena)-len(arena) < 4096 {
			arena = make([]byte, 0, 256<<10) // earlier records keep the old arena
		}
		v0 := len(arena)
		arena, err = encodeFeature(arena, f)
		if err != nil {
			return fmt.Errorf("%s: %w: %w", f.ID, twin.ErrBadData, err)
		}
		if err := b.Put(key, arena[v0:len(arena):len(arena)]); err != nil {
			return fmt.Errorf("%s: %w", f.ID, markBadKey(err))
		}
		pace.tick()
	}
	return nil
}

func cmpFeature(a, b *twin.Feature) int {
	if c := cmp.Compare(a.ID.Layer, b.ID.Layer); c != 0 {
		return c
	}
	return cmp.Compare(a.ID.Name, b.ID.Name)
}

// Delete removes objects; absent ones are ignored.
func (s *Store) Delete(ctx context.Context, ids []twin.ID) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return deleteIDs(tx, ids) }); err != nil {
		return fmt.Errorf("boltstore: delete: %w", err)
	}
	return nil
}

func deleteIDs(tx *bolt.Tx, ids []twin.ID) error {
	for _, id := range ids {
		b, err := layerBucket(tx, id.Layer)
		if err != nil {
			return fmt.Errorf("%s: %w: %w", id, twin.ErrBadData, err)
		}
		if err := b.Delete([]byte(id.Name)); err != nil {
			return fmt.Errorf("%s: %w", id, markBadKey(err))
		}
	}
	return nil
}

// WriteBatch persists a writer's whole flush in ONE transaction (one fsync):
// deletes first, then upserts (a stored higher version wins, as in Upsert),
// then samples (as AppendHistory), then meta key = value when key is not
// empty. All or nothing: after a crash either the whole batch, meta
// included, is on disk or none of it is. twin/writer uses it when the store
// has it.
func (s *Store) WriteBatch(ctx context.Context, deletes []twin.ID, upserts []*twin.Feature, samples []twin.Sample, metaKey string, metaValue []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	vals := s.histVals.take()
	defer func() { s.histVals.give(vals) }()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := deleteIDs(tx, deletes); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		pace := &pacer{pause: s.pause}
		if err := putFeatures(tx, upserts, pace); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		if err := s.putSamples(tx, samples, &vals, pace); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if metaKey != "" {
			return tx.Bucket(metaBucket).Put([]byte(metaKey), bytes.Clone(metaValue))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: write batch (%d deletes, %d upserts, %d samples): %w", len(deletes), len(upserts), len(samples), err)
	}
	return nil
}

// Get reads one object; twin.ErrNotFound when absent.
func (s *Store) Get(ctx context.Context, id twin.ID) (*twin.Feature, error) {
	var f *twin.Feature
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := layerBucket(tx, id.Layer)
		if err != nil {
			return err
		}
		v := b.Get([]byte(id.Name))
		if v == nil {
			return twin.ErrNotFound
		}
		f, err = decodeFeature(id, v, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: get %s: %w", id, err)
	}
	return f, nil
}

// Load streams every object to fn, layer by layer in key order, from one
// read transaction (a consistent snapshot). fn runs on the calling goroutine.
//
// Decoding (props JSON, WKB) is most of a load's cost, so records are
// decoded in waves of loadChunk per CPU in parallel, each goroutine with its
// own place cache, then handed to fn in order: a million demo buildings decode
// in about half the time on two cores.
func (s *Store) Load(ctx context.Context, fn func(*twin.Feature) error) error {
	workers := max(1, runtime.GOMAXPROCS(0))
	ins := make([]*twin.PlaceCache, workers)
	for i := range ins {
		ins[i] = twin.NewPlaceCache()
	}
	type rec struct{ k, v []byte }
	recs := make([]rec, 0, workers*loadChunk)
	out := make([]*twin.Feature, workers*loadChunk)
	bads := make([][]twin.Quarantined, workers)
	var bad []twin.Quarantined
	flush := func(l twin.Layer) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			lo := w * loadChunk
			if lo >= len(recs) {
				break
			}
			hi := min(lo+loadChunk, len(recs))
			wg.Add(1)
			go func(w, lo, hi int) {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					id := twin.NewID(l, string(recs[i].k))
					f, err := safeDecode(id, recs[i].v, ins[w])
					if err != nil {
						// One bad record must not stop the start: it is set
						// aside (below) and the twin loads the rest.
						bads[w] = append(bads[w], twin.Quarantined{Kind: twin.QuarantineLoad, ID: id,
							Err: err.Error(), At: time.Now(), Data: bytes.Clone(recs[i].v)})
						continue
					}
					out[i] = f
				}
			}(w, lo, hi)
		}
		wg.Wait()
		for w := range bads {
			bad = append(bad, bads[w]...)
			bads[w] = bads[w][:0]
		}
		for i := range recs {
			f := out[i]
			out[i] = nil
			if f == nil {
				continue
			}
			if err := fn(f); err != nil {
				return err
			}
		}
		recs = recs[:0]
		return nil
	}
	stop := s.prefetch()
	err := s.view(func(tx *bolt.Tx) error {
		for _, l := range twin.StoredLayers {
			c := tx.Bucket([]byte(l)).Cursor()
			// k and v stay valid (mmap'd) until the transaction ends.
			for k, v := c.First(); k != nil; k, v = c.Next() {
				recs = append(recs, rec{k, v})
				if len(recs) == cap(recs) {
					if err := flush(l); err != nil {
						return err
					}
				}
			}
			if err := flush(l); err != nil {
				return err
			}
		}
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return s.quarantineCorrupt(bad)
	}
	return nil
}

// safeDecode decodes a record, turning a panic on malformed bytes into an
// error: a damaged record is quarantined, never a crash at start.
func safeDecode(id twin.ID, v []byte, in *twin.PlaceCache) (f *twin.Feature, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("decode: %v", r)
		}
	}()
	f, err = decodeFeature(id, v, in)
	if err != nil {
		err = fmt.Errorf("decode: %w", err)
	}
	return f, err
}

// view runs a read transaction; a panic inside bbolt (it panics on a
// damaged page rather than returning an error) becomes an error saying how
// to recover the file.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("boltstore: %s is damaged (bbolt: %v): %s", s.db.Path(), r, recoverHint(s.db.Path()))
		}
	}()
	return s.db.View(fn)
}

// quarantineCorrupt moves records Load could not decode from their layer
// bucket to the quarantine bucket (raw bytes kept, so nothing is destroyed
// and an operator can repair them), in one transaction, and reports each
// one: an error log line, the twin_store_corrupt_records_total counter and
// Quarantined. The twin has started without them.
func (s *Store) quarantineCorrupt(bad []twin.Quarantined) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, q := range bad {
			b := tx.Bucket([]byte(q.ID.Layer))
			if v := b.Get([]byte(q.ID.Name)); v == nil || !bytes.Equal(v, q.Data) {
				continue // rewritten meanwhile: no longer the bad record
			}
			if err := b.Delete([]byte(q.ID.Name)); err != nil {
				return err
			}
		}
		return putQuarantine(tx, bad)
	})
	if err != nil {
		return fmt.Errorf("boltstore: quarantine %d corrupt records: %w", len(bad), err)
	}
	for _, q := range bad {
		s.log.Error("corrupt record in the embedded store: moved to its quarantine, the twin starts without it",
			"layer", q.ID.Layer, "name", twin.PrintableName(q.ID.Name), "err", q.Err, "bytes", len(q.Data))
	}
	s.corrupt.Add(float64(len(bad)))
	s.log.Error("embedded store: corrupt records quarantined at start", "count", len(bad), "file", s.db.Path())
	return nil
}

// prefetch reads the file front to back on another goroutine until the
// returned stop is called, so that the cursor's page faults (leaf pages in
// key order, scattered over the file) hit the page cache: on this project's
// dev VM a cold 950 MB store (1M demo buildings) loaded in 27 s through
// faults alone, while reading it sequentially takes 2.2 s. With the file
// already cached it costs a memory copy on a spare core.
func (s *Store) prefetch() (stop func()) {
	f, err := os.Open(s.db.Path())
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 4<<20)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := f.Read(buf); err != nil {
				return // io.EOF: all of it is cached
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		f.Close()
	}
}

// loadChunk is how many records one goroutine decodes per wave of Load.
const loadChunk = 2048

// GetMeta reads a named value; nil, nil when absent.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: get meta %q: %w", key, err)
	}
	return out, nil
}

// PutMeta writes a named value.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put([]byte(key), append([]byte{}, value...))
	})
	if err != nil {
		return fmt.Errorf("boltstore: put meta %q: %w", key, err)
	}
	return nil
}
