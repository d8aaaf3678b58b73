package twin

import (
	"testing"
	"unsafe"
)

// TestFeatureSize: a Feature fits the 128-B size class (issue 16 goal 4:
// a million points hold a million of them).
func TestFeatureSize(t *testing.T) {
	if n := unsafe.Sizeof(Feature{}); n > 128 {
		t.Fatalf("Feature is %d B, want at most 128", n)
	}
}

// TestCellsAndSource: one cell is held inline, more behind the shared
// pointer; a clone's SetCells or SetSource leaves the original as it was.
func TestCellsAndSource(t *testing.T) {
	var f Feature
	if f.Cells() != nil || f.Cell() != 0 || f.Source() != "" {
		t.Fatalf("zero feature: %v %d %q", f.Cells(), f.Cell(), f.Source())
	}
	f.SetCells([]uint64{7})
	if f.more != nil || f.Cell() != 7 || len(f.Cells()) != 1 {
		t.Fatalf("one cell: more %v cells %v", f.more, f.Cells())
	}
	f.SetSource("osm:w1")
	f.SetCells([]uint64{1, 2, 3})
	if f.cell[0] != 0 || f.Cell() != 1 || len(f.Cells()) != 3 || f.Source() != "osm:w1" {
		t.Fatalf("cover: %v %q", f.Cells(), f.Source())
	}
	c := f.Clone()
	c.SetSource("")
	c.SetCell(9)
	if f.Source() != "osm:w1" || len(f.Cells()) != 3 {
		t.Fatalf("the original changed with its clone: %v %q", f.Cells(), f.Source())
	}
	if c.more != nil || c.Cell() != 9 || len(c.Cells()) != 1 {
		t.Fatalf("clone: more %v cells %v", c.more, c.Cells())
	}
	c.SetCells(nil)
	if c.Cells() != nil || c.more != nil {
		t.Fatalf("cleared: %v %v", c.Cells(), c.more)
	}
}
