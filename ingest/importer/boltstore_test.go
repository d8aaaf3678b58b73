package importer

import (
	"testing"

	"github.com/citytwin/citytwin/twin/boltstore"
)

func openBolt(t testing.TB) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestImportBoltStore(t *testing.T) { importRealFiles(t, openBolt(t)) }

func BenchmarkImportShapingbaBolt(b *testing.B) {
	benchStore(b, openBolt(b), shapingbaFile, WGS84)
}
func BenchmarkImportMeshBolt(b *testing.B) { benchStore(b, openBolt(b), meshFile, GCJ02) }
func BenchmarkReimportShapingbaBolt(b *testing.B) {
	benchReimport(b, openBolt(b), shapingbaFile, WGS84)
}
