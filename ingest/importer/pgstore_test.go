package importer

import (
	"context"
	"slices"
	"testing"

	"github.com/citytwin/citytwin/internal/pgtest"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/locate"
	"github.com/citytwin/citytwin/twin/pgstore"
)

func openPG(t testing.TB) *pgstore.Store {
	t.Helper()
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pgtest.New(t), pgstore.Options{Migrate: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// loadAll reads every stored object's version and the regions layer.
func loadAll(t testing.TB, st twin.Store) (map[twin.ID]uint64, []*twin.Feature) {
	t.Helper()
	vs := map[twin.ID]uint64{}
	var regions []*twin.Feature
	err := st.Load(context.Background(), func(f *twin.Feature) error {
		vs[f.ID] = f.Version
		if f.ID.Layer == twin.Regions {
			regions = append(regions, f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs, regions
}

func countLayer(vs map[twin.ID]uint64, l twin.Layer) int {
	n := 0
	for id := range vs {
		if id.Layer == l {
			n++
		}
	}
	return n
}

// importRealFiles runs the shared data through a real store: districts
// (GCJ-02), then Shapingba roads placed in them, then one mesh file, and
// again to check that nothing changes.
func importRealFiles(t *testing.T, st twin.Store) {
	districts := dataFile(t, districtsFile)
	roads := dataFile(t, shapingbaFile)
	mesh := dataFile(t, meshFile)
	ctx := context.Background()

	o := opts(st)
	o.CRS = GCJ02
	if sum := mustImport(t, districts, o); sum.Imported != 8 {
		t.Fatalf("districts: %+v", sum)
	}
	_, regions := loadAll(t, st)
	if len(regions) != 8 {
		t.Fatalf("%d regions stored", len(regions))
	}
	loc := locate.New()
	loc.Reset(regions, nil)

	o = opts(st)
	o.Enricher = loc
	if sum := mustImport(t, roads, o); sum.Imported != 1187 || sum.Skipped != 0 {
		t.Fatalf("roads: %+v", sum)
	}
	om := opts(st)
	om.CRS = GCJ02
	om.Enricher = loc
	if sum := mustImport(t, mesh, om); sum.Imported != 3462 || sum.Skipped != 0 {
		t.Fatalf("mesh: read %d imported %d skipped %d", sum.Read, sum.Imported, sum.Skipped)
	}

	f, err := st.Get(ctx, twin.NewID(twin.Roads, "road-9337"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Region(), []string{"500000", "500106"}) || f.Props.Get("class") != "primary" || len(f.Cells()) == 0 {
		t.Errorf("road-9337 region %v props %v cells %d", f.Region(), f.Props, len(f.Cells()))
	}
	r, err := st.Get(ctx, twin.NewID(twin.Regions, "500106"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Props.Get("name") != "沙坪坝区" || r.Props.Get("level") != "district" || r.Props.Get("parent") != "500000" {
		t.Errorf("region props %v", r.Props)
	}

	before, _ := loadAll(t, st)
	if n := countLayer(before, twin.Roads); n != 1187+3462 {
		t.Fatalf("%d roads stored", n)
	}
	o = opts(st)
	o.CRS = GCJ02
	if sum := mustImport(t, districts, o); sum.Imported != 0 || sum.Unchanged != 8 {
		t.Errorf("districts again: %+v", sum)
	}
	o = opts(st)
	o.Enricher = loc
	if sum := mustImport(t, roads, o); sum.Imported != 0 || sum.Unchanged != 1187 {
		t.Errorf("roads again: %+v", sum)
	}
	if sum := mustImport(t, mesh, om); sum.Imported != 0 || sum.Unchanged != 3462 {
		t.Errorf("mesh again: imported %d unchanged %d", sum.Imported, sum.Unchanged)
	}
	after, _ := loadAll(t, st)
	if !mapsEqual(before, after) {
		t.Error("re-import changed versions")
	}
}

func TestImportPostGIS(t *testing.T) {
	if testing.Short() {
		t.Skip("real PostGIS")
	}
	importRealFiles(t, openPG(t))
}

// benchStore measures first-import throughput of path into st: each
// iteration deletes what the previous one wrote (timer stopped).
func benchStore(b *testing.B, st twin.Store, rel, crs string) {
	path := dataFile(b, rel)
	ctx := context.Background()
	o := opts(st)
	o.CRS = crs
	o.Logger = quiet()
	read := 0
	for b.Loop() {
		b.StopTimer()
		var ids []twin.ID
		_ = st.Load(ctx, func(f *twin.Feature) error { ids = append(ids, f.ID); return nil })
		if err := st.Delete(ctx, ids); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sum, err := Import(ctx, path, o)
		if err != nil {
			b.Fatal(err)
		}
		read += sum.Read
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "features/s")
}

// benchReimport measures an unchanged re-import (reads and compares only).
func benchReimport(b *testing.B, st twin.Store, rel, crs string) {
	path := dataFile(b, rel)
	o := opts(st)
	o.CRS = crs
	if _, err := Import(context.Background(), path, o); err != nil {
		b.Fatal(err)
	}
	read := 0
	b.ResetTimer()
	for b.Loop() {
		sum, err := Import(context.Background(), path, o)
		if err != nil || sum.Imported != 0 {
			b.Fatalf("%v %+v", err, sum.Imported)
		}
		read += sum.Read
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "features/s")
}

func BenchmarkImportShapingbaPostGIS(b *testing.B) {
	benchStore(b, openPG(b), shapingbaFile, WGS84)
}
func BenchmarkImportMeshPostGIS(b *testing.B) { benchStore(b, openPG(b), meshFile, GCJ02) }
func BenchmarkReimportShapingbaPostGIS(b *testing.B) {
	benchReimport(b, openPG(b), shapingbaFile, WGS84)
}
