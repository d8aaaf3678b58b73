package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/paulmach/orb"
)

// District is one generated district.
type District struct {
	Code, Name, NameZH string
	Polygon            orb.Polygon
	// Kernel is a point from which the whole boundary is visible; streets
	// are annular sectors around it and the district's roads meet there.
	Kernel  orb.Point
	Streets []*Street
	density float64
}

// Street is one generated street (街道) region: the core of its district
// or an annular sector of it around the district kernel, between scale
// factors SIn and SOut of the district boundary.
type Street struct {
	Code, Name string
	NameZH     string // e.g. 解放碑街道: operators read Chinese names
	// PlaceZH is the place name buildings in the street are named after
	// (解放碑 for 解放碑街道, the district's 渝中 for a numbered street).
	PlaceZH  string
	District *District
	Polygon  orb.Polygon
	// Center is a dry point inside the street where its roads meet.
	Center orb.Point
	// reachable: the spoke from the district kernel to Center is dry.
	reachable bool
	// chain is the district boundary (scale 1) over the street's angle range,
	// first and last points on the street's bounding rays.
	chain     []orb.Point
	sIn, sOut float64
}

// RandomPoint returns a point inside the street drawn from r, roughly
// uniform in area, kept 2% of the street's depth off its edges. It is used
// for buildings, workers and walking targets.
func (s *Street) RandomPoint(r *rand.Rand) orb.Point {
	u, v := s.RandomUV(r)
	return s.PointAt(u, v)
}

// RandomUV draws street coordinates (see PointAt) for a point roughly
// uniform in area and off the street's edges (by 2% of its arc and 2%
// of its depth).
func (s *Street) RandomUV(r *rand.Rand) (u, v float64) {
	i := r.IntN(len(s.chain) - 1)
	u = (float64(i) + r.Float64()) / float64(len(s.chain)-1)
	u = 0.02 + 0.96*u // off the rays shared with the neighbouring streets
	// Uniform in the annulus: the radius factor has density proportional
	// to itself. The 1.02/0.98 margins keep points off the rings.
	in, out := s.sIn*1.02, s.sOut*0.98
	sc := math.Sqrt(in*in + r.Float64()*(out*out-in*in))
	return u, (sc - s.sIn) / (s.sOut - s.sIn)
}

// PointAt maps street coordinates to lon/lat: u in [0,1] runs along the
// street's arc of the district boundary, v in [0,1] from its inner edge to
// its outer edge. Every (u, v) in the unit square is inside the street, so
// a straight line in (u, v) is a walk that never leaves it.
func (s *Street) PointAt(u, v float64) orb.Point {
	u = math.Max(0, math.Min(1, u))
	v = math.Max(0, math.Min(1, v))
	x := u * float64(len(s.chain)-1)
	i := int(x)
	if i >= len(s.chain)-1 {
		i = len(s.chain) - 2
	}
	t := x - float64(i)
	a, b := s.chain[i], s.chain[i+1]
	edge := orb.Point{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])}
	return scaleToward(s.District.Kernel, edge, s.sIn+v*(s.sOut-s.sIn))
}

// Street scale factors: the core street is the district boundary shrunk to
// coreScale around the kernel; the middle ring reaches midScale.
const (
	coreScale = 0.3
	midScale  = 0.65
)

// streetNames are real street (街道) names used in order; streets beyond a
// district's list are numbered.
var streetNames = map[string][]string{
	"500103": {"Jiefangbei", "Chaotianmen", "Qixinggang", "Shangqingsi", "Lianglukou", "Daxigou", "Nanjimen", "Caiyuanba", "Hualongqiao", "Shijingpo", "Daping"},
	"500104": {"Xinshancun", "Yuegang", "Chunhuilu", "Badou", "Jiuchangyuan"},
	"500105": {"Huaxinjie", "Wulidian", "Jiangbeicheng", "Shimahe", "Dashiba", "Guanyinqiao", "Cuntan", "Tieshanping", "Guojiatuo"},
	"500106": {"Xiaolongkan", "Ciqikou", "Tianxingqiao", "Shapingba", "Yubeilu", "Shuangbei", "Jingkou", "Tongjiaqiao", "Shanxilu", "Qinjiagang"},
	"500107": {"Yangjiaping", "Shiqiaopu", "Huangjiaoping", "Xiejiawan", "Shipingqiao", "Erlang", "Zhongliangshan", "Yuzhoulu", "Huayan"},
	"500108": {"Nanping", "Tongyuanju", "Huayuanlu", "Haitangxi", "Longmenhao", "Danzishi", "Nanshan", "Tianwen"},
	"500109": {"Tiansheng", "Beiwenquan", "Dongyang", "Longfengqiao", "Chaoyang"},
	"500112": {"Lianglu", "Shuangfengqiao", "Longxi", "Longshan", "Longta", "Renhe", "Huixing", "Dazhulin", "Cuiyun"},
}

