package twin

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

func TestValidProps(t *testing.T) {
	for _, c := range []struct {
		props map[string]any
		want  string // "" = valid
	}{
		{map[string]any{"name": "解放碑", "n": 1.5, "ok": true, "nil": nil, "list": []any{"a", 1.0, map[string]any{"b": "c"}}}, ""},
		{map[string]any{"name": "a\x00b"}, "properties.name: contains NUL"},
		{map[string]any{"a\x00": 1.0}, "contains NUL"},
		{map[string]any{"bad": "\xff\xfe"}, "properties.bad: not valid UTF-8"},
		{map[string]any{"\xff": 1.0}, "not valid UTF-8"},
		{map[string]any{"list": []any{"ok", "x\x00"}}, "properties.list[1]: contains NUL"},
		{map[string]any{"m": map[string]any{"deep": []string{"\x00"}}}, "properties.m.deep[0]: contains NUL"},
		{map[string]any{"m": map[string]string{"k": "\xc3"}}, "not valid UTF-8"},
		{map[string]any{"values": map[string]float64{"\x00": 1}}, "contains NUL"},
		{map[string]any{"": 1.0}, "empty name"},
		{map[string]any{"long": strings.Repeat("x", MaxTextBytes+1)}, "bytes, at most"},
		{map[string]any{strings.Repeat("k", MaxKeyBytes+1): 1.0}, "bytes, at most"},
		{map[string]any{"deep": nest(MaxPropsDepth + 2)}, "nested deeper"},
		{map[string]any{"deep": nest(MaxPropsDepth - 2)}, ""},
	} {
		err := ValidProps(NewProps(c.props))
		if (c.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadText))) {
			t.Errorf("%.80v: err %v, want %q", c.props, err, c.want)
		}
	}
}

func nest(n int) any {
	var v any = "leaf"
	for range n {
		v = []any{v}
	}
	return v
}

func TestValidText(t *testing.T) {
	if err := ValidText("description", "管道破裂 ok"); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"a\x00", "\xed\xa0\x80", string([]byte{0xff})} {
		if err := ValidText("description", s); !errors.Is(err, ErrBadText) || !strings.Contains(err.Error(), "description") {
			t.Errorf("ValidText(%q) = %v, want ErrBadText naming the field", s, err)
		}
	}
}

func TestValidNameText(t *testing.T) {
	for _, n := range []string{"a\x00b", "\xff\xfe", "ok/no"} {
		if ValidName(n) == nil {
			t.Errorf("ValidName(%q) accepted", n)
		}
	}
	if err := ValidName("渝A12345"); err != nil {
		t.Error(err)
	}
}

// TestPutUpdateRefuseBadText: no path into the twin stores a string the
// store cannot hold.
func TestPutUpdateRefuseBadText(t *testing.T) {
	tw, _ := newTestTwin(t)
	id := NewID(Incidents, "i1")
	if _, err := tw.Put(&Feature{ID: id, Props: NewProps(map[string]any{"description": "x\x00"})}); !errors.Is(err, ErrBadText) {
		t.Fatalf("Put with NUL prop: %v, want ErrBadText", err)
	}
	if _, ok := tw.Get(id); ok {
		t.Fatal("refused object stored")
	}
	if _, err := tw.Put(&Feature{ID: id, Props: NewProps(map[string]any{"description": "ok"})}); err != nil {
		t.Fatal(err)
	}
	_, _, err := tw.Update(id, func(cur *Feature) (*Feature, error) {
		cur.Props.Set("description", "bad\xff")
		return cur, nil
	})
	if !errors.Is(err, ErrBadText) {
		t.Fatalf("Update with invalid UTF-8: %v, want ErrBadText", err)
	}
	if f, _ := tw.Get(id); f.Prop("description") != "ok" || f.Version != 1 {
		t.Fatalf("refused update changed the object: %+v", f)
	}
	if _, err := tw.Put(&Feature{ID: NewID(Vehicles, "v\xff")}); err == nil {
		t.Fatal("Put with an invalid UTF-8 name accepted")
	}
}

// TestApplySampleLimits: reading names, the number of readings an object
// holds (counting those it has) and the sample time are bounded.
func TestApplySampleLimits(t *testing.T) {
	tw, _ := newTestTwin(t)
	id := NewID(Devices, "d1")
	if _, err := tw.Put(&Feature{ID: id, Geometry: orb.Point{106.5, 29.5}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)
	vals := func(from, n int) map[string]float64 {
		m := map[string]float64{}
		for i := from; i < from+n; i++ {
			m[fmt.Sprintf("r%03d", i)] = float64(i)
		}
		return m
	}
	apply := func(sec int, v map[string]float64) error {
		_, _, err := tw.ApplySample(Sample{ID: id, Time: t0.Add(time.Duration(sec) * time.Second), Values: ReadingsOf(v)})
		return err
	}
	if err := apply(1, vals(0, MaxValues-4)); err != nil {
		t.Fatal(err)
	}
	if err := apply(2, vals(MaxValues-4, 8)); !errors.Is(err, ErrTooManyValues) {
		t.Fatalf("sample taking the object to %d readings: %v, want ErrTooManyValues", MaxValues+4, err)
	}
	if err := apply(3, vals(0, MaxValues-4)); err != nil {
		t.Fatalf("known readings again: %v", err)
	}
	if err := apply(4, vals(MaxValues-4, 4)); err != nil {
		t.Fatalf("up to the limit: %v", err)
	}
	if err := apply(5, vals(1000, 1)); !errors.Is(err, ErrTooManyValues) {
		t.Fatalf("one over the limit: %v", err)
	}
	if err := apply(-30, vals(1000, 1)); !errors.Is(err, ErrTooManyValues) {
		t.Fatalf("older sample (history only) over the limit: %v", err)
	}
	if err := apply(6, vals(0, MaxValues+1)); !errors.Is(err, ErrTooManyValues) {
		t.Fatalf("one sample over the limit: %v", err)
	}
	if err := apply(7, map[string]float64{"\x00": 1}); !errors.Is(err, ErrBadText) {
		t.Fatalf("NUL reading name: %v", err)
	}
	if err := apply(8, map[string]float64{strings.Repeat("k", MaxValueKeyBytes+1): 1}); !errors.Is(err, ErrBadText) {
		t.Fatalf("long reading name: %v", err)
	}
	for _, ts := range []time.Time{{}, time.Unix(0, 0), time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)} {
		if _, _, err := tw.ApplySample(Sample{ID: id, Time: ts, Values: ReadingsOf(vals(0, 1))}); !errors.Is(err, ErrBadTime) {
			t.Errorf("sample at %s: %v, want ErrBadTime", ts, err)
		}
	}
	if f, _ := tw.Get(id); len(f.Props.Get("values").(map[string]any)) != MaxValues {
		t.Fatalf("object holds %d readings, want %d", len(f.Props.Get("values").(map[string]any)), MaxValues)
	}
}
