package rules

import (
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/twin"
)

// TestRiskFollowsRectificationTasks: a building's colour follows its open
// rectification tasks (governance/tasks writes them; here by hand): an
// open task's risk_level caps it, each escalation the task's due clock
// took steps it one further and moves the supervising tier, closing
// restores the base.
func TestRiskFollowsRectificationTasks(t *testing.T) {
	f := newFixture(t, riskRules)
	bld := orb.Polygon{{{106.55, 29.55}, {106.551, 29.55}, {106.551, 29.551}, {106.55, 29.551}, {106.55, 29.55}}}
	f.put(twin.Buildings, "b3", bld, map[string]any{"risk_level": 5.0, "risk_color": "green", "owners": []any{"p7"}})
	f.e.Drain()
	due := f.clk.Now().Add(time.Hour).Format(time.RFC3339Nano)
	task := func(props map[string]any) {
		t.Helper()
		p := map[string]any{"kind": "rectification", "subject": "buildings/b3", "state": "issued", "due": due}
		for k, v := range props {
			p[k] = v
		}
		f.put(twin.Tasks, "rect-1", orb.Point{106.5505, 29.5505}, p)
		f.e.Drain()
	}
	colour := func() (float64, string, string) {
		b, _ := f.tw.Get(twin.NewID(twin.Buildings, "b3"))
		n, _ := b.Number("risk_level")
		return n, b.Prop("risk_color"), b.Prop("risk_tier")
	}
	steps := []struct {
		props  map[string]any
		level  float64
		colour string
		tier   string
	}{
		{map[string]any{}, 5, "green", ""},
		{map[string]any{"risk_level": 4.0}, 4, "blue", "street"},
		{map[string]any{"risk_level": 4.0, "overdue": true, "escalations": 1.0}, 3, "yellow", "district"},
		{map[string]any{"risk_level": 4.0, "overdue": true, "escalations": 2.0}, 2, "orange", "city"},
		{map[string]any{"risk_level": 4.0, "overdue": true, "escalations": 2.0, "state": "closed"}, 5, "green", "street"},
	}
	for i, s := range steps {
		task(s.props)
		n, c, tier := colour()
		if n != s.level || c != s.colour || (s.tier != "" && tier != s.tier) {
			t.Fatalf("step %d (%v): level %v %s tier %s, want %v %s %s", i, s.props, n, c, tier, s.level, s.colour, s.tier)
		}
	}
	if as := f.alerts("building-risk"); len(as) != 1 || as[0].Prop("state") != "closed" {
		t.Fatalf("risk alert after the task closed: %d", len(as))
	}
}
