package twin

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/citytwin/citytwin/internal/testseed"
)

// TestPropsOverlayMatchesMap is a differential test of the overlay form:
// random Set, Delete and AppendList on packed props must read back, pack
// and encode exactly as the same edits on a plain map do. The seed is
// printed; TWIN_PROPS_SEED=N replays one.
func TestPropsOverlayMatchesMap(t *testing.T) {
	seed := testseed.Seed(t, "TWIN_PROPS_SEED")
	r := rand.New(rand.NewPCG(seed, 7))
	keys := []string{"a", "count", "history", "last", "m", "regions", "severity", "z", "列表"}
	value := func() any {
		switch r.IntN(7) {
		case 0:
			return float64(r.IntN(100))
		case 1:
			return r.Float64()
		case 2:
			return "s" + strconv.Itoa(r.IntN(10))
		case 3:
			return nil
		case 4:
			return []any{"x", float64(r.IntN(3))}
		case 5:
			return map[string]any{"at": "t" + strconv.Itoa(r.IntN(9)), "event": "fired"}
		}
		return r.IntN(2) == 0
	}
	for round := range 300 {
		ref := map[string]any{}
		for _, k := range keys {
			if r.IntN(2) == 0 {
				ref[k] = value()
			}
		}
		if r.IntN(2) == 0 {
			h := []any{}
			for i := range r.IntN(8) {
				h = append(h, map[string]any{"at": strconv.Itoa(i), "event": "fired"})
			}
			ref["history"] = h
		}
		p := NewProps(cloneMap(ref)).Pack()
		for step := range 1 + r.IntN(12) {
			k := keys[r.IntN(len(keys))]
			var op string
			switch r.IntN(4) {
			case 0:
				v := value()
				op = fmt.Sprintf("Set(%q, %v)", k, v)
				p.Set(k, v)
				ref[k] = v
			case 1:
				op = fmt.Sprintf("Delete(%q)", k)
				p.Delete(k)
				delete(ref, k)
			default:
				v, keep := value(), r.IntN(6)
				op = fmt.Sprintf("AppendList(%q, %v, %d)", k, v, keep)
				p.AppendList(k, v, keep)
				var l []any
				if old, ok := ref[k].([]any); ok {
					l = append(l, old...)
				}
				l = append(l, v)
				if keep > 0 && len(l) > keep {
					l = l[len(l)-keep:]
				}
				ref[k] = l
			}
			where := fmt.Sprintf("round %d step %d %s", round, step, op)
			for _, k := range keys {
				got, ok := p.Lookup(k)
				want, wok := ref[k]
				if ok != wok || !reflect.DeepEqual(got, want) || p.Has(k) != wok {
					t.Fatalf("%s: Lookup(%q) = %#v %v, want %#v %v", where, k, got, ok, want, wok)
				}
				// String and Number read an unedited key off the base.
				ws, _ := want.(string)
				wn, wnok := ToFloat(want)
				if gn, gnok := p.Number(k); p.String(k) != ws || gn != wn || gnok != wnok {
					t.Fatalf("%s: String(%q) = %q, Number = %v %v; want %q, %v %v", where, k, p.String(k), gn, gnok, ws, wn, wnok)
				}
			}
			if p.Len() != len(ref) || !slices.Equal(p.Keys(), sortedKeys(ref)) || !reflect.DeepEqual(p.Map(), ref) {
				t.Fatalf("%s: Len %d Keys %v Map %v, want %v", where, p.Len(), p.Keys(), p.Map(), ref)
			}
			a, err := json.Marshal(p)
			b, _ := json.Marshal(ref)
			if err != nil || string(a) != string(b) {
				t.Fatalf("%s: json\n got %s\nwant %s", where, a, b)
			}
			if err := ValidProps(p); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if r.IntN(3) == 0 { // pack between edits too
				q := p.Pack()
				if !q.packed() || !reflect.DeepEqual(q.Map(), ref) {
					t.Fatalf("%s: packed %v, want %v", where, q.Map(), ref)
				}
				want := NewProps(cloneMap(ref)).Pack()
				if q.ref != want.ref || q.values() != want.values() {
					t.Fatalf("%s: packed bytes differ from a fresh pack", where)
				}
				// Every value here is one JSON gives back: the header's
				// bit, carried through the edits, must say so.
				if !q.jsonTypedPacked() || !jsonTyped(q.values()) {
					t.Fatalf("%s: JSON-typed %v, by a walk %v", where, q.jsonTypedPacked(), jsonTyped(q.values()))
				}
				p = q
			}
		}
	}
}

// TestPropsOverlayIsolation: editing a packed copy never changes the
// original, and an overlay's Clone is a copy of its own.
func TestPropsOverlayIsolation(t *testing.T) {
	p := NewProps(map[string]any{"history": []any{"a"}, "n": 1.0}).Pack()
	q := p
	q.AppendList("history", "b", 0)
	q.Set("n", 2.0)
	c := q.Clone()
	c.AppendList("history", "c", 0)
	c.Delete("n")
	if got := p.Get("history"); !reflect.DeepEqual(got, []any{"a"}) || p.Get("n") != 1.0 {
		t.Fatalf("original changed: %v", p)
	}
	if got := q.Get("history"); !reflect.DeepEqual(got, []any{"a", "b"}) || q.Get("n") != 2.0 {
		t.Fatalf("overlay changed by its clone: %v", q)
	}
	if got := c.Get("history"); !reflect.DeepEqual(got, []any{"a", "b", "c"}) || c.Has("n") {
		t.Fatalf("clone: %v", c)
	}
	// An edit of a type the packed form does not hold: the map form.
	q.Set("odd", map[string]float64{"x": 1})
	if f := q.Pack(); f.packed() || f.Get("odd") == nil || !reflect.DeepEqual(f.Get("history"), []any{"a", "b"}) {
		t.Fatalf("unsupported edit: %v", f)
	}
	// Bad text in an edit is caught; the base is not checked again.
	q.Set("bad", "a\x00b")
	if ValidProps(q) == nil {
		t.Fatal("NUL in an edit passed")
	}
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if l, ok := v.([]any); ok {
			v = slices.Clone(l)
		}
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
