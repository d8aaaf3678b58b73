package httpx

import (
	"errors"
	"io"
	"net/http"
)

// ReadBody reads r's whole body, at most limit bytes (a longer one fails
// with *http.MaxBytesError, as http.MaxBytesReader reports it). When the
// client declared the body's length, the buffer is made that size once:
// io.ReadAll starts at 512 bytes and doubles, so a 55 KB telemetry batch
// cost 128 KB of allocation and eight copies (issue 16 goal 1).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	size := int64(512)
	if n := r.ContentLength; n > 0 {
		// One byte more than declared, so the read that meets EOF has
		// room and does not grow the buffer; a lying client only
		// grows it as io.ReadAll would.
		size = min(n, limit) + 1
	}
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return b, nil
			}
			return b, err
		}
	}
}
