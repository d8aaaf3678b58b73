package timeline

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/citytwin/citytwin/twin"
)

// Runs of the change log. The leader publishes every change to the change
// log in runs, each encoded and most S2-compressed (twin/changelog), and
// the change log hands this recorder each run it published (Offer) before
// committing its changes. When the recorder then reads those changes from
// the feed it keeps the run as it is, as a twin.AppendLogRun blob, instead
// of encoding and compressing every change a second time: that was a sixth
// of the server's CPU under telemetry (issue 16 goal 1). The replay reads
// both forms to the same records (twin.DecodeRecords).
//
// A run is kept when it is all the recorder would record of its changes:
// none of them a building's (buildings are recorded as versions), their
// times in one bucket (a chunk's records lie in its bucket), and at least
// half of them recorded (a run of History samples, or the skeleton's
// changes, would cost more to keep than to encode what matters of it).
// Otherwise its changes are recorded as any other, from the feed. So are
// the changes of runs the recorder was not handed: before it started, a
// former leader's, or offered while it lagged by maxOfferedBytes.

// logKey marks the key of a flush's chunk of runs, beside the chunk of
// its own records under the same flush key (the seq). basePartKey uses
// bits 48 up for a base's parts: they reach bit 62 only past 2^14 parts
// of baseChunk records, half a billion objects.
const logKey = 1 << 62

// maxOfferedBytes bounds the runs offered and not yet read: a recorder
// that stops reading (its store away) lets the feed keep the changes,
// not the offers.
const maxOfferedBytes = 64 << 20

// offered is a run as the change log published it.
type offered struct {
	lo, hi uint64
	flags  byte
	body   []byte
}

// openRun is the offered run whose changes the recorder is reading.
type openRun struct {
	offered
	n        int                   // its changes read so far
	recs     []twin.TimelineRecord // what the recorder would record of them
	min, max int64                 // their times
	building bool                  // one of them is a building's
}

// keptRun is a run to be stored as it is.
type keptRun struct {
	offered
	bucket, min, max int64
}

// Offer hands the recorder a run the change log published: changes lo..hi,
// body as stored and how (twin.LogRunS2, twin.LogRunFramed); body is
// copied. Called by the change log's publisher before it commits the
// changes, so before read meets them; safe for concurrent use with Run.
func (r *Recorder) Offer(lo, hi uint64, flags byte, body []byte) {
	r.offerMu.Lock()
	defer r.offerMu.Unlock()
	if r.offeredBytes+len(body) > maxOfferedBytes {
		r.m.runsDropped.Inc()
		return
	}
	cp, _ := r.bodies.Get().(*[]byte)
	if cp == nil {
		cp = new([]byte)
	}
	r.offers = append(r.offers, offered{lo: lo, hi: hi, flags: flags, body: append((*cp)[:0], body...)})
	r.offeredBytes += len(body)
}

// take records feed change c: as part of the offered run that holds it,
// or on its own (add).
func (r *Recorder) take(c *twin.Change) {
	if r.run.body == nil && !r.openRun(c.Seq) {
		r.add(c)
		return
	}
	run := &r.run
	run.n++
	id := c.ID()
	switch {
	case c.Kind == twin.History, !isCheckpointed(id.Layer) && id.Layer != twin.Buildings:
	case id.Layer == twin.Buildings:
		run.building = true
		r.add(c)
	default:
		rec := twin.ChangeRecord(c)
		if len(run.recs) == 0 {
			run.min, run.max = rec.Time, rec.Time
		}
		run.min, run.max = min(run.min, rec.Time), max(run.max, rec.Time)
		run.recs = append(run.recs, rec)
	}
	if c.Seq == run.hi {
		r.closeRun()
	}
}

// openRun makes the offered run that starts at seq the open one. Offers
// the feed has gone past are dropped, and so is one that started before
// seq (the recorder began inside it): its changes are recorded one by
// one.
func (r *Recorder) openRun(seq uint64) bool {
	r.offerMu.Lock()
	defer r.offerMu.Unlock()
	i := 0
	for i < len(r.offers) && r.offers[i].lo < seq {
		r.offeredBytes -= len(r.offers[i].body)
		r.release(r.offers[i].body)
		i++
	}
	ok := i < len(r.offers) && r.offers[i].lo == seq
	if ok {
		r.run.offered = r.offers[i]
		r.offeredBytes -= len(r.offers[i].body)
		i++
	}
	if i > 0 {
		clear(r.offers[:i])
		r.offers = slices.Delete(r.offers, 0, i)
	}
	return ok
}

// closeRun ends the open run: kept as it is, or its records pending as any
// other's.
func (r *Recorder) closeRun() {
	run := &r.run
	if !run.building && len(run.recs) > 0 && 2*len(run.recs) >= run.n && r.bucketOf(run.min) == r.bucketOf(run.max) {
		r.kept = append(r.kept, keptRun{offered: run.offered, bucket: r.bucketOf(run.min), min: run.min, max: run.max})
		r.keptRecords += len(run.recs)
	} else {
		r.pending = append(r.pending, run.recs...)
		r.release(run.body)
	}
	clear(run.recs)
	*run = openRun{recs: run.recs[:0]}
}

// maxChunkBuf is the largest chunk buffer kept from one flush to the next.
const maxChunkBuf = 8 << 20

// keptChunks are the kept runs as chunks under key: one per bucket (a
// run's times lie in one).
func (r *Recorder) keptChunks(key uint64) []twin.TimelineChunk {
	r.chunkBuf = r.chunkBuf[:0] // the last flush's chunks are written (or given up)
	if cap(r.chunkBuf) > maxChunkBuf {
		r.chunkBuf = nil // grown by a backlog's flush: let go rather than held for good
	}
	slices.SortStableFunc(r.kept, func(a, b keptRun) int { return cmp.Compare(a.bucket, b.bucket) })
	var out []twin.TimelineChunk
	for rest := r.kept; len(rest) > 0; {
		c := twin.TimelineChunk{Bucket: rest[0].bucket, Key: key | logKey, Min: rest[0].min, Max: rest[0].max}
		size, n := 1, 0
		for n < len(rest) && rest[n].bucket == c.Bucket {
			size += 1 + binary.MaxVarintLen64 + len(rest[n].body)
			n++
		}
		if cap(r.chunkBuf)-len(r.chunkBuf) < size {
			// Earlier chunks of this flush keep the array they are in.
			r.chunkBuf = make([]byte, 0, max(size, 2*cap(r.chunkBuf)))
		}
		c.Data = r.chunkBuf[len(r.chunkBuf):len(r.chunkBuf)]
		for _, k := range rest[:n] {
			c.Data = twin.AppendLogRun(c.Data, k.flags, k.body)
			c.Min, c.Max = min(c.Min, k.min), max(c.Max, k.max)
		}
		r.chunkBuf = r.chunkBuf[:len(r.chunkBuf)+len(c.Data)]
		c.Data = c.Data[:len(c.Data):len(c.Data)]
		out = append(out, c)
		rest = rest[n:]
	}
	return out
}

// release keeps a run body no run owns any more (dropped, or stored) for
// Offer's next copy; nil is ignored. The change log bounds a run's size,
// so the bodies kept are bounded too.
func (r *Recorder) release(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:0]
	r.bodies.Put(&b)
}
