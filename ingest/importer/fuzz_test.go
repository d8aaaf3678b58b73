package importer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzGeoJSON checks that no input makes the GeoJSON importer panic, and
// that every feature read is accounted for exactly once.
func FuzzGeoJSON(f *testing.F) {
	f.Add([]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{"highway":"x"},"geometry":{"type":"LineString","coordinates":[[1,2],[3,4]]}}]}`))
	f.Add([]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"building":"yes"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}]}`))
	f.Add([]byte(`{"features":[{"type":"Feature","properties":{"adcode":500000,"level":"province","parent":{"adcode":100000}},"geometry":{"type":"MultiPolygon","coordinates":[]}}]}`))
	f.Add([]byte(`{"features":[null,1,"x",{"type":"Feature","geometry":{"type":"Point","coordinates":[1e308,-1e308]}}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.geojson")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := newMemStore()
		o := opts(s)
		o.CRS = GCJ02
		sum, err := Import(context.Background(), path, o)
		if err == nil && sum.Imported+sum.Skipped+sum.Repeated != sum.Read {
			t.Fatalf("summary does not add up: %+v", sum)
		}
	})
}
