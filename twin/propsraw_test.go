package twin

import (
	"math"
	"testing"
)

// TestPackedHeaderTyped: the packed form's header says whether its
// values are JSON-typed, however the props were packed (a map, JSON, an
// overlay's edits, a sample's fields), and never says so wrongly: props
// holding an int, a float32 or a NaN are not written packed by
// AppendPackedProps, and become so once the value is replaced.
func TestPackedHeaderTyped(t *testing.T) {
	check := func(what string, p Props, want bool) {
		t.Helper()
		p = p.Pack()
		if got, walk := p.jsonTypedPacked(), jsonTyped(p.values()); got != want || walk != want {
			t.Errorf("%s: header says %v, a walk %v, want %v", what, got, walk, want)
		}
		if _, ok := AppendPackedProps(nil, p); ok != want {
			t.Errorf("%s: AppendPackedProps ok %v, want %v", what, ok, want)
		}
		if p.Len() > 0 && len(p.values()) == 0 {
			t.Errorf("%s: no values", what)
		}
	}
	check("map", NewProps(map[string]any{"a": 1.5, "s": "渝A", "l": []any{true, nil}}), true)
	check("int", NewProps(map[string]any{"a": 1, "s": "x"}), false)
	check("float32", NewProps(map[string]any{"f": float32(2)}), false)
	check("NaN", NewProps(map[string]any{"f": math.NaN()}), false)
	j, err := PackJSON([]byte(`{"kind":"muck_truck","n":[1,2.5,"三"],"m":{"x":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	check("JSON", j, true)

	// An overlay: typed stays typed, an int edit makes it untyped, and
	// replacing the int makes it typed again (a fresh pack).
	p := j
	p.Set("count", 2.0)
	p.AppendList("history", map[string]any{"at": "t1"}, 50)
	check("typed edits", p, true)
	p = p.Pack()
	p.Set("count", 3)
	check("int edit", p, false)
	p = p.Pack()
	p.Set("count", 4.0)
	check("int replaced", NewProps(p.Map()), true)
	q := p.Pack()
	q.AppendList("history", map[string]any{"at": int64(5)}, 50)
	check("int in a list entry", q, false)

	// A sample's fields (with): typed, and a NaN speed is not.
	v := j.with([]propKV{{"kind", "x"}}, nil)
	check("with", v, true)
	w := j.with([]propKV{{"kind", math.Inf(1)}}, nil)
	check("with Inf", w, false)
}
