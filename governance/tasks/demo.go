package tasks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// DemoOptions configure RunDemo.
type DemoOptions struct {
	Seed int64
	// DirectiveEvery is how often the city issues a directive; default 10 min.
	DirectiveEvery time.Duration
	// StepEvery is how often the demo's regions move their tasks on; default 20 s.
	StepEvery time.Duration
	// Rectifications is how many high-rises get a rectification task at
	// the first start; default 24 (a third of them overdue).
	Rectifications int
	// Cases is how many enforcement cases are replayed from the trucks'
	// last forbidden-hours crossings at the first start; default 4.
	Cases int
}

// demoActor marks what the demo did, so it never touches real work.
const demoActor = "demo"

var demoTitles = []string{"汛前隐患排查", "高层建筑消防通道清理", "渣土运输专项整治", "燃气安全入户检查", "节日安全生产检查", "背街小巷环境整治"}

// RunDemo makes each loop visible on the demo's first screen: at the first
// start it seeds open and overdue rectification tasks on high-rises and
// enforcement cases replayed from muck trucks' crossings in forbidden
// hours (with real cameras as evidence), then until ctx ends it issues a
// city directive now and then and moves the demo's tasks along (districts
// forward to streets, streets acknowledge and report, some run late and
// escalate). Only the demo (--demo) starts it.
func (s *Service) RunDemo(ctx context.Context, o DemoOptions) error {
	if o.DirectiveEvery <= 0 {
		o.DirectiveEvery = 10 * time.Minute
	}
	if o.StepEvery <= 0 {
		o.StepEvery = 20 * time.Second
	}
	if o.Rectifications <= 0 {
		o.Rectifications = 24
	}
	if o.Cases <= 0 {
		o.Cases = 4
	}
	r := rand.New(rand.NewPCG(uint64(o.Seed), 15))
	if s.tw.Count(twin.Tasks) == 0 {
		n := s.seedRectification(r, o.Rectifications)
		m := s.seedCases(r, o.Cases)
		s.log.Info("demo work loops seeded", "rectification", n, "enforcement", m)
	}
	s.demoDirective(r)
	issue := time.NewTicker(o.DirectiveEvery)
	defer issue.Stop()
	stepT := time.NewTicker(o.StepEvery)
	defer stepT.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-issue.C:
			s.demoDirective(r)
		case <-stepT.C:
			s.demoStep(r)
		}
	}
}

// districts lists the district codes of the twin, sorted.
func (s *Service) districts() []string {
	var out []string
	s.tw.Range(twin.Regions, func(f *twin.Feature) bool {
		if f.Prop("level") == "district" {
			out = append(out, f.ID.Name)
		}
		return true
	})
	sort.Strings(out)
	return out
}

func (s *Service) streetsOf(district string) []string {
	var out []string
	s.tw.Range(twin.Regions, func(f *twin.Feature) bool {
		if f.Prop("level") == "street" && f.Prop("parent") == district {
			out = append(out, f.ID.Name)
		}
		return true
	})
	sort.Strings(out)
	return out
}

func (s *Service) demoDirective(r *rand.Rand) {
	ds := s.districts()
	if len(ds) == 0 {
		return
	}
	r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	ds = ds[:min(len(ds), 3)]
	now := s.opts.Clock.Now()
	title := demoTitles[r.IntN(len(demoTitles))]
	_, err := s.CreateDirective(auth.Principal{Subject: demoActor, Role: auth.Operator, Region: auth.CityCode}, DirectiveReq{
		Title: title, Text: title + ": 请各区今日内完成并上报 (演示)", Targets: ds, Due: stamp(now.Add(15 * time.Minute)),
	})
	if err != nil {
		s.log.Warn("demo directive", "err", err)
	}
}

// demoStep moves a few of the demo directives' tasks on: a district
// forwards to two streets or acknowledges; a street acknowledges, then
// reports. About one in five is left to run late.
func (s *Service) demoStep(r *rand.Rand) {
	var open []*twin.Feature
	s.tw.Range(twin.Tasks, func(f *twin.Feature) bool {
		if f.Prop("kind") == KindDirective && f.Prop("issued_by") == demoActor && !done(f) && len(twin.PropStrings(f.Props.Get("children"))) == 0 {
			open = append(open, f)
		}
		return true
	})
	sort.Slice(open, func(i, j int) bool { return open[i].ID.Name < open[j].ID.Name })
	for _, f := range open {
		if r.IntN(4) != 0 || f.ID.Name[len(f.ID.Name)-1] == '7' { // ~1/16 by name never move: they escalate
			continue
		}
		a := f.Prop("assignee")
		p := auth.Principal{Subject: "demo-" + a, Role: auth.Operator, Region: a}
		var err error
		switch {
		case f.Prop("state") == Issued && s.tierOf(a) == "district" && r.IntN(2) == 0:
			st := s.streetsOf(a)
			if len(st) >= 2 {
				r.Shuffle(len(st), func(i, j int) { st[i], st[j] = st[j], st[i] })
				_, err = s.Forward(p, f.ID.Name, ForwardReq{Targets: st[:2]})
			}
		case f.Prop("state") == Issued:
			_, err = s.Act(p, f.ID.Name, "ack", ActionReq{})
		default:
			_, err = s.Act(p, f.ID.Name, "report", ActionReq{Note: "已按要求完成 (演示)", Photos: []string{fmt.Sprintf("demo/photo-%04d.jpg", r.IntN(10000))}})
		}
		if err != nil {
			s.log.Debug("demo step", "task", f.ID.String(), "err", err)
		}
	}
}

