package rules

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

func TestReloadIfChanged(t *testing.T) {
	f := newFixture(t, "")
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(gasA), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &fileWatch{path: path}
	if ok, err := f.e.reloadIfChanged(context.Background(), w, true); !ok || err != nil {
		t.Fatalf("first load: %v %v", ok, err)
	}
	if ok, _ := f.e.reloadIfChanged(context.Background(), w, true); ok {
		t.Fatal("reloaded an unchanged file")
	}
	bad := strings.Replace(gasB, "values.ch4 >= 50.0", "values.ch4 >=", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(path, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if _, err := f.e.reloadIfChanged(context.Background(), w, true); err == nil || !strings.Contains(err.Error(), "tiers[1].when") {
		t.Fatalf("bad file: %v", err)
	}
	if string(f.e.RuleSet().Source) != gasA {
		t.Fatal("previous rules replaced by a bad file")
	}
}

func TestRestartSeedsAlertsAndHazards(t *testing.T) {
	f := newFixture(t, gasA)
	f.put(twin.Devices, "s1", orb.Point{106.55, 29.55}, map[string]any{"kind": "septic_gas"})
	f.reading(t, "s1", f.clk.Now(), map[string]float64{"ch4": 20})
	bld := orb.Polygon{{{106.55, 29.55}, {106.551, 29.55}, {106.551, 29.551}, {106.55, 29.551}, {106.55, 29.55}}}
	f.put(twin.Buildings, "b3", bld, map[string]any{"risk_level": 5.0,
		"hazards": []any{map[string]any{"name": "h", "deadline": f.clk.Now().Add(-time.Minute).Format(time.RFC3339)}}})

	// A second engine over the same twin: as after a restart.
	e2 := New(f.tw, Options{Clock: f.clk, Logger: f.e.log})
	rs, _ := Parse("t.yaml", []byte(gasA+"  - name: risk\n    kind: risk\n"))
	e2.Load(rs)
	e2.Tick(f.clk.Now())
	if b, _ := f.tw.Get(twin.NewID(twin.Buildings, "b3")); b.Prop("risk_color") != "blue" {
		t.Fatalf("seeded hazard not applied: %v", b.Props)
	}
	// The old alert was closed by hand; the restarted engine opens .1 next.
	if _, _, err := f.tw.Update(twin.NewID(twin.Alerts, "gas.devices.s1.0"), func(c *twin.Feature) (*twin.Feature, error) {
		c.Props.Set("state", StateClosed)
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	e3 := New(f.tw, Options{Clock: f.clk, Logger: f.e.log})
	e3.Load(rs)
	f.reading(t, "s1", f.clk.Now().Add(time.Second), map[string]float64{"ch4": 1})
	if _, _, err := f.tw.ApplySample(twin.Sample{ID: twin.NewID(twin.Devices, "s1"), Time: f.clk.Now().Add(2 * time.Second), Values: twin.ReadingsOf(map[string]float64{"ch4": 30})}); err != nil {
		t.Fatal(err)
	}
	e3.Drain()
	if _, ok := f.tw.Get(twin.NewID(twin.Alerts, "gas.devices.s1.1")); !ok {
		t.Fatalf("restarted engine did not continue numbering: %v", f.alerts("gas"))
	}
}