// streetNamesZH are the Chinese names of streetNames, index for index.
var streetNamesZH = map[string][]string{
	"500103": {"解放碑", "朝天门", "七星岗", "上清寺", "两路口", "大溪沟", "南纪门", "菜园坝", "化龙桥", "石井坡", "大坪"},
	"500104": {"新山村", "跃港", "春晖路", "八斗", "九场园"},
	"500105": {"华新街", "五里店", "江北城", "石马河", "大石坝", "观音桥", "寸滩", "铁山坪", "郭家沱"},
	"500106": {"小龙坎", "磁器口", "天星桥", "沙坪坝", "渝碚路", "双碑", "井口", "童家桥", "山溪路", "覃家岗"},
	"500107": {"杨家坪", "石桥铺", "黄桷坪", "谢家湾", "石坪桥", "二郎", "中梁山", "渝州路", "华岩"},
	"500108": {"南坪", "铜元局", "花园路", "海棠溪", "龙门浩", "弹子石", "南山", "天文"},
	"500109": {"天生", "北温泉", "东阳", "龙凤桥", "朝阳"},
	"500112": {"两路", "双凤桥", "龙溪", "龙山", "龙塔", "人和", "回兴", "大竹林", "翠云"},
}

// buildDistricts makes the eight districts and their streets. The number
// of streets per district (11..19) comes from r.
func buildDistricts(r *rand.Rand) ([]*District, error) {
	var ds []*District
	for _, def := range districtDefs {
		pts, as, err := starAngles(def.kernel, densifyRing(def.ring))
		if err != nil {
			return nil, fmt.Errorf("district %s: %w", def.code, err)
		}
		d := &District{Code: def.code, Name: def.name, NameZH: def.nameZH, Kernel: def.kernel,
			Polygon: orb.Polygon{closed(pts)}, density: def.density}
		mid := 4 + r.IntN(3)
		outer := 6 + r.IntN(8)
		names := streetNames[def.code]
		add := func(s *Street) {
			n := len(d.Streets) + 1
			s.Code = fmt.Sprintf("%s%03d", def.code, n)
			if n <= len(names) {
				s.Name = names[n-1]
			} else {
				s.Name = fmt.Sprintf("%s No.%d", def.name, n)
			}
			if zh := streetNamesZH[def.code]; n <= len(zh) {
				s.NameZH = zh[n-1] + "街道"
				s.PlaceZH = zh[n-1]
			} else {
				s.NameZH = fmt.Sprintf("%s第%d街道", def.nameZH, n)
				s.PlaceZH = strings.TrimSuffix(def.nameZH, "区")
			}
			s.District = d
			d.Streets = append(d.Streets, s)
		}
		// The core: the whole boundary shrunk around the kernel.
		core := make([]orb.Point, len(pts))
		for i, p := range pts {
			core[i] = round(scaleToward(def.kernel, p, coreScale))
		}
		add(&Street{Polygon: orb.Polygon{closed(core)}, Center: def.kernel, reachable: true,
			chain: append(append([]orb.Point(nil), pts...), pts[0]), sIn: 0, sOut: coreScale})
		for _, ring := range []struct {
			n       int
			in, out float64
		}{{mid, coreScale, midScale}, {outer, midScale, 1}} {
			idx := splitIndices(as, ring.n, r.Float64()*2*math.Pi/float64(ring.n))
			for j, a := range idx {
				b := idx[(j+1)%len(idx)]
				if b <= a {
					b += len(pts)
				}
				add(sector(def.kernel, pts, a, b, ring.in, ring.out))
			}
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// sector builds the street between boundary vertices a..b (indices modulo
// len(pts), b > a) and scale factors in..out around kernel k.
func sector(k orb.Point, pts []orb.Point, a, b int, in, out float64) *Street {
	n := len(pts)
	chain := make([]orb.Point, 0, b-a+1)
	for i := a; i <= b; i++ {
		chain = append(chain, pts[i%n])
	}
	at := func(p orb.Point, s float64) orb.Point {
		if s == 1 {
			return p
		}
		return round(scaleToward(k, p, s))
	}
	ring := make(orb.Ring, 0, 2*len(chain)+1)
	for _, p := range chain {
		ring = append(ring, at(p, out))
	}
	for i := len(chain) - 1; i >= 0; i-- {
		ring = append(ring, at(chain[i], in))
	}
	ring = append(ring, ring[0])
	midP := chain[len(chain)/2]
	if len(chain)%2 == 0 {
		p, q := chain[len(chain)/2-1], chain[len(chain)/2]
		midP = orb.Point{(p[0] + q[0]) / 2, (p[1] + q[1]) / 2}
	}
	return &Street{Polygon: orb.Polygon{ring}, Center: round(scaleToward(k, midP, (in+out)/2)),
		chain: chain, sIn: in, sOut: out}
}

// River is a generated river: its centreline and polygon.
type River struct {
	Name, NameZH string
	Centre       orb.LineString
	// HalfWidth is the half width in metres at each centreline vertex.
	HalfWidth []float64
	Polygon   orb.Polygon
	// segBounds are the centreline segments' bounding boxes widened by
	// their water and nearSlack.
	segBounds []orb.Bound
}

// buildRiver buffers a centreline of nodes into a polygon whose width
// (metres) varies smoothly between minW and maxW.
func buildRiver(name, nameZH string, line []string, minW, maxW float64) *River {
	rv := &River{Name: name, NameZH: nameZH}
	for i, n := range line {
		rv.Centre = append(rv.Centre, nodes[n])
		w := minW + (maxW-minW)*(0.5+0.5*math.Sin(float64(i)*1.3))
		rv.HalfWidth = append(rv.HalfWidth, w/2)
	}
	c := rv.Centre
	left := make([]orb.Point, len(c))
	right := make([]orb.Point, len(c))
	for i, p := range c {
		mx, my := metresPerDegree(p[1])
		dir := func(a, b orb.Point) (float64, float64) {
			x, y := (b[0]-a[0])*mx, (b[1]-a[1])*my
			l := math.Hypot(x, y)
			return x / l, y / l
		}
		var dx, dy float64
		switch {
		case i == 0:
			dx, dy = dir(c[0], c[1])
		case i == len(c)-1:
			dx, dy = dir(c[i-1], c[i])
		default:
			x1, y1 := dir(c[i-1], c[i])
			x2, y2 := dir(c[i], c[i+1])
			dx, dy = x1+x2, y1+y2
			l := math.Hypot(dx, dy)
			dx, dy = dx/l, dy/l
		}
		// Left normal; miter length so the band keeps its width at bends.
		nx, ny := -dy, dx
		h := rv.HalfWidth[i]
		if i > 0 && i < len(c)-1 {
			x1, y1 := dir(c[i-1], c[i])
			h /= math.Max(0.5, nx*(-y1)+ny*x1)
		}
		left[i] = round(offsetMetres(p, nx*h, ny*h))
		right[i] = round(offsetMetres(p, -nx*h, -ny*h))
	}
	ring := make(orb.Ring, 0, 2*len(c)+1)
	ring = append(ring, right...)
	for i := len(left) - 1; i >= 0; i-- {
		ring = append(ring, left[i])
	}
	ring = append(ring, ring[0])
	rv.Polygon = orb.Polygon{ring}
	for i := 0; i+1 < len(c); i++ {
		b := orb.Bound{Min: c[i], Max: c[i]}.Extend(c[i+1])
		reach := math.Max(rv.HalfWidth[i], rv.HalfWidth[i+1])*1.1 + nearSlack
		mx, my := metresPerDegree(b.Min[1])
		b.Min = orb.Point{b.Min[0] - reach/mx, b.Min[1] - reach/my}
		b.Max = orb.Point{b.Max[0] + reach/mx, b.Max[1] + reach/my}
		rv.segBounds = append(rv.segBounds, b)
	}
	return rv
}

// nearSlack is how far (metres) beyond a segment's water the segment's
// bounding box reaches; wet answers margins up to it from the boxes alone.
const nearSlack = 100.0

// wet reports whether p is within margin metres of the river's water. It
// measures to the centreline minus 1.1 times the larger half width of the
// segment, a conservative bound for the band. Segments whose widened
// bounding box does not contain p are skipped when margin <= nearSlack.
func (rv *River) wet(p orb.Point, margin float64) bool {
	for i := 0; i+1 < len(rv.Centre); i++ {
		if margin <= nearSlack && !rv.segBounds[i].Contains(p) {
			continue
		}
		if segDistMetres(p, rv.Centre[i], rv.Centre[i+1])-math.Max(rv.HalfWidth[i], rv.HalfWidth[i+1])*1.1 < margin {
			return true
		}
	}
	return false
}

// pointAlong returns the point at fraction t of segment i of the
// centreline, with the unit normal (east, north metres) to its left.
func (rv *River) pointAlong(seg int, t float64) (orb.Point, float64, float64) {
	a, b := rv.Centre[seg], rv.Centre[seg+1]
	p := orb.Point{a[0] + t*(b[0]-a[0]), a[1] + t*(b[1]-a[1])}
	mx, my := metresPerDegree(p[1])
	x, y := (b[0]-a[0])*mx, (b[1]-a[1])*my
	l := math.Hypot(x, y)
	return p, -y / l, x / l
}
