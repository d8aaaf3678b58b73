package wshub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// The wire protocol (CONTRACT §6), all JSON text frames.
//
// Client -> server:
//
//	{"op":"subscribe","layers":["vehicles","alerts"],"bbox":[w,s,e,n],"since":SEQ}
//
// Every subscribe replaces the connection's one subscription (pan/zoom).
// Subscribes sent faster than the server builds snapshots for one client
// (Options.SnapshotRate) are coalesced: only the latest one waiting is
// answered. A client sending more than Options.MessageRate messages a
// second is closed with 1008 (policy violation).
// Without "since" the server answers {"op":"snapshot","seq":S,"features":[...]}:
// the client replaces its whole state with the features, which are what the
// principal may see of those layers intersecting the bbox at feed sequence S.
// With "since" (the highest seq the client has applied) the server instead
// sends, as deltas, the current state of every object of the view that
// changed after since (or a remove for those that left it); the client keeps
// the rest of its state, so since should only be sent for the same view it
// had. When since has left the feed window (or is further back than
// Options.MaxResume) the answer is {"op":"resync"} followed by a snapshot.
//
// Server -> client, after the snapshot or resume: deltas in increasing seq,
//
//	{"op":"delta","seq":N,"kind":"upsert","feature":{GeoJSON Feature}}
//	{"op":"delta","seq":N,"kind":"remove","feature":{last state the client could see}}
//
// A remove is sent when the object was deleted, left the bbox, or left the
// principal's scope; its feature is the last state that was in view (never
// a state outside the principal's scope). A slow client may miss
// intermediate versions of an object (coalescing), never its latest state.
// {"op":"resync"} may also arrive unprompted (the client's queue overflowed):
// the client drops its state and applies the snapshot that follows.
// Malformed messages get {"op":"error","error":"..."}; the link stays open.

// request is one client->server message.
type request struct {
	Op     string       `json:"op"`
	Layers []string     `json:"layers"`
	BBox   []float64    `json:"bbox"`
	Since  *json.Number `json:"since"`
}

// subscription is a validated subscribe request.
type subscription struct {
	layers []twin.Layer
	bbox   orb.Bound
	since  *uint64
}

// maxLayers bounds layers per subscribe (there are 13 layers; duplicates are folded).
const maxLayers = 32

// parseRequest validates a client message.
func parseRequest(data []byte) (subscription, error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return subscription{}, fmt.Errorf("bad json: %w", err)
	}
	if req.Op != "subscribe" {
		return subscription{}, fmt.Errorf("unknown op %q (want subscribe)", req.Op)
	}
	if len(req.Layers) == 0 || len(req.Layers) > maxLayers {
		return subscription{}, errors.New("layers: want 1..32 layer names")
	}
	var sub subscription
	seen := map[twin.Layer]bool{}
	for _, s := range req.Layers {
		l, err := twin.ParseLayer(s)
		if err != nil {
			return subscription{}, fmt.Errorf("layers: %w", err)
		}
		if !seen[l] {
			seen[l] = true
			sub.layers = append(sub.layers, l)
		}
	}
	if len(req.BBox) != 4 {
		return subscription{}, errors.New("bbox: want [west,south,east,north]")
	}
	w, s, e, n := req.BBox[0], req.BBox[1], req.BBox[2], req.BBox[3]
	for _, v := range req.BBox {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return subscription{}, errors.New("bbox: not finite")
		}
	}
	if w < -180 || e > 180 || s < -90 || n > 90 || w > e || s > n {
		return subscription{}, fmt.Errorf("bbox [%g,%g,%g,%g]: want -180<=west<=east<=180, -90<=south<=north<=90", w, s, e, n)
	}
	sub.bbox = orb.Bound{Min: orb.Point{w, s}, Max: orb.Point{e, n}}
	if req.Since != nil {
		v, err := strconv.ParseUint(req.Since.String(), 10, 64)
		if err != nil {
			return subscription{}, fmt.Errorf("since: want a non-negative integer seq: %w", err)
		}
		sub.since = &v
	}
	return sub, nil
}

// encodeDelta renders one delta message; the bytes are shared by every
// recipient of the change and must not be modified.
func encodeDelta(seq uint64, kind twin.ChangeKind, f *twin.Feature) ([]byte, error) {
	return appendDelta(nil, seq, kind, f)
}

// appendDelta appends the delta message to b (the feature is written in
// place, not marshalled and copied).
func appendDelta(b []byte, seq uint64, kind twin.ChangeKind, f *twin.Feature) ([]byte, error) {
	b = append(b, `{"op":"delta","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"kind":"`...)
	b = append(b, kind.String()...)
	b = append(b, `","feature":`...)
	b, err := f.AppendGeoJSON(b, nil)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", f.ID, err)
	}
	return append(b, '}'), nil
}

// encodeError renders an error message for the client.
func encodeError(msg string) []byte {
	b, _ := json.Marshal(struct {
		Op    string `json:"op"`
		Error string `json:"error"`
	}{"error", msg})
	return b
}

var resyncMsg = []byte(`{"op":"resync"}`)
