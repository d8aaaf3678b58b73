// Package webclient embeds the built MapLibre command client (webgl-client/dist,
// made by `npm run build`) and serves it: the operator view at /, the planner
// at /planner and field staff at /field.
package webclient

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// pages maps clean URLs to the built HTML files.
var pages = map[string]string{"/": "index.html", "/planner": "planner.html", "/field": "field.html"}

const notBuilt = `<!doctype html><meta charset="utf-8"><title>CityTwin</title>
<p>The CityTwin client is not built into this binary. Run <code>make build</code> (or <code>make run</code>).</p>`

// Handler serves the client's files; hashed assets get a long cache.
func Handler() http.Handler {
	sub, _ := fs.Sub(dist, "dist")
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean(r.URL.Path)
		if page, ok := pages[strings.TrimSuffix(p, ".html")]; ok || p == "/index.html" {
			if !ok {
				page = "index.html"
			}
			b, err := fs.ReadFile(sub, page)
			if err != nil {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(notBuilt))
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
			return
		}
		if _, err := fs.Stat(sub, strings.TrimPrefix(p, "/")); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not found","detail":"` + strings.ReplaceAll(p, `"`, "") + `"}`))
			return
		}
		if strings.HasPrefix(p, "/assets/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		files.ServeHTTP(w, r)
	})
}