// seedRectification gives n high-rises (spread over the districts) a
// rectification task; every third is already overdue (issued three days
// ago, due a day ago), so its building shows a stepped colour and the
// district supervises it.
func (s *Service) seedRectification(r *rand.Rand, n int) int {
	var hs []*twin.Feature
	s.tw.Range(twin.Buildings, func(f *twin.Feature) bool {
		if hr, _ := f.Props.Get("high_rise").(bool); hr && len(f.Region()) == 3 && len(twin.PropStrings(f.Props.Get("owners"))) > 0 {
			hs = append(hs, f)
		}
		return true
	})
	sort.Slice(hs, func(i, j int) bool { return hs[i].ID.Name < hs[j].ID.Name })
	r.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
	hazards := []string{"消防通道堵塞", "疏散指示标志损坏", "消火栓无水", "电动车楼道充电", "防火门常开"}
	now := s.opts.Clock.Now()
	made := 0
	for i, b := range hs {
		if made == n {
			break
		}
		issued, due := now.Add(-time.Hour), now.Add(time.Duration(2+r.IntN(46))*time.Hour)
		if i%3 == 0 {
			issued, due = now.Add(-72*time.Hour), now.Add(-time.Duration(1+r.IntN(30))*time.Hour)
		}
		h := hazards[r.IntN(len(hazards))]
		p := auth.Principal{Subject: demoActor, Role: auth.Operator, Region: b.Region()[1]}
		if _, err := s.rectify(p, b, RectifyReq{Kind: KindRectification, Subject: b.ID.String(), Title: h,
			Text: h + " (演示)", Plan: "一楼一策: 责任人限期整改, 街道复查"}, due, issued); err != nil {
			s.log.Warn("demo rectification", "building", b.ID.String(), "err", err)
			continue
		}
		made++
	}
	return made
}

// seedCases replays up to n muck trucks' crossings of their bridge at the
// last forbidden window (08:00 local) through the enforcement path: the
// fixes along the deck, then a crossing alert's case.
func (s *Service) seedCases(r *rand.Rand, n int) int {
	var trucks []*twin.Feature
	s.tw.Range(twin.Vehicles, func(f *twin.Feature) bool {
		if f.Prop("kind") == "muck_truck" {
			trucks = append(trucks, f)
		}
		return true
	})
	sort.Slice(trucks, func(i, j int) bool { return trucks[i].ID.Name < trucks[j].ID.Name })
	r.Shuffle(len(trucks), func(i, j int) { trucks[i], trucks[j] = trucks[j], trucks[i] })
	var bridges []*twin.Feature
	s.tw.Range(twin.Bridges, func(f *twin.Feature) bool {
		if _, ok := f.Geometry.(orb.LineString); ok {
			bridges = append(bridges, f)
		}
		return true
	})
	sort.Slice(bridges, func(i, j int) bool { return bridges[i].ID.Name < bridges[j].ID.Name })
	if len(bridges) == 0 {
		return 0
	}
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		sh = time.FixedZone("CST", 8*3600)
	}
	now := s.opts.Clock.Now().In(sh)
	made := 0
	for i, v := range trucks {
		if made == n {
			break
		}
		b := bridges[i%len(bridges)]
		ls := b.Geometry.(orb.LineString)
		day := now.AddDate(0, 0, -1)
		t0 := time.Date(day.Year(), day.Month(), day.Day(), 7, 30+r.IntN(80), 0, 0, sh)
		a, z := ls[0], ls[len(ls)-1]
		var last orb.Point
		for k, f := range []float64{-0.1, 0.25, 0.5, 0.75, 1.1} {
			last = orb.Point{a[0] + f*(z[0]-a[0]), a[1] + f*(z[1]-a[1])}
			s.enf.addFix(v.ID, fix{at: t0.Add(time.Duration(k) * 25 * time.Second), p: last, speed: 30 + float64(r.IntN(20)), hasSpeed: true})
		}
		mid := orb.Point{(a[0] + z[0]) / 2, (a[1] + z[1]) / 2}
		var regions []any
		for _, c := range b.Region() {
			regions = append(regions, c)
		}
		al := &twin.Feature{ID: twin.NewID(twin.Alerts, fmt.Sprintf("bridge-muck.demo.%s", v.ID.Name)), Geometry: mid, Place: twin.NewPlace(b.Region(), ""),
			Props: twin.NewProps(map[string]any{"kind": "geofence", "rule": "bridge-muck", "subject": v.ID.String(), "target": b.ID.String(),
				"message": "muck truck on a bridge in forbidden hours (demo replay)", "first": stamp(t0), auth.AlsoRegionsProp: regions})}
		s.enf.openCase(al)
		s.enf.finish(v.ID, "demo replay")
		made++
	}
	return made
}
