package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
)

// testIndicators: rows round-trip by region, step and time range; a write
// with a lower seq never replaces a row; object summaries upsert and
// delete; the position is stored with them and survives a reopen of the
// same data (checked by the store's own crash tests).
func testIndicators(t *testing.T, s twin.Store) {
	defer closeStore(t, s)
	is, ok := s.(twin.IndicatorStore)
	if !ok {
		t.Fatalf("%T does not implement twin.IndicatorStore", s)
	}
	ctx := context.Background()
	pos, objs, err := is.IndicatorState(ctx)
	if err != nil || pos != 0 || len(objs) != 0 {
		t.Fatalf("empty state: %d %v %v", pos, objs, err)
	}
	h0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	data := func(n int) []byte { b, _ := json.Marshal(map[string]int{"n": n}); return b }
	var rows []twin.IndicatorRow
	for i := range 30 {
		rows = append(rows,
			twin.IndicatorRow{Region: "500105", Step: "hour", Start: h0.Add(time.Duration(i) * time.Hour), Seq: 10, Data: data(i)},
			twin.IndicatorRow{Region: "500105002", Step: "hour", Start: h0.Add(time.Duration(i) * time.Hour), Seq: 10, Data: data(100 + i)})
	}
	rows = append(rows, twin.IndicatorRow{Region: "500105", Step: "day", Start: h0, Seq: 10, Data: data(7)},
		twin.IndicatorRow{Region: "5001", Step: "hour", Start: h0, Seq: 10, Data: data(-1)}) // a prefix of another code
	objs = map[string][]byte{"alerts/a1": []byte(`{"s":"open"}`), "incidents/i1": []byte(`{"s":"reported"}`)}
	if err := is.PutIndicators(ctx, rows, objs, 10); err != nil {
		t.Fatal(err)
	}
	got, err := is.Indicators(ctx, "500105", "hour", h0.Add(2*time.Hour), h0.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("range [2h, 5h): %d rows, want 3: %+v", len(got), got)
	}
	for i, r := range got {
		var v map[string]int
		if err := json.Unmarshal(r.Data, &v); err != nil || v["n"] != 2+i || !r.Start.Equal(h0.Add(time.Duration(2+i)*time.Hour)) || r.Seq != 10 || r.Region != "500105" || r.Step != "hour" {
			t.Fatalf("row %d: %+v %s (%v)", i, r, r.Data, err)
		}
	}
	if got, _ := is.Indicators(ctx, "500105", "day", h0, h0.Add(24*time.Hour)); len(got) != 1 {
		t.Fatalf("day rows: %+v", got)
	}
	if got, _ := is.Indicators(ctx, "5001", "hour", h0, h0.Add(48*time.Hour)); len(got) != 1 {
		t.Fatalf("region 5001 sees other regions' rows: %+v", got)
	}
	// A replayed write from before (lower seq) is ignored; a newer one wins.
	stale := twin.IndicatorRow{Region: "500105", Step: "hour", Start: h0, Seq: 9, Data: data(999)}
	newer := twin.IndicatorRow{Region: "500105", Step: "hour", Start: h0.Add(time.Hour), Seq: 11, Data: data(555)}
	if err := is.PutIndicators(ctx, []twin.IndicatorRow{stale, newer}, map[string][]byte{"alerts/a1": nil, "devices/d1": []byte(`{"s":"online"}`)}, 11); err != nil {
		t.Fatal(err)
	}
	got, _ = is.Indicators(ctx, "500105", "hour", h0, h0.Add(2*time.Hour))
	if len(got) != 2 || got[0].Seq != 10 || got[1].Seq != 11 {
		t.Fatalf("after stale and newer writes: %+v", got)
	}
	var v0, v1 map[string]int
	_ = json.Unmarshal(got[0].Data, &v0)
	_ = json.Unmarshal(got[1].Data, &v1)
	if v0["n"] != 0 || v1["n"] != 555 {
		t.Fatalf("data after stale and newer writes: %s %s", got[0].Data, got[1].Data)
	}
	pos, objs, err = is.IndicatorState(ctx)
	if err != nil || pos != 11 {
		t.Fatalf("position %d, %v; want 11", pos, err)
	}
	want := map[string]any{"incidents/i1": map[string]any{"s": "reported"}, "devices/d1": map[string]any{"s": "online"}}
	have := map[string]any{}
	for k, b := range objs {
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			t.Fatalf("summary %s: %v", k, err)
		}
		have[k] = x
	}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("object summaries %v, want %v", have, want)
	}
	// Times before 1970 and far ahead order correctly too.
	old := twin.IndicatorRow{Region: "500105", Step: "day", Start: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), Seq: 12, Data: data(1)}
	if err := is.PutIndicators(ctx, []twin.IndicatorRow{old}, nil, 12); err != nil {
		t.Fatal(err)
	}
	if got, _ := is.Indicators(ctx, "500105", "day", time.Date(1968, 1, 1, 0, 0, 0, 0, time.UTC), h0.Add(time.Hour)); len(got) != 2 || !got[0].Start.Equal(old.Start) {
		t.Fatalf("day rows since 1968: %+v", got)
	}
}
