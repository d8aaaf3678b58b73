package journal

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/citytwin/citytwin/spine"
)

// HeaderBatch marks a log message carrying several entries (its value is
// their count). Its body is the entries one after the other, each as four
// length-prefixed (uvarint) fields: name, source, topic, payload. A
// message without it is one entry: headers HeaderName, HeaderSource,
// HeaderTopic and the payload as body (what every server wrote before
// batches, so an old log applies as it is).
const HeaderBatch = "Twin-Batch"

// Batch bounds: one log message holds at most MaxBatch entries and, past
// its first entry, at most MaxBatchBytes of payload (well under NATS's
// default 1 MB max_payload).
const (
	MaxBatch      = 256
	MaxBatchBytes = 128 << 10
)

// BatchLen is how many of es, from the first, go into one log message.
func BatchLen(es []Entry) int {
	n, size := 0, 0
	for _, e := range es {
		size += entrySize(e)
		if n > 0 && (n == MaxBatch || size > MaxBatchBytes) {
			break
		}
		n++
	}
	return n
}

// batchMsg builds the log message of es and its deduplication id. One
// entry keeps its own id (name@ts), so a broker redelivery or a second
// server's copy is stored once. A batch's id is made of its entries' ids:
// the same batch published again (a retried append) is stored once; a
// line that comes again in another batch is stored again and absorbed
// by the twin's duplicate rule when applied.
func batchMsg(es []Entry) (*nats.Msg, string) {
	if len(es) == 1 {
		e := es[0]
		// The keys are canonical already: set them directly (Header.Set
		// canonicalizes every key, per message, on the ingest's hot path).
		return &nats.Msg{Subject: spine.TelemetrySubject, Data: e.Payload, Header: nats.Header{
			HeaderName: {e.Name}, HeaderSource: {e.Source}, HeaderTopic: {e.Topic},
		}}, MsgID(e.Name, e.TS)
	}
	size := 0
	for _, e := range es {
		size += len(e.Name) + len(e.Source) + len(e.Topic) + len(e.Payload) + 4*binary.MaxVarintLen32
	}
	b := make([]byte, 0, size)
	h := fnv.New64a()
	var ts [8]byte
	for _, e := range es {
		for _, f := range [...]string{e.Name, e.Source, e.Topic} {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
		b = binary.AppendUvarint(b, uint64(len(e.Payload)))
		b = append(b, e.Payload...)
		_, _ = h.Write([]byte(e.Name))
		binary.BigEndian.PutUint64(ts[:], uint64(e.TS.UnixMicro()))
		_, _ = h.Write(ts[:])
	}
	id := "batch:" + MsgID(es[0].Name, es[0].TS) + ":" + strconv.Itoa(len(es)) + ":" + strconv.FormatUint(h.Sum64(), 36)
	return &nats.Msg{Subject: spine.TelemetrySubject, Data: b, Header: nats.Header{
		HeaderBatch: {strconv.Itoa(len(es))}, HeaderSource: {es[0].Source},
	}}, id
}

// line is one entry read back from the log; its fields alias the
// message's body.
type line struct {
	name, source   string
	topic, payload []byte
}

var errBatch = errors.New("journal: malformed batch")

// decodeBatch reads the entries of a batch body.
func decodeBatch(data []byte, n int) ([]line, error) {
	if n <= 0 || n > 1<<20 {
		return nil, errBatch
	}
	out := make([]line, 0, min(n, MaxBatch*4))
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, false
		}
		f := data[k : k+int(l)]
		data = data[k+int(l):]
		return f, true
	}
	for len(data) > 0 {
		var fs [4][]byte
		for i := range fs {
			f, ok := field()
			if !ok {
				return nil, errBatch
			}
			fs[i] = f
		}
		out = append(out, line{name: string(fs[0]), source: source(fs[1]), topic: fs[2], payload: fs[3]})
	}
	if len(out) != n {
		return nil, errBatch
	}
	return out, nil
}

// source returns the metrics label without an allocation for the known ones.
func source(b []byte) string {
	switch string(b) {
	case "mqtt":
		return "mqtt"
	case "http":
		return "http"
	}
	return string(b)
}
