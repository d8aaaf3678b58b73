package writer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/citytwin/citytwin/twin"
)

// A batch that fails with twin.ErrBadData holds at least one row the store
// cannot take (a NUL in a string, invalid UTF-8 in a name, a NaN the
// encoding refuses). Retrying it whole would fail forever and every later
// change would pile up behind it, so the writer isolates the row instead:
// it splits the batch in halves, writes each half, and splits again only
// the halves that fail with ErrBadData, down to single rows (O(k log n)
// store calls for k bad rows among n). Everything else is written; the bad
// rows are quarantined (twin.Quarantiner), counted and logged; then the
// feed sequence is stored. Any other error during isolation (the store went
// away, or an error that does not blame the data) aborts it and the whole
// batch is kept and retried like any failed flush: every write is
// idempotent, so the rows already written are written again harmlessly.
//
// Halves are written in order, left before right, and deletes come before
// upserts and samples, so a delete and a re-creation of one object in the
// same batch land in the same order as in a whole-batch write.

// item is one row of a batch.
type item struct {
	del twin.ID       // a delete when f and s are nil
	f   *twin.Feature // an upsert
	s   *twin.Sample  // a history sample
}

// failure is a single row the store refused.
type failure struct {
	it  item
	err error
}

func (it item) id() twin.ID {
	switch {
	case it.f != nil:
		return it.f.ID
	case it.s != nil:
		return it.s.ID
	}
	return it.del
}

// items lists the batch's rows: deletes, then upserts, then samples.
func (w *Writer) items() []item {
	its := make([]item, 0, w.pending())
	for id := range w.deletes {
		its = append(its, item{del: id})
	}
	for _, f := range w.upserts {
		its = append(its, item{f: f})
	}
	for i := range w.samples {
		its = append(its, item{s: &w.samples[i]})
	}
	return its
}

// isolate writes the batch row group by row group after a whole-batch write
// failed with ErrBadData (see above), then quarantines the refused rows. It
// returns nil when every row was written or quarantined.
func (w *Writer) isolate(ctx context.Context, cause error) error {
	its := w.items()
	w.log.Warn("a batch was refused for its data; isolating the bad rows", "rows", len(its), "err", cause)
	var bad []failure
	if err := w.bisect(ctx, its, cause, &bad); err != nil {
		return err
	}
	if len(bad) == 0 {
		return nil // the error did not come back: nothing to set aside
	}
	qs := make([]twin.Quarantined, len(bad))
	now := time.Now()
	for i, b := range bad {
		qs[i] = quarantineRecord(b, now)
	}
	if q, ok := w.st.(twin.Quarantiner); ok {
		if err := q.Quarantine(ctx, qs); err != nil {
			return fmt.Errorf("writer: quarantine %d rows: %w", len(qs), err)
		}
	}
	for _, q := range qs {
		w.log.Error("store refused a row; quarantined (the rest of its batch was written)",
			"kind", q.Kind, "layer", q.ID.Layer, "name", twin.PrintableName(q.ID.Name), "version", q.Version,
			"err", q.Err, "record", string(q.Data))
	}
	w.m.quarantined.Add(float64(len(qs)))
	w.quarantined += len(qs)
	return nil
}

// bisect writes its (whose write failed with err), splitting parts that
// fail with ErrBadData down to single rows, collected in bad. Any other
// error is returned at once.
func (w *Writer) bisect(ctx context.Context, its []item, err error, bad *[]failure) error {
	if !errors.Is(err, twin.ErrBadData) {
		return err
	}
	if len(its) == 1 {
		*bad = append(*bad, failure{its[0], err})
		return nil
	}
	mid := len(its) / 2
	for _, part := range [][]item{its[:mid], its[mid:]} {
		if err := w.writeItems(ctx, part); err != nil {
			if err := w.bisect(ctx, part, err, bad); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeItems writes rows without the feed sequence: one WriteBatch for a
// BatchWriter, else Delete, Upsert and AppendHistory in chunks.
func (w *Writer) writeItems(ctx context.Context, its []item) error {
	var dels []twin.ID
	var fs []*twin.Feature
	var ss []twin.Sample
	for _, it := range its {
		switch {
		case it.f != nil:
			fs = append(fs, it.f)
		case it.s != nil:
			ss = append(ss, *it.s)
		default:
			dels = append(dels, it.del)
		}
	}
	if bw, ok := w.st.(BatchWriter); ok {
		return bw.WriteBatch(ctx, dels, fs, ss, "", nil)
	}
	for i := 0; i < len(dels); i += w.opts.BatchSize {
		if err := w.st.Delete(ctx, dels[i:min(i+w.opts.BatchSize, len(dels))]); err != nil {
			return err
		}
	}
	for i := 0; i < len(fs); i += w.opts.BatchSize {
		if err := w.st.Upsert(ctx, fs[i:min(i+w.opts.BatchSize, len(fs))]); err != nil {
			return err
		}
	}
	for i := 0; i < len(ss); i += w.opts.BatchSize {
		if err := w.st.AppendHistory(ctx, ss[i:min(i+w.opts.BatchSize, len(ss))]); err != nil {
			return err
		}
	}
	return nil
}

// sampleRecord is a quarantined sample's JSON form.
type sampleRecord struct {
	ID       string        `json:"id"`
	Time     time.Time     `json:"ts"`
	Pos      []float64     `json:"pos,omitempty"`
	SpeedKmh *float64      `json:"speed_kmh,omitempty"`
	Heading  *float64      `json:"heading,omitempty"`
	Values   twin.Readings `json:"values,omitzero"`
}

func quarantineRecord(b failure, at time.Time) twin.Quarantined {
	q := twin.Quarantined{ID: b.it.id(), Err: b.err.Error(), At: at}
	var v any
	switch {
	case b.it.f != nil:
		q.Kind, q.Version, v = twin.QuarantineUpsert, b.it.f.Version, b.it.f
	case b.it.s != nil:
		s := b.it.s
		r := sampleRecord{ID: s.ID.String(), Time: s.Time, Values: s.Values}
		if s.HasPos {
			r.Pos = []float64{s.Pos[0], s.Pos[1]}
		}
		if s.HasSpeed {
			r.SpeedKmh = &s.SpeedKmh
		}
		if s.HasHeading {
			r.Heading = &s.Heading
		}
		q.Kind, v = twin.QuarantineSample, r
	default:
		q.Kind, v = twin.QuarantineDelete, map[string]string{"id": q.ID.String()}
	}
	data, err := json.Marshal(v)
	if err != nil {
		// A NaN or an unsupported value: keep what can be printed.
		data, _ = json.Marshal(map[string]string{"unencodable": fmt.Sprintf("%+v", v), "err": err.Error()})
	}
	q.Data = data
	return q
}
