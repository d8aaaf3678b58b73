package indicators

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParseQuery: any query string either parses to whole buckets, from
// before to, at most MaxBuckets of them, or is refused with ErrBadParams;
// nothing panics or loops for long.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "step=hour", "step=day&from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z", "from=0&to=86400000",
		"step=week", "from=yesterday", "to=2026-03-01T00:00:00+08:00", "from=9999-12-31T23:59:59Z",
		"from=-1", "step=hour&from=1970-01-01T00:00:00Z", "a=b", "from=2026-03-01T00:00:00Z&from=x", "%zz",
	} {
		f.Add(s)
	}
	loc := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, now, loc)
		if err != nil {
			return
		}
		if !q.From.Before(q.To) || bucketStart(q.Step, q.From, loc) != q.From || bucketStart(q.Step, q.To, loc) != q.To {
			t.Fatalf("%q: from %v to %v not whole %s buckets", raw, q.From, q.To, q.Step)
		}
		n := 0
		for b := q.From; b.Before(q.To); b = bucketEnd(q.Step, b, loc) {
			n++
		}
		if n > MaxBuckets {
			t.Fatalf("%q: %d buckets", raw, n)
		}
	})
}

// FuzzDecodeFigures: a stored bucket that is not what the consumer wrote
// (a damaged row, a hand edit) is refused or rendered; never a panic.
func FuzzDecodeFigures(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"alerts_raised":{"red":1},"sla":{"accept":{"met":1,"breached":2}},"durations":{"accept":{"n":3,"ms":[1,2,3]}}}`,
		`{"gauges":{"at":"2026-03-01T00:00:00Z","alerts_open":{"red":2}}}`, `{"durations":{"accept":{"n":9,"ms":[]}}}`,
		`{"durations":{"accept":null},"sla":{"accept":null}}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeFigures(b)
		if err != nil {
			return
		}
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		_ = toBucket(g, t0, t0.Add(time.Hour))
	})
}
