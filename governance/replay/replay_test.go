package replay

import (
	"net/url"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	for _, bad := range []string{"", "at=x", "at=2027-01-01T00:00:00Z", "at=1&layers=roads", "at=1&layers=nope",
		"at=1&bbox=1,2,3", "at=1&foo=1", "at=-5"} {
		v, _ := url.ParseQuery(bad)
		if _, err := ParseQuery(v, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	v, _ := url.ParseQuery("at=2026-05-01T07:00:00%2B08:00&layers=vehicles,alerts,vehicles&bbox=106,29,107,30")
	q, err := ParseQuery(v, now)
	if err != nil || len(q.Layers) != 2 || !q.HasBBox || !q.At.Equal(time.Date(2026, 4, 30, 23, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v %v", q, err)
	}
	v, _ = url.ParseQuery("at=1777600000000")
	if q, err := ParseQuery(v, now); err != nil || q.At.UnixMilli() != 1777600000000 || len(q.Layers) < 5 {
		t.Fatalf("epoch ms: %+v %v", q, err)
	}
}

// FuzzParseQuery: any query string parses or fails cleanly.
func FuzzParseQuery(f *testing.F) {
	f.Add("at=2026-05-01T07:00:00Z&layers=vehicles&bbox=106,29,107,30")
	f.Add("at=1&layers=,,")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, time.Now())
		if err == nil && (len(q.Layers) == 0 || q.At.IsZero()) {
			t.Fatalf("accepted without layers or time: %q", s)
		}
	})
}
