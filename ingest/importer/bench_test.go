package importer

import (
	"context"
	"testing"
)

// benchImport imports path into a fresh store per iteration (or the same
// store, reimport) and reports features/s.
func benchImport(b *testing.B, rel, crs string, reimport bool) {
	path := dataFile(b, rel)
	s := newMemStore()
	o := opts(s)
	o.CRS = crs
	if reimport {
		if _, err := Import(context.Background(), path, o); err != nil {
			b.Fatal(err)
		}
	}
	read := 0
	b.ResetTimer()
	for b.Loop() {
		if !reimport {
			o.Store = newMemStore()
		}
		sum, err := Import(context.Background(), path, o)
		if err != nil {
			b.Fatal(err)
		}
		read += sum.Read
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "features/s")
}

func BenchmarkImportShapingbaMem(b *testing.B)   { benchImport(b, shapingbaFile, "wgs84", false) }
func BenchmarkReimportShapingbaMem(b *testing.B) { benchImport(b, shapingbaFile, "wgs84", true) }
func BenchmarkImportMeshMem(b *testing.B)        { benchImport(b, meshFile, "gcj02", false) }
func BenchmarkImportDistrictsMem(b *testing.B)   { benchImport(b, districtsFile, "gcj02", false) }
