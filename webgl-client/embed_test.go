package webclient

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestHandlerBuilt(t *testing.T) {
	h := handler(fstest.MapFS{
		"index.html":                      {Data: []byte("<html>operator</html>")},
		"planner.html":                    {Data: []byte("<html>planner</html>")},
		"field.html":                      {Data: []byte("<html>field</html>")},
		".keep":                           {Data: nil},
		"assets/index-abc123.js":          {Data: []byte("console.log(1)")},
		"assets/maplibre-gl-worker-x.mjs": {Data: []byte("self.onmessage=null")},
		"assets/common-x.css":             {Data: []byte("body{}")},
	})
	for _, tc := range []struct{ path, body string }{
		{"/", "operator"}, {"/index.html", "operator"}, {"/planner", "planner"}, {"/planner.html", "planner"},
		{"/planner/", "planner"}, {"/field", "field"},
	} {
		res, body := get(t, h, tc.path)
		if res.StatusCode != 200 || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", tc.path, res.StatusCode, body, tc.body)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s Content-Type = %q", tc.path, ct)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s Cache-Control = %q, want no-cache", tc.path, cc)
		}
	}
	res, body := get(t, h, "/assets/index-abc123.js")
	if res.StatusCode != 200 || body != "console.log(1)" {
		t.Fatalf("asset = %d %q", res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
		t.Errorf("asset Cache-Control = %q, want a long immutable cache", cc)
	}
	res, _ = get(t, h, "/assets/maplibre-gl-worker-x.mjs")
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("worker .mjs Content-Type = %q, want text/javascript (module workers need it)", ct)
	}
	res, _ = get(t, h, "/assets/common-x.css")
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("css Content-Type = %q", ct)
	}
	for _, p := range []string{"/nope.js", "/assets/", "/.keep", "/assets/../../etc/passwd"} {
		res, body := get(t, h, p)
		if res.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
			continue
		}
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
			t.Errorf("GET %s body %q, want a JSON error", p, body)
		}
	}
}

func TestHandlerNotBuilt(t *testing.T) {
	h := handler(fstest.MapFS{".keep": {Data: nil}})
	for _, p := range []string{"/", "/planner", "/field"} {
		res, body := get(t, h, p)
		if res.StatusCode != 200 || !strings.Contains(body, "make build") {
			t.Errorf("GET %s = %d %q, want the 'run make build' page", p, res.StatusCode, body)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("GET %s Cache-Control = %q, want no-store (the build may come later)", p, cc)
		}
	}
	if res, _ := get(t, h, "/assets/index.js"); res.StatusCode != 404 {
		t.Errorf("asset without a build = %d, want 404", res.StatusCode)
	}
}

// TestEmbedded checks the real embedded tree: built or not, / answers HTML.
func TestEmbedded(t *testing.T) {
	res, body := get(t, Handler(), "/")
	if res.StatusCode != 200 || !strings.Contains(strings.ToLower(body), "<!doctype html>") {
		t.Fatalf("GET / = %d %q", res.StatusCode, body)
	}
	if _, err := dist.ReadFile("dist/.keep"); err != nil {
		t.Fatalf("dist/.keep must be embedded so a fresh clone compiles: %v", err)
	}
}
