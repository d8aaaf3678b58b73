package tiles

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/citytwin/citytwin/twin"
)

// TestSizeAtMatchesSizeOf: the memo's cached extent gives exactly
// sizeOf's answer at every zoom (the culling and ranking must not move).
func TestSizeAtMatchesSizeOf(t *testing.T) {
	tw := testTwin(t)
	for _, l := range twin.Layers {
		tw.Range(l, func(f *twin.Feature) bool {
			if f.Geometry == nil {
				return true
			}
			m := newMemo(f, nil)
			for z := 0; z <= MaxZoom; z++ {
				scale := math.Ldexp(Extent, z)
				s1, k1 := sizeOf(f.Geometry.Bound(), f.Geometry.Dimensions(), scale)
				s2, k2 := m.sizeAt(scale)
				if s1 != s2 || k1 != k2 {
					t.Fatalf("%s z%d: sizeOf %v %v, sizeAt %v %v", f.ID, z, s1, k1, s2, k2)
				}
			}
			return true
		})
	}
}

// TestNamePrefixOrder: where two names' prefixes differ, they order the
// names as strings.Compare does (short names, zero bytes, high bytes);
// equal prefixes leave the order to the names. Seeded.
func TestNamePrefixOrder(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	alphabet := []byte{0, 1, 'a', 'b', 'z', 0x7f, 0x80, 0xff}
	name := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 200000; i++ {
		a, b := name(), name()
		pa, pb := namePrefix(a), namePrefix(b)
		if pa == pb {
			continue
		}
		if got, want := pa < pb, strings.Compare(a, b) < 0; got != want {
			t.Fatalf("%q %q: prefixes %x %x order %v, names %v", a, b, pa, pb, got, want)
		}
	}
}

// TestMemoLayout: the fields a tile reads of every feature lie in the
// memo's first two cache lines, and a memo fills its size class exactly
// (256 bytes: allocated 256-byte aligned, so the lines are the object's).
func TestMemoLayout(t *testing.T) {
	var m memo
	if n := unsafe.Sizeof(m); n != 256 {
		t.Errorf("memo is %d bytes, want 256", n)
	}
	for name, off := range map[string]uintptr{"f": unsafe.Offsetof(m.f), "shapes": unsafe.Offsetof(m.shapes),
		"rankAdd": unsafe.Offsetof(m.rankAdd), "name8": unsafe.Offsetof(m.name8), "dim": unsafe.Offsetof(m.dim),
		"kind": unsafe.Offsetof(m.kind), "hasLean": unsafe.Offsetof(m.hasLean)} {
		if off >= 64 {
			t.Errorf("memo.%s at offset %d, not in the first line", name, off)
		}
	}
	for name, off := range map[string]uintptr{"fullRefs": unsafe.Offsetof(m.fullRefs), "leanRefs": unsafe.Offsetof(m.leanRefs),
		"id": unsafe.Offsetof(m.id)} {
		if off < 64 || off >= 128 {
			t.Errorf("memo.%s at offset %d, not in the second line", name, off)
		}
	}
}

// TestZshapeSize: a zshape stays one cache line.
func TestZshapeSize(t *testing.T) {
	if n := unsafe.Sizeof(zshape{}); n != 64 {
		t.Errorf("zshape is %d bytes, want 64", n)
	}
}

// TestZValuesRoundTrip: a zshape's values read back as the values written,
// in order, and skipping one lands where reading it does.
func TestZValuesRoundTrip(t *testing.T) {
	neg := int64(-3)
	vals := []value{
		{kind: valString, s: "Jiefangbei Tower 7"},
		{kind: valString},
		{kind: valString, s: strings.Repeat("x", 300)},
		{kind: valDouble, n: math.Float64bits(-12.5)},
		{kind: valSint, n: uint64(neg)},
		{kind: valUint, n: 1 << 40},
		{kind: valBool, n: 1},
		{kind: valBool},
	}
	var b []byte
	n := 0
	for _, v := range vals {
		b = appendZValue(b, v)
		n += zValueLen(v)
	}
	if n != len(b) {
		t.Fatalf("zValueLen sums to %d, wrote %d", n, len(b))
	}
	for i, want := range vals {
		got, rest := nextZValue(b)
		if got != want {
			t.Fatalf("value %d: got %+v, want %+v", i, got, want)
		}
		if skip := skipZValue(b); len(skip) != len(rest) {
			t.Fatalf("value %d: skip leaves %d bytes, read %d", i, len(skip), len(rest))
		}
		b = rest
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left", len(b))
	}
}

// TestMemoGetAll: getAll gives each feature the memo get gives it: the
// cached one where there is one, else a new one that is then cached
// (and with no table, a new memo each).
func TestMemoGetAll(t *testing.T) {
	tw := testTwin(t)
	var fs []*twin.Feature
	for _, l := range twin.Layers {
		tw.Range(l, func(f *twin.Feature) bool {
			fs = append(fs, f)
			return true
		})
	}
	if len(fs) < 4 {
		t.Fatalf("%d buildings", len(fs))
	}
	tab := newMemoTable(1 << 16)
	cached := map[*twin.Feature]*memo{}
	for _, f := range fs[:len(fs)/2] {
		cached[f] = tab.get(f)
	}
	ms := make([]*memo, len(fs))
	tab.getAll(fs, ms)
	for i, f := range fs {
		m := ms[i]
		if m == nil || m.f != f {
			t.Fatalf("%s: memo of %v", f.ID, m)
		}
		if c, ok := cached[f]; ok && c != m {
			t.Fatalf("%s: a new memo, not the cached one", f.ID)
		}
		if tab.get(f) != m {
			t.Fatalf("%s: getAll's memo is not cached", f.ID)
		}
	}
	var none *memoTable
	none.getAll(fs[:2], ms[:2])
	if ms[0] == nil || ms[0].f != fs[0] || ms[1].f != fs[1] {
		t.Fatal("no table: want new memos")
	}
}
