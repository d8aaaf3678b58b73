package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/clock"
)

func newTestServer(t *testing.T, metrics MetricsAccess) (*Server, auth.Key, clock.Clock) {
	t.Helper()
	key := auth.Key(strings.Repeat("k", 32))
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, auth.Of(r.Context()).Region) })
	return New(Options{Key: key, Clock: clk, MetricsAccess: metrics, Routes: []Route{
		{Pattern: "GET /api/x", Handler: ok, Access: Read},
		{Pattern: "GET /ws", Handler: ok, Access: Read, QueryToken: true},
	}}), key, clk
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// TestMetricsLoopbackByDefault: httptest requests come from 192.0.2.1,
// which is not loopback.
func TestMetricsLoopbackByDefault(t *testing.T) {
	s, key, clk := newTestServer(t, "")
	if w := serve(s, httptest.NewRequest("GET", "/metrics", nil)); w.Code != http.StatusForbidden {
		t.Fatalf("remote /metrics: %d, want 403", w.Code)
	}
	r := httptest.NewRequest("GET", "/metrics", nil)
	r.RemoteAddr = "127.0.0.1:5555"
	if w := serve(s, r); w.Code != http.StatusOK {
		t.Fatalf("loopback /metrics: %d, want 200", w.Code)
	}
	s, _, _ = newTestServer(t, MetricsPublic)
	if w := serve(s, httptest.NewRequest("GET", "/metrics", nil)); w.Code != http.StatusOK {
		t.Fatalf("public /metrics: %d, want 200", w.Code)
	}
	s, _, _ = newTestServer(t, MetricsToken)
	tok, _ := key.Sign(auth.Principal{Subject: "scraper", Role: auth.Admin, Region: auth.CityCode}, time.Hour, clk.Now())
	r = httptest.NewRequest("GET", "/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if w := serve(s, r); w.Code != http.StatusOK {
		t.Fatalf("token /metrics: %d, want 200", w.Code)
	}
	if _, err := ParseMetricsAccess("everyone"); err == nil {
		t.Fatal("bad metrics access accepted")
	}
}

// TestQueryTokenOnlyOnWebsocket: ?access_token= authenticates /ws only.
func TestQueryTokenOnlyOnWebsocket(t *testing.T) {
	s, key, clk := newTestServer(t, "")
	tok, _ := key.Sign(auth.Principal{Subject: "op", Role: auth.Operator, Region: "500105"}, time.Hour, clk.Now())
	if w := serve(s, httptest.NewRequest("GET", "/ws?access_token="+tok, nil)); w.Code != http.StatusOK {
		t.Fatalf("/ws with a query token: %d, want 200", w.Code)
	}
	w := serve(s, httptest.NewRequest("GET", "/api/x?access_token="+tok, nil))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "/ws") {
		t.Fatalf("/api/x with a query token: %d %s, want 401 naming /ws", w.Code, w.Body)
	}
	r := httptest.NewRequest("GET", "/api/x?access_token="+tok, nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if w := serve(s, r); w.Code != http.StatusUnauthorized {
		t.Fatalf("header plus query token: %d, want 401 (the query copy leaks)", w.Code)
	}
}
