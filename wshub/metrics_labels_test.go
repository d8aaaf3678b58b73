package wshub

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

// TestLabelValuesInitialised: every reason the package counts drops and
// rejections with (a string literal or the reason returned by
// overCapLocked) is in dropReasons or rejectReasons, so each series is
// on /metrics, at 0, from start; and the hub's metrics pass the
// Prometheus linter (promtool check metrics).
func TestLabelValuesInitialised(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "WithLabelValues" || len(n.Args) != 1 {
					return true
				}
				vec, ok := sel.X.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				lit, ok := n.Args[0].(*ast.BasicLit)
				if !ok {
					return true
				}
				v := strings.Trim(lit.Value, `"`)
				switch vec.Sel.Name {
				case "dropped":
					if !slices.Contains(dropReasons[:], v) {
						t.Errorf("%s: drop reason %q is not in dropReasons", fset.Position(n.Pos()), v)
					}
				case "rejected":
					if !slices.Contains(rejectReasons[:], v) {
						t.Errorf("%s: reject reason %q is not in rejectReasons", fset.Position(n.Pos()), v)
					}
				}
			case *ast.FuncDecl:
				if n.Name.Name != "overCapLocked" {
					return true
				}
				ast.Inspect(n.Body, func(m ast.Node) bool {
					if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 2 {
						if lit, ok := r.Results[0].(*ast.BasicLit); ok {
							if v := strings.Trim(lit.Value, `"`); v != "" && !slices.Contains(rejectReasons[:], v) {
								t.Errorf("%s: reject reason %q is not in rejectReasons", fset.Position(r.Pos()), v)
							}
						}
					}
					return true
				})
				return false
			}
			return true
		})
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	if got := testutil.CollectAndCount(m.dropped); got != len(dropReasons) {
		t.Errorf("%d twin_ws_dropped_clients_total series at start, want %d", got, len(dropReasons))
	}
	if got := testutil.CollectAndCount(m.rejected); got != len(rejectReasons) {
		t.Errorf("%d twin_ws_rejected_total series at start, want %d", got, len(rejectReasons))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
