package rules

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// celCostLimit bounds the work of one evaluation, so that a rule written
// over a large list cannot stall the engine.
const celCostLimit = 10000

var (
	envOnce sync.Once
	envVal  *cel.Env
	envErr  error
)

// env is the one CEL environment: building it costs milliseconds, and it is
// immutable once made, so it is shared.
func env() (*cel.Env, error) {
	envOnce.Do(func() {
		envVal, envErr = cel.NewEnv(
			cel.Variable("obj", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("prev", cel.DynType),
			cel.Variable("values", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("joined", cel.DynType),
			cel.Variable("target", cel.DynType),
			cel.Variable("now", cel.TimestampType),
			cel.CrossTypeNumericComparisons(true),
		)
	})
	return envVal, envErr
}

// program is one compiled CEL boolean expression.
type program struct {
	src string
	prg cel.Program
}

func compileExpr(r *Rule, file, field, src string) (*program, error) {
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("cel env: %w", err)
	}
	ast, iss := e.Compile(src)
	if iss != nil && iss.Err() != nil {
		msg := iss.Err().Error()
		if errs := iss.Errors(); len(errs) > 0 {
			msg = errs[0].Message
		}
		msg = strings.TrimSuffix(msg, " (in container '')")
		return nil, r.errf(file, field, "%s", msg)
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, r.errf(file, field, "want a boolean expression, got %s", ast.OutputType())
	}
	prg, err := e.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, r.errf(file, field, "%v", err)
	}
	return &program{src: src, prg: prg}, nil
}

// compiled holds a rule's compiled expressions and parsed settings.
type compiled struct {
	filter, cond, clear *program
	tiers               []*program
	windows             []window
	loc                 *time.Location
}

func compile(r *Rule, file string) (*compiled, error) {
	c := &compiled{}
	var err error
	if r.Subjects.When != "" {
		if c.filter, err = compileExpr(r, file, "subjects.when", r.Subjects.When); err != nil {
			return nil, err
		}
	}
	if r.Condition != "" {
		if c.cond, err = compileExpr(r, file, "condition", r.Condition); err != nil {
			return nil, err
		}
	}
	if r.Clear != "" {
		if c.clear, err = compileExpr(r, file, "clear", r.Clear); err != nil {
			return nil, err
		}
	}
	for i, t := range r.Tiers {
		p, err := compileExpr(r, file, fmt.Sprintf("tiers[%d].when", i), t.When)
		if err != nil {
			return nil, err
		}
		c.tiers = append(c.tiers, p)
	}
	for _, w := range r.Windows {
		win, _ := parseWindow(w) // validated
		c.windows = append(c.windows, win)
	}
	return c, nil
}

// vars is the lazily built CEL activation for one evaluation: the object
// map is only made when an expression reads `obj`, which keeps the common
// case (no candidate fence) free of allocation.
type vars struct {
	cur, prev *twin.Feature
	joined    *twin.Feature
	target    *twin.Feature
	now       time.Time   // read from clk when a program first asks (most changes never do)
	clk       clock.Clock // nil: now is set

	objM, prevM, joinedM, targetM map[string]any
}

var _ interpreter.Activation = (*vars)(nil)

func (v *vars) ResolveName(name string) (any, bool) {
	switch name {
	case "obj":
		if v.objM == nil {
			v.objM = featureMap(v.cur)
		}
		return v.objM, true
	case "prev":
		if v.prev == nil {
			return types.NullValue, true
		}
		if v.prevM == nil {
			v.prevM = featureMap(v.prev)
		}
		return v.prevM, true
	case "values":
		if m, ok := v.cur.Props.Get("values").(map[string]any); ok {
			return m, true
		}
		return map[string]any{}, true
	case "joined":
		if v.joined == nil {
			return types.NullValue, true
		}
		if v.joinedM == nil {
			v.joinedM = featureMap(v.joined)
		}
		return v.joinedM, true
	case "target":
		if v.target == nil {
			return types.NullValue, true
		}
		if v.targetM == nil {
			v.targetM = featureMap(v.target)
		}
		return v.targetM, true
	case "now":
		if v.clk != nil && v.now.IsZero() {
			v.now = v.clk.Now()
		}
		return v.now, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }

// featureMap is the CEL view of an object: its props plus id, layer, lon, lat.
func featureMap(f *twin.Feature) map[string]any {
	m := make(map[string]any, f.Props.Len()+4)
	for k, val := range f.Props.All() {
		m[k] = val
	}
	m["id"] = f.ID.String()
	m["layer"] = string(f.ID.Layer)
	if p, ok := f.Geometry.(orb.Point); ok {
		m["lon"], m["lat"] = p[0], p[1]
	}
	return m
}

// eval runs p; an evaluation error (a missing reading, a cost overrun) counts
// as "no information" and is reported as ok=false.
func (p *program) eval(v *vars) (val, ok bool) {
	if p == nil {
		return true, true
	}
	out, _, err := p.prg.Eval(v)
	if err != nil {
		return false, false
	}
	b, isBool := out.Value().(bool)
	return b, isBool
}

func knownLayer(s string) bool {
	_, err := twin.ParseLayer(s)
	return err == nil
}
