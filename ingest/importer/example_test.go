package importer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Import reports each bad feature with its line and index and goes on; a
// second import of the same file changes nothing.
func ExampleImport() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "roads.geojson")
	_ = os.WriteFile(path, []byte(`{"type":"FeatureCollection","features":[
{"type":"Feature","id":"a","properties":{"highway":"primary","name":"Jiefangbei Rd"},"geometry":{"type":"LineString","coordinates":[[106.57,29.55],[106.58,29.56]]}},
{"type":"Feature","id":"b","properties":{"highway":"primary"},"geometry":{"type":"LineString","coordinates":[[106.57,29.55],[106.58,95]]}}
]}`), 0o644)

	store := newMemStore()
	opts := Options{Store: store, CRS: "gcj02", Logger: quiet()}
	for i := 0; i < 2; i++ {
		sum, err := Import(context.Background(), path, opts)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("read %d, imported %d, unchanged %d, skipped %d\n", sum.Read, sum.Imported, sum.Unchanged, sum.Skipped)
		for _, p := range sum.Problems {
			fmt.Printf("%s:%d (feature %d): %s\n", filepath.Base(p.File), p.Line, p.Index, p.Reason)
		}
	}
	// Output:
	// read 2, imported 1, unchanged 0, skipped 1
	// roads.geojson:3 (feature 1): coordinates out of range: lon 106.58 lat 95 (want lon -180..180, lat -90..90)
	// read 2, imported 0, unchanged 1, skipped 1
	// roads.geojson:3 (feature 1): coordinates out of range: lon 106.58 lat 95 (want lon -180..180, lat -90..90)
}
