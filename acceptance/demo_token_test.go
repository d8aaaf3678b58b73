package acceptance

import (
	"net/http"
	"testing"
)

// TestDemoAccess: in --demo mode a loopback caller reads without a token
// and gets a token for actions from /api/demo/token; writes still need one.
// Without --demo the endpoint does not exist and reads need a token.
func TestDemoAccess(t *testing.T) {
	s := startServer(t, serveOpts{demo: true})
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/bridges/items/qiansimen", "", nil)
	if r := s.do(t, http.MethodPost, "/api/incidents", "", map[string]any{"type": "litter", "lon": 106.57, "lat": 29.56}); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous write: %d, want 401", r.status)
	}
	var tok struct{ Token, Role, Region string }
	s.must(t, http.StatusOK, http.MethodGet, "/api/demo/token?role=operator&region=500000", "", nil).json(t, &tok)
	if tok.Token == "" || tok.Role != "operator" || tok.Region != "500000" {
		t.Fatalf("demo token: %+v", tok)
	}
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", tok.Token, map[string]any{"type": "litter", "lon": 106.57, "lat": 29.56})
	if r := s.do(t, http.MethodGet, "/api/demo/token?role=king", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad role: %d, want 400", r.status)
	}

	plain := startServer(t, serveOpts{})
	if r := plain.do(t, http.MethodGet, "/api/demo/token", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("demo token without --demo: %d, want 404", r.status)
	}
	if r := plain.do(t, http.MethodGet, "/ogc/collections", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous read without --demo: %d, want 401", r.status)
	}
}
