package telemetry

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReasonsListsEveryReason: every Reason constant declared in this
// package is in Reasons, so its twin_deadletter_total series exists from
// start.
func TestReasonsListsEveryReason(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	known := Reasons()
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(f, func(node ast.Node) bool {
				vs, ok := node.(*ast.ValueSpec)
				if !ok {
					return true
				}
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
					return true
				}
				for i, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok {
						continue
					}
					n++
					if r := Reason(strings.Trim(lit.Value, `"`)); !slices.Contains(known, r) {
						t.Errorf("Reason %s = %s is missing from Reasons()", vs.Names[i].Name, lit.Value)
					}
				}
				return true
			})
		}
	}
	if n < len(known) {
		t.Errorf("found %d Reason constants, Reasons() has %d", n, len(known))
	}
}

// TestMetricsPresentFromStart: a fresh registry already has a 0 series for
// every dead-letter reason and every source and outcome, and passes the
// Prometheus linter (promtool check metrics).
func TestMetricsPresentFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	if got := testutil.CollectAndCount(m.DeadLetters); got != len(Reasons()) {
		t.Errorf("%d twin_deadletter_total series, want %d", got, len(Reasons()))
	}
	if got := testutil.CollectAndCount(m.Messages); got != 8 {
		t.Errorf("%d twin_ingest_messages_total series, want 8", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// TestMetricsMessage: Message counts into the same series as
// Messages.WithLabelValues, for the series made at start and for others,
// and two NewMetrics on one registerer count into one series.
func TestMetricsMessage(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, again := NewMetrics(reg), NewMetrics(reg)
	m.Message("http", OutcomeApplied).Inc()
	again.Message("http", OutcomeApplied).Inc()
	m.Message("replay", OutcomeHistory).Inc()
	if got := testutil.ToFloat64(m.Messages.WithLabelValues("http", OutcomeApplied)); got != 2 {
		t.Fatalf("http applied %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Messages.WithLabelValues("replay", OutcomeHistory)); got != 1 {
		t.Fatalf("replay history %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Messages.WithLabelValues("mqtt", OutcomeApplied)); got != 0 {
		t.Fatalf("mqtt applied %v, want 0", got)
	}
}
