package twin

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

var packJSONSeeds = []string{
	`{}`, ` { } `, `null`, `{"a":1}`,
	`{"name":"b000001","height_m":24.5,"levels":8,"high_rise":true,"risk_level":5,"risk_color":"green","street":"500103001","owners":["person-00001","person-00002"]}`,
	`{"kind":"muck_truck","speed_kmh":42.3,"heading":181,"plate":"渝A12345","active":true}`,
	`{"a":null,"b":false,"c":[],"d":{},"e":[1,"x",{"f":[true,null],"a":{}}]}`,
	`{"n":-0,"m":-0.0,"e":1e3,"E":2E-3,"x":-12.5e+2,"big":1e308,"tiny":5e-324,"t":0.1,"u":9007199254740993}`,
	`{"esc":"a\"b\\c\u00e9\n\/\b\f\r\t\u0000","cjk":"解放碑街道","emoji":"😀","\u00e9k":1}`,
	`{"pair":"\ud83d\ude00","lone":"\ud83d","low":"\ude00x"}`,
	`{"dup":1,"dup":2}`, `{"b":1,"a":2,"b":3,"a":{"y":1,"x":2,"y":3}}`, `{"bad":"` + "\xff" + `"}`, `{"ctl":"a` + "\x01" + `"}`,
	`{"over":1e400}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1,}`, `{"a"}`, `[1]`, `"x"`, `{"a":1} x`,
	`{"a":tru}`, `{"a":"x`, `{"a":1e}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":[1,]}`, `{"a":[1 2]}`, ``, `{`,
	"\t{\n\"a\" : [ 1 , 2 ] }\r\n",
	`{"deep":` + strings.Repeat("[", 150) + strings.Repeat("]", 150) + `}`,
}

// checkPackJSON: PackJSON gives the bytes encoding/json's map packed
// gives, and fails where encoding/json does.
func checkPackJSON(t *testing.T, b []byte) {
	t.Helper()
	var m map[string]any
	werr := json.Unmarshal(b, &m)
	got, err := PackJSON(b)
	if (werr == nil) != (err == nil) {
		t.Fatalf("%q: error %v, encoding/json %v", b, err, werr)
	}
	if werr != nil {
		return
	}
	want := NewProps(m).Pack()
	if !got.packed() || got.keySet() != want.keySet() || got.values() != want.values() {
		t.Fatalf("%q:\n got  %v %q %q\n want %v %q %q", b, got, got.keySet(), got.values(), want, want.keySet(), want.values())
	}
}

func TestPackJSONSeeds(t *testing.T) {
	for _, s := range packJSONSeeds {
		checkPackJSON(t, []byte(s))
	}
}

// TestPackJSONRandom: random props (numbers of every shape, strings with
// escapes and unicode, nested lists and objects, repeated keys, spacing)
// pack as the map path packs them. The seed is printed to replay a failure.
func TestPackJSONRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := testingSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (TWIN_PROPS_SEED=%d replays it)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 3000 {
		var b []byte
		b = randJSONObject(r, b, 0)
		checkPackJSON(t, b)
	}
}

func testingSeed() uint64 {
	s, _ := strconv.ParseUint(strings.TrimSpace(os.Getenv("TWIN_PROPS_SEED")), 10, 64)
	return s
}

var jsonWords = []string{
	"", "a", "kind", "speed_kmh", "plate", "渝A12345", "解放碑", "é", "😀", "x y", `q"uote`, `back\slash`,
	"tab\t", "nl\n", "\u2028", "<&>", "ctl\x01", "nul\x00", "/", "z", "zz", "a\u00e9",
}

func randJSONObject(r *rand.Rand, b []byte, depth int) []byte {
	b = randSpace(r, append(randSpace(r, b), '{'))
	n := r.IntN(8)
	for i := range n {
		if i > 0 {
			b = randSpace(r, append(b, ','))
		}
		b = randJSONString(r, b, jsonWords[r.IntN(len(jsonWords))])
		b = randSpace(r, append(randSpace(r, b), ':'))
		b = randJSONValue(r, b, depth)
	}
	return randSpace(r, append(randSpace(r, b), '}'))
}

