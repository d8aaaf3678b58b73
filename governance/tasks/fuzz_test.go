package tasks

import (
	"testing"

	"github.com/citytwin/citytwin/auth"
)

// FuzzBodies feeds arbitrary bytes to the loop's body decoders and on to
// the service: nothing may panic, and whatever decodes is validated.
func FuzzBodies(f *testing.F) {
	f.Add([]byte(`{"title":"t","targets":["500103"],"due":"2026-03-02T10:00:00Z","requires":["ack"]}`))
	f.Add([]byte(`{"note":"done","photos":["s3://x"],"outcome":"penalised"}`))
	f.Add([]byte(`{"kind":"rectification","subject":"buildings/b1","due":"2026-03-02T10:00:00Z","risk_level":2}`))
	f.Add([]byte(`{"targets":["500105001"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, s := city(t)
		p := op("500000")
		var d DirectiveReq
		if DecodeOne(b, &d) == nil {
			_, _ = s.CreateDirective(p, d)
		}
		var a ActionReq
		if DecodeOne(b, &a) == nil {
			_ = a.check()
		}
		var r RectifyReq
		if DecodeOne(b, &r) == nil {
			_, _ = s.CreateRectification(auth.Principal{Subject: "x", Role: auth.Admin, Region: "500105"}, r)
		}
		var fw ForwardReq
		if DecodeOne(b, &fw) == nil {
			_, _ = s.Forward(p, "none", fw)
		}
	})
}
