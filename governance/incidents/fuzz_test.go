package incidents

import (
	"testing"

	"github.com/citytwin/citytwin/auth"
)

// FuzzReportBody: any POST /api/incidents body either decodes and files (or
// is refused with an error) or is refused by DecodeReport; nothing panics,
// and a filed report always names the token's subject as reporter.
func FuzzReportBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"litter","lon":106.56,"lat":29.58,"description":"bags"}`,
		`{"type":"litter","lon":106.56,"lat":29.58,"reporter":"mallory"}`,
		`{"type":"","lon":0,"lat":0}`, `null`, `[]`, `{"type":"x"} {}`, `{"lon":1e400}`, "{\"type\":\"\u0000\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReport(b)
		if err != nil {
			return
		}
		_, s := accessSetup(t, nil)
		p := auth.Principal{Subject: "alice", Role: auth.Operator, Region: "500105"}
		inc, _, err := s.Report(p, r)
		if err == nil && inc.Prop("reporter") != "alice" {
			t.Fatalf("reporter %q", inc.Prop("reporter"))
		}
	})
}

// FuzzActionBody: any action body decodes or is refused; acting with what
// decodes never panics.
func FuzzActionBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"worker":"w"}`, `{"note":"done"}`, `{"worker":1}`, `{} x`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAction(b)
		if err != nil {
			return
		}
		_, s := accessSetup(t, nil)
		city := auth.Principal{Subject: "op", Role: auth.Operator, Region: auth.CityCode}
		inc, _, err := s.Report(city, Report{Type: "t", Lon: west[0], Lat: west[1]})
		if err != nil {
			t.Fatal(err)
		}
		for _, act := range []string{"dispatch", "accept", "close"} {
			_, _ = s.Act(city, inc.ID.Name, act, a)
		}
	})
}