func randJSONValue(r *rand.Rand, b []byte, depth int) []byte {
	k := r.IntN(12)
	if depth > 3 && k >= 10 {
		k = 0
	}
	switch k {
	case 0:
		return append(b, "null"...)
	case 1:
		return strconv.AppendBool(b, r.IntN(2) == 0)
	case 2, 3, 4, 5:
		return randJSONNumber(r, b)
	case 6, 7:
		return randJSONString(r, b, jsonWords[r.IntN(len(jsonWords))]+fmt.Sprint(r.IntN(100)))
	case 8, 9:
		return randJSONString(r, b, jsonWords[r.IntN(len(jsonWords))])
	case 10:
		b = append(b, '[')
		for i := range r.IntN(5) {
			if i > 0 {
				b = randSpace(r, append(b, ','))
			}
			b = randJSONValue(r, b, depth+1)
		}
		return append(randSpace(r, b), ']')
	}
	return randJSONObject(r, b, depth+1)
}

func randJSONNumber(r *rand.Rand, b []byte) []byte {
	switch r.IntN(8) {
	case 0:
		return strconv.AppendInt(b, r.Int64N(1000)-500, 10)
	case 1:
		return strconv.AppendFloat(b, float64(r.IntN(20000)-10000)/10, 'f', -1, 64) // tenths
	case 2:
		return strconv.AppendFloat(b, r.NormFloat64()*1e6, 'g', -1, 64)
	case 3:
		return strconv.AppendFloat(b, math.Float64frombits(r.Uint64()&^(0x7ff<<52)|uint64(r.IntN(2046)+1)<<52), 'e', -1, 64)
	case 4:
		return append(b, []string{"-0", "-0.0", "0", "0e0", "1E+2", "1e-2", "9007199254740993", "123456789012345678901234567890", "5e-324", "1.7976931348623157e308"}[r.IntN(10)]...)
	case 5:
		return strconv.AppendFloat(b, float64(r.IntN(1000))/100, 'f', -1, 64)
	case 6:
		return strconv.AppendFloat(b, 106.5+r.Float64(), 'f', 7, 64) // a longitude
	}
	return strconv.AppendInt(b, r.Int64(), 10)
}

// randJSONString writes s as a JSON string, some characters escaped in
// one of the ways JSON allows.
func randJSONString(r *rand.Rand, b []byte, s string) []byte {
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c < 0x20 || r.IntN(8) == 0 && c < 0x10000:
			if c == '\n' && r.IntN(2) == 0 {
				b = append(b, `\n`...)
			} else {
				b = fmt.Appendf(b, `\u%04x`, c)
			}
		case c == '/' && r.IntN(2) == 0:
			b = append(b, `\/`...)
		case c >= 0x10000 && r.IntN(3) == 0:
			hi, lo := (c-0x10000)>>10+0xD800, (c-0x10000)&0x3ff+0xDC00
			b = fmt.Appendf(b, `\u%04x\u%04X`, hi, lo)
		default:
			b = append(b, string(c)...)
		}
	}
	return append(b, '"')
}

func randSpace(r *rand.Rand, b []byte) []byte {
	if r.IntN(6) == 0 {
		return append(b, " \t\n\r"[:r.IntN(4)+1]...)
	}
	return b
}

// TestPackJSONReadsBack: what PackJSON packs reads back as encoding/json's
// values, and a stored object's JSON (AppendJSON) packs to the same bytes.
func TestPackJSONReadsBack(t *testing.T) {
	in := NewProps(map[string]any{"kind": "bus", "speed_kmh": 42.3, "n": nil, "list": []any{1.0, "x", map[string]any{"k": true}}, "s": "a\"é<"}).Pack()
	b, err := in.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PackJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ref != in.ref || got.values() != in.values() {
		t.Fatalf("%s packed as %v, want %v", b, got, in)
	}
	if v, _ := got.Number("speed_kmh"); v != 42.3 {
		t.Fatalf("speed %v", v)
	}
}

func FuzzPackJSON(f *testing.F) {
	for _, s := range packJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkPackJSON(t, b) })
}

// TestPackJSONReadsByHand: the common props are read by hand, not handed
// to encoding/json (which gives the same bytes, slower and with garbage).
func TestPackJSONReadsByHand(t *testing.T) {
	for _, s := range packJSONSeeds[:9] {
		if s == "null" {
			continue
		}
		var pk jsonPacker
		if _, ok := pk.pack([]byte(s)); !ok {
			t.Fatalf("%s went to encoding/json", s)
		}
	}
	b := []byte(`{"kind":"muck_truck","speed_kmh":42.3,"heading":181,"plate":"渝A12345","active":true}`)
	var pk jsonPacker // not PackJSON's pool, which -race empties at random
	if n := testing.AllocsPerRun(100, func() { _, _ = pk.pack(b) }); n > 1 {
		t.Fatalf("%v allocations a call, want 1 (the packed string)", n)
	}
}
