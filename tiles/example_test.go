package tiles_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/tiles"
	"github.com/citytwin/citytwin/twin"
)

// Example mounts the tile server: Handler serves /tiles/, /styles/ and
// /fonts/; Run keeps the cache in step with the twin's change feed.
func Example() {
	tw := twin.New(twin.Options{})
	_, _ = tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "BP2968"), Geometry: orb.Point{106.5772, 29.5628},
		Props: twin.NewProps(map[string]any{"kind": "muck_truck"})})
	ts := tiles.New(tw, tiles.Options{BaseURL: "https://twin.example"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ts.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Println("run:", err)
		}
	}()

	r := httptest.NewRequest(http.MethodGet, "/tiles/vehicles/15/26083/13591.mvt", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := httptest.NewRecorder()
	ts.Handler().ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("Content-Type"), w.Header().Get("Content-Encoding"), w.Header().Get("Cache-Control"))
	fmt.Println(tiles.FeatureID(twin.NewID(twin.Vehicles, "BP2968")) < 1<<53)
	// Output:
	// 200 application/vnd.mapbox-vector-tile gzip public, max-age=2
	// true
}
