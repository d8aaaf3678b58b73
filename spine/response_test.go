package spine

import (
	"net/http"
	"testing"
)

// TestHeldResponseReused: a held answer keeps the first status, defaults
// to 200, and a reused one starts empty (no header or body of the last).
func TestHeldResponseReused(t *testing.T) {
	h := holdResponse()
	h.Header().Set("Content-Type", "application/json")
	h.WriteHeader(http.StatusCreated)
	h.WriteHeader(http.StatusTeapot)
	_, _ = h.Write([]byte(`{"a":`))
	_, _ = h.Write([]byte(`1}`))
	if h.status() != http.StatusCreated || string(h.body) != `{"a":1}` || h.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("held %d %q %v", h.status(), h.body, h.Header())
	}
	kept := h.Header()["Content-Type"]
	h.release()
	if kept[0] != "application/json" {
		t.Errorf("a value copied out before release changed: %q", kept)
	}
	for range 4 { // the pool may or may not hand the same one back
		g := holdResponse()
		if g.status() != http.StatusOK || len(g.body) != 0 || len(g.Header()) != 0 {
			t.Fatalf("reused answer not empty: %d %q %v", g.status(), g.body, g.Header())
		}
		_, _ = g.Write([]byte("x"))
		g.Header().Set("X", "y")
		g.release()
	}
}
