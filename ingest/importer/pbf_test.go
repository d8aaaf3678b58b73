package importer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// osmTestPBF locates the Delaware extract that ships in paulmach/osm's
// module testdata (7.8 MB, ODbL), so the PBF path is tested on real data
// without copying any OSM data into this repository.
func osmTestPBF(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/paulmach/osm").Output()
	if err != nil {
		t.Skipf("cannot locate paulmach/osm module: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "testdata", "delaware-latest.osm.pbf")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no PBF test file: %v", err)
	}
	return p
}

func TestOSMPBF(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a 7.8 MB PBF")
	}
	path := osmTestPBF(t)
	// Symlink with the .osm.pbf name so the extension dispatch is exercised.
	link := filepath.Join(t.TempDir(), "delaware.osm.pbf")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	s := newMemStore()
	o := opts(s)
	o.BatchSize = 2000
	sum := mustImport(t, link, o)
	t.Logf("read %d imported %d skipped %d in %v; roads %d bridges %d buildings %d rivers %d regions %d",
		sum.Read, sum.Imported, sum.Skipped, sum.Duration, s.count(twin.Roads), s.count(twin.Bridges),
		s.count(twin.Buildings), s.count(twin.Rivers), s.count(twin.Regions))
	if s.count(twin.Roads) < 10000 || s.count(twin.Bridges) == 0 || s.count(twin.Buildings) == 0 || s.count(twin.Rivers) == 0 {
		t.Errorf("too few objects imported")
	}
	for _, p := range sum.Problems[:min(8, len(sum.Problems))] {
		t.Logf("problem: %s", p)
	}
	if sum.Imported+sum.Skipped < sum.Read {
		t.Errorf("summary %+v", sum)
	}
}
