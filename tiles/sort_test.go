package tiles

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/citytwin/citytwin/twin"
)

// TestSortCandsMatchesComparison is the differential test of sortCands'
// radix sort: random candidate lists (ranks from a few values, so many
// ties, or spread; negative, -0, huge and tiny; names sharing their
// first 8 bytes) come out in exactly slices.SortFunc(candCmp)'s order.
func TestSortCandsMatchesComparison(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	w := new(writer)
	special := []float64{0, math.Copysign(0, -1), -1, 1, 1e-300, -1e-300, 1e300, -1e300, math.MaxFloat64, math.SmallestNonzeroFloat64}
	for round := range 150 {
		n := rng.IntN(5000)
		distinct := 1 + rng.IntN(n+1)
		ranks := make([]float64, distinct)
		for i := range ranks {
			switch rng.IntN(4) {
			case 0:
				ranks[i] = special[rng.IntN(len(special))]
			case 1:
				ranks[i] = float64(rng.IntN(50)) // small integers: many ties
			default:
				ranks[i] = (rng.Float64() - 0.2) * math.Pow(10, float64(rng.IntN(20)-10))
			}
		}
		cands := make([]candidate, n)
		for i := range cands {
			name := fmt.Sprintf("building-%06d", rng.IntN(1_000_000)) // a shared 8-byte prefix
			if rng.IntN(3) == 0 {
				name = fmt.Sprint(i)
			}
			name += fmt.Sprintf("/%d", i) // unique, as in a layer
			m := &memo{f: &twin.Feature{ID: twin.NewID(twin.Buildings, name)}, name8: namePrefix(name)}
			cands[i] = candidate{m: m, rank: ranks[rng.IntN(len(ranks))], name: m.name8}
		}
		want := slices.Clone(cands)
		slices.SortFunc(want, candCmp)
		w.sortCands(cands)
		for i := range cands {
			if cands[i].m != want[i].m {
				t.Fatalf("round %d (n %d): at %d got %s rank %v, want %s rank %v", round, n, i,
					cands[i].m.f.ID.Name, cands[i].rank, want[i].m.f.ID.Name, want[i].rank)
			}
		}
	}
}

// TestOrderValuesMatchesSort: the counting sort of the value table is the
// comparison sort by use count, most used first, ties in first-seen order.
func TestOrderValuesMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var w writer
	for round := range 200 {
		n := rng.IntN(300)
		w.vals = make([]value, n)
		w.vcount = w.vcount[:0]
		for range n {
			c := int32(1)
			if round%2 == 0 {
				c += int32(rng.IntN(5))
			} else {
				c += int32(rng.IntN(400))
			}
			w.vcount = append(w.vcount, c)
		}
		want := make([]int32, n)
		for i := range want {
			want[i] = int32(i)
		}
		slices.SortStableFunc(want, func(a, b int32) int { return int(w.vcount[b] - w.vcount[a]) })
		if got := w.orderValues(); !slices.Equal(got, want) {
			t.Fatalf("round %d: %v, want %v", round, got, want)
		}
	}
}
