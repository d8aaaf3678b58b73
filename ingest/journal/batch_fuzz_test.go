package journal

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeBatch: a telemetry log message marked as a batch, whoever
// wrote it, is decoded to exactly the entries its header counts or refused
// with an error, never a panic; entries that decode, journaled again (as
// Submit journals them), decode to the same fields.
func FuzzDecodeBatch(f *testing.F) {
	ts := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	m, _ := batchMsg([]Entry{
		{Source: "mqtt", Topic: "twin/telemetry/v1", Name: "v1", TS: ts, Payload: []byte(`{"ts":"2026-12-04T08:00:00Z","lon":106.5,"lat":29.5}`)},
		{Source: "http", Topic: "twin/deadletter", Name: "渝A·12345", TS: ts.Add(time.Second), Payload: []byte("{}")},
	})
	f.Add(m.Data, 2)
	f.Add(m.Data, 3)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		ls, err := decodeBatch(data, n)
		if err != nil {
			return
		}
		if len(ls) != n {
			t.Fatalf("%d entries decoded, the header says %d", len(ls), n)
		}
		if n < 2 {
			return // a batch message holds two or more; one entry travels as a plain message
		}
		es := make([]Entry, len(ls))
		for i, l := range ls {
			es[i] = Entry{Source: l.source, Topic: string(l.topic), Name: l.name, TS: ts, Payload: l.payload}
		}
		again, _ := batchMsg(es)
		ls2, err := decodeBatch(again.Data, n)
		if err != nil {
			t.Fatalf("journaled again: %v", err)
		}
		for i := range ls {
			if ls2[i].name != ls[i].name || ls2[i].source != ls[i].source || !bytes.Equal(ls2[i].topic, ls[i].topic) || !bytes.Equal(ls2[i].payload, ls[i].payload) {
				t.Fatalf("entry %d changed when journaled again: %+v -> %+v", i, ls[i], ls2[i])
			}
		}
	})
}
