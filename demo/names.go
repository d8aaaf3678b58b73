package demo

import (
	"fmt"
	"strings"
)

// Display names in Chinese for the demo's buildings, their responsible
// persons and its vehicles, so that an operator reads 解放碑锦绣大厦 or
// 渝A·12345 · 顺达运输 3号车 rather than b000123 or MT0012 (issue 14).
//
// The names come from a hash of the seed and the object's index, not from
// the generator's random streams: adding them moved nothing else in the
// city (TestDeterministic's digest changes only by the new properties).
// `name` stays the object's id name; name_zh is what the clients show.

// compoundWordsZH name estates and towers: common words of Chongqing
// estate names, no developer's brand.
var compoundWordsZH = []string{
	"锦绣", "阳光", "滨江", "江岸", "翠湖", "丽景", "嘉陵", "长江", "山城", "朝天",
	"聚贤", "金桂", "南山", "学府", "康居", "幸福", "东方", "银河", "紫荆", "玉兰",
	"鸿福", "云顶", "兴隆", "和平", "民生", "建设", "五一", "人民", "文化", "红旗",
	"东风", "光明", "友谊", "泰和", "瑞丰", "永安", "天和", "盛世", "鑫源", "新世纪",
	"国贸", "环球", "金融", "大都会", "时代", "世纪", "华新", "龙门",
}

// towerSuffixesZH are for office and residential towers (18 storeys and
// more), homeSuffixesZH for the rest, which are numbered buildings (栋)
// of an estate.
var (
	towerSuffixesZH = []string{"大厦", "中心", "广场", "国际", "大楼"}
	homeSuffixesZH  = []string{"小区", "花园", "家园", "新村", "公寓", "苑"}
)

// hauliersZH are the muck-truck hauliers (owners haulier-01..24).
var hauliersZH = []string{
	"顺达", "通达", "宏运", "渝通", "鑫泰", "远航", "恒通", "建鑫", "路通", "泰安", "江城", "山河",
	"金马", "安顺", "新路", "兴达", "东盛", "华运", "长运", "嘉运", "运捷", "城建", "利民", "巴渝",
}

// mix is splitmix64: a well-spread hash of the seed and an index.
func mix(seed int64, kind, i uint64) uint64 {
	z := uint64(seed) ^ kind*0xbf58476d1ce4e5b9 ^ i*0x9e3779b97f4a7c15
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// buildingNamer gives building i of a street its Chinese name: an estate
// or tower named after the street's place (解放碑锦绣小区 3栋, 解放碑时代
// 大厦 B座). Buildings of the same estate count up, so names are unique.
type buildingNamer struct {
	seed  int64
	count map[string]int
}

func newBuildingNamer(seed int64) *buildingNamer {
	return &buildingNamer{seed: seed, count: map[string]int{}}
}

// name of building i (1-based) with levels storeys in street s.
func (n *buildingNamer) name(s *Street, i, levels int) string {
	h := mix(n.seed, 1, uint64(i))
	place := s.PlaceZH
	if place == "" {
		place = strings.TrimSuffix(s.NameZH, "街道")
	}
	// a street has a handful of estates: few words per street, so the
	// numbers of an estate's buildings grow as in a real one
	word := compoundWordsZH[(mix(n.seed, 2, hashString(s.Code))+h%10)%uint64(len(compoundWordsZH))]
	if levels >= 18 {
		base := place + word + towerSuffixesZH[(h>>8)%uint64(len(towerSuffixesZH))]
		n.count[base]++
		switch k := n.count[base]; {
		case k == 1:
			return base
		case k <= 26:
			return base + string(rune('A'+k-1)) + "座"
		default:
			return fmt.Sprintf("%s%d号楼", base, k)
		}
	}
	base := place + word + homeSuffixesZH[(h>>8)%uint64(len(homeSuffixesZH))]
	n.count[base]++
	// an estate's phases hold 30 buildings each: 锦绣花园二期 7栋
	k := n.count[base] - 1
	return fmt.Sprintf("%s%s%d栋", base, phaseZH(k/30), k%30+1)
}

// phaseZH names an estate's phase p (0-based): "" for the first, then
// 二期, 三期 ... 十期, then 11期.
func phaseZH(p int) string {
	nums := []string{"", "二", "三", "四", "五", "六", "七", "八", "九", "十"}
	if p == 0 {
		return ""
	}
	if p < len(nums) {
		return nums[p] + "期"
	}
	return fmt.Sprintf("%d期", p+1)
}

// hashString is FNV-1a of s.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// givenZH2 are second characters of two-character given names.
var givenZH2 = []string{"", "华", "明", "平", "军", "红", "英", "文", "杰", "斌", "琳", "燕", "辉", "波", "梅", "建"}

// personNameZH is the Chinese name of responsible person n (person-NNNNN),
// a function of n alone so that the same person has the same name on
// every building.
func personNameZH(n int) string {
	s := surnamesZH[n%len(surnamesZH)]
	g := givenZH[(n/len(surnamesZH))%len(givenZH)]
	if len([]rune(g)) == 1 {
		g += givenZH2[(n/(len(surnamesZH)*len(givenZH)))%len(givenZH2)]
	}
	return s + g
}

// muckTruckNameZH is muck truck i's display name: its haulier and its
// number in the haulier's fleet (顺达运输 3号车).
func muckTruckNameZH(i int) string {
	return fmt.Sprintf("%s运输 %d号车", hauliersZH[(i-1)%len(hauliersZH)], (i-1)/len(hauliersZH)+1)
}

// patrolNameZH is patrol car i's display name: its district and its
// number there (渝中巡逻 2号车).
func patrolNameZH(d *District, i, districts int) string {
	return fmt.Sprintf("%s巡逻 %d号车", strings.TrimSuffix(d.NameZH, "区"), (i-1)/districts+1)
}
