package spine

import (
	"net/http"
	"sync"
)

// heldResponse keeps a handler's answer until the change log has taken
// the write (Relay.serveLocal, serveRemote). It does what the relay used
// httptest.ResponseRecorder for, without the recorder's copy of the header
// map at WriteHeader and with a body buffer that the next write reuses: a
// 500-line telemetry answer (~24 KB) grew a fresh buffer from 64 bytes
// for every request (issue 16 goal 1).
type heldResponse struct {
	header http.Header
	code   int // 0 until written
	body   []byte
}

var heldResponses = sync.Pool{New: func() any { return &heldResponse{header: http.Header{}} }}

// holdResponse returns an empty heldResponse; give it back with release.
func holdResponse() *heldResponse { return heldResponses.Get().(*heldResponse) }

// release empties h for the next request. Nothing may use h, its header
// map or its body afterwards (the values copied out of the map stay
// valid: they are not changed, only dropped from it).
func (h *heldResponse) release() {
	clear(h.header)
	h.code, h.body = 0, h.body[:0]
	if cap(h.body) > 1<<20 {
		h.body = nil // an export's answer is not kept for a write's
	}
	heldResponses.Put(h)
}

func (h *heldResponse) Header() http.Header { return h.header }

// WriteHeader keeps the first status, as net/http does.
func (h *heldResponse) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	h.body = append(h.body, p...)
	return len(p), nil
}

// Flush does nothing: the answer goes out whole, once logged.
func (h *heldResponse) Flush() {}

// status is the answer's status: 200 when the handler wrote nothing.
func (h *heldResponse) status() int {
	if h.code == 0 {
		return http.StatusOK
	}
	return h.code
}
