// Package webclient embeds the built MapLibre command client (webgl-client/dist,
// made by `npm run build`) and serves it: the operator view at /, the planner
// at /planner and field staff at /field.
//
// The client is built by Vite into dist/ (git-ignored except dist/.keep, so
// the embed compiles on a fresh clone). A binary built without the client
// answers its pages with a short HTML note saying to run `make build`, rather
// than a bare 404, so an operator knows what is missing.
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

// Handler serves the client's files; hashed assets under /assets/ get a
// year-long immutable cache, pages are revalidated on every load (they name
// the current hashes). Safe for concurrent use.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil { // cannot happen: "dist" is a valid constant path
		panic(err)
	}
	return handler(sub)
}

// handler serves the built client from fsys (the contents of dist/).
func handler(fsys fs.FS) http.Handler {
	files := http.FileServer(http.FS(fsys))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		key := strings.TrimSuffix(p, ".html")
		if key == "/index" {
			key = "/"
		}
		if page, ok := pages[key]; ok {
			b, err := fs.ReadFile(fsys, page)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if err != nil {
				w.Header().Set("Cache-Control", "no-store")
				_, _ = w.Write([]byte(notBuilt))
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
			return
		}
		name := strings.TrimPrefix(p, "/")
		if st, err := fs.Stat(fsys, name); err != nil || st.IsDir() || strings.HasPrefix(path.Base(name), ".") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not found","detail":"` + strings.NewReplacer(`"`, "", `\`, "").Replace(p) + `"}`))
			return
		}
		if strings.HasPrefix(p, "/assets/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		// Module workers need a JavaScript MIME type; not every platform's
		// mime table knows .mjs.
		if strings.HasSuffix(p, ".mjs") || strings.HasSuffix(p, ".js") {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		}
		files.ServeHTTP(w, r)
	})
}
