package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want Message
	}{
		{"tracker rfc3339", `{"ts":"2026-03-01T11:59:00Z","lon":106.5,"lat":29.5,"speed_kmh":42.5,"heading":90}`,
			Message{TS: time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC), HasPos: true, Lon: 106.5, Lat: 29.5,
				HasSpeed: true, SpeedKmh: 42.5, HasHeading: true, Heading: 90}},
		{"epoch ms", `{"ts":1772366340000,"lon":-180,"lat":90}`,
			Message{TS: time.UnixMilli(1772366340000).UTC(), HasPos: true, Lon: -180, Lat: 90}},
		{"epoch ms as float integer", `{"ts":1.77236634e12}`,
			Message{TS: time.UnixMilli(1772366340000).UTC()}},
		{"sensor values", ` { "id" : "gas-1", "ts":"2026-03-01T19:59:00+08:00", "values":{"ch4":1.25,"h2s":0,"skip":null}} `,
			Message{Name: "gas-1", TS: time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC), Values: twin.ReadingsOf(map[string]float64{"ch4": 1.25, "h2s": 0})}},
		{"unknown fields ignored", `{"ts":1700000000000,"extra":[1,{"a":"b\"c"},true,false,null,-1.5e3],"lat":null,"lon":null}`,
			Message{TS: time.UnixMilli(1700000000000).UTC()}},
		{"escaped id", `{"id":"a\u00e9\/b","ts":1700000000000}`, Message{Name: "aé/b", TS: time.UnixMilli(1700000000000).UTC()}},
		{"exponent coordinates", `{"ts":1700000000000,"lon":1.065e2,"lat":-2.95E1}`,
			Message{TS: time.UnixMilli(1700000000000).UTC(), HasPos: true, Lon: 106.5, Lat: -29.5}},
		{"future within limit", `{"ts":"2026-03-01T12:04:59Z"}`, Message{TS: time.Date(2026, 3, 1, 12, 4, 59, 0, time.UTC)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.in), now, Limits{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !got.TS.Equal(c.want.TS) {
				t.Errorf("ts %v, want %v", got.TS, c.want.TS)
			}
			got.TS, c.want.TS = time.Time{}, time.Time{}
			if !equalMsg(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func equalMsg(a, b Message) bool {
	return a.Values == b.Values && a.Name == b.Name && a.HasPos == b.HasPos && a.Lon == b.Lon && a.Lat == b.Lat &&
		a.HasSpeed == b.HasSpeed && a.SpeedKmh == b.SpeedKmh && a.HasHeading == b.HasHeading && a.Heading == b.Heading
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		in   string
		want Reason
	}{
		{``, BadJSON},
		{`[]`, BadJSON},
		{`{"ts":1700000000000`, BadJSON},
		{`{"ts":1700000000000} x`, BadJSON},
		{`{"ts":01}`, BadJSON},
		{`{"ts":1700000000000,"x":tru}`, BadJSON},
		{`{"ts":1700000000000,"x":"a` + "\x01" + `"}`, BadJSON},
		{`{"ts":1700000000000,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, BadJSON},
		{`{"lon":1,"lat":2}`, MissingTS},
		{`{"ts":null}`, MissingTS},
		{`{"ts":"yesterday"}`, BadTS},
		{`{"ts":true}`, BadTS},
		{`{"ts":-5}`, BadTS},
		{`{"ts":1.5}`, BadTS},
		{`{"ts":1e300}`, BadTS},
		{`{"ts":"2026-03-01T12:05:01Z"}`, FutureTS},
		{`{"ts":1700000000000,"lon":180.0001,"lat":0}`, OutOfRange},
		{`{"ts":1700000000000,"lon":0,"lat":-90.5}`, OutOfRange},
		{`{"ts":1700000000000,"speed_kmh":-1}`, OutOfRange},
		{`{"ts":1700000000000,"lon":"NaN","lat":0}`, NotFinite},
		{`{"ts":1700000000000,"lon":0,"lat":"-Infinity"}`, NotFinite},
		{`{"ts":1700000000000,"heading":"inf"}`, NotFinite},
		{`{"ts":1700000000000,"lon":1e999,"lat":0}`, NotFinite},
		{`{"ts":1700000000000,"values":{"t":-1e400}}`, NotFinite},
		{`{"ts":1700000000000,"values":{"t":"nan"}}`, NotFinite},
		{`{"ts":1700000000000,"lon":NaN,"lat":0}`, NotFinite},
		{`{"ts":1700000000000,"lon":"1","lat":0}`, BadField},
		{`{"ts":1700000000000,"lon":1}`, BadField},
		{`{"ts":1700000000000,"values":[1]}`, BadField},
		{`{"ts":1700000000000,"values":{"a":true}}`, BadField},
		{`{"ts":1700000000000,"id":5}`, BadField},
		{`{"ts":1700000000000,"speed_kmh":{}}`, BadField},
		// Strings the store cannot hold, and bounds on readings.
		{`{"ts":1700000000000,"values":{"\u0000":1}}`, BadText},
		{`{"ts":1700000000000,"values":{"a\u0000b":1}}`, BadText},
		{`{"ts":1700000000000,"values":{"` + "\xff" + `":1}}`, BadText},
		{`{"ts":1700000000000,"values":{"":1}}`, BadText},
		{`{"ts":1700000000000,"values":{"` + strings.Repeat("k", 65) + `":1}}`, BadText},
		{`{"ts":1700000000000,"id":"a\u0000"}`, BadText},
		{`{"ts":1700000000000,"id":"` + "\xfe" + `"}`, BadText},
		{manyValues(65), TooManyValues},
		// Timestamps before 2000 (year 0000, the epoch).
		{`{"ts":"0000-01-01T00:00:00Z"}`, BadTS},
		{`{"ts":"1999-12-31T23:59:59Z"}`, BadTS},
		{`{"ts":0}`, BadTS},
		{`{"ts":1000}`, BadTS},
	}
	for _, c := range cases {
		_, err := Decode([]byte(c.in), now, Limits{})
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%s: err %v, want *Error %s", c.in, err, c.want)
			continue
		}
		if te.Reason != c.want {
			t.Errorf("%s: reason %s (%v), want %s", c.in, te.Reason, err, c.want)
		}
		if ReasonOf(err) != c.want {
			t.Errorf("ReasonOf: %s", ReasonOf(err))
		}
	}
}

// manyValues is a payload with n distinct readings.
func manyValues(n int) string {
	var b strings.Builder
	b.WriteString(`{"ts":1700000000000,"values":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"r%d":%d`, i, i)
	}
	b.WriteString(`}}`)
	return b.String()
}

func TestDecodeValuesLimit(t *testing.T) {
	m, err := Decode([]byte(manyValues(64)), now, Limits{})
	if err != nil || m.Values.Len() != 64 {
		t.Fatalf("64 readings: %d, %v", m.Values.Len(), err)
	}
	// Repeating a name does not count twice; the last value wins.
	if m, err := Decode([]byte(`{"ts":1700000000000,"values":{"a":1,"a":2}}`), now, Limits{}); err != nil || m.Values.String() != `{"a":2}` {
		t.Fatal(m.Values, err)
	}
}

func TestDecodeOversized(t *testing.T) {
	big := `{"ts":1700000000000,"pad":"` + strings.Repeat("x", 100) + `"}`
	_, err := Decode([]byte(big), now, Limits{MaxBytes: 64})
	if ReasonOf(err) != Oversized {
		t.Fatalf("err %v, want oversized", err)
	}
	if _, err := Decode([]byte(big), now, Limits{}); err != nil {
		t.Fatalf("default limit: %v", err)
	}
	huge := make([]byte, DefaultMaxBytes+1)
	if _, err := Decode(huge, now, Limits{}); ReasonOf(err) != Oversized {
		t.Fatalf("default limit not enforced: %v", err)
	}
}

func TestFastFloatMatchesStrconv(t *testing.T) {
	for _, s := range []string{"106.626815", "29.625598", "-0.1", "0", "-0", "123456789012345", "0.000000000000001", "1.5", "42"} {
		v, err := parseFloat("x", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		var want float64
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if v != want || math.Signbit(v) != math.Signbit(want) {
			t.Errorf("%s: %v, want %v", s, v, want)
		}
	}
}

func TestToSample(t *testing.T) {
	m, err := Decode([]byte(`{"ts":1700000000000,"lon":106.5,"lat":29.5,"heading":10,"values":{"v":1}}`), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	id := twin.NewID(twin.Vehicles, "BP1")
	s := ToSample(id, m)
	if s.ID != id || !s.HasPos || s.Pos[0] != 106.5 || s.Pos[1] != 29.5 || !s.HasHeading || s.Heading != 10 ||
		s.HasSpeed || s.Values.String() != `{"v":1}` || !s.Time.Equal(time.UnixMilli(1700000000000)) {
		t.Fatalf("sample %+v", s)
	}
}

// FuzzDecode checks Decode never panics, and that whatever it accepts is
// finite, in range and not in the future.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		trackerPayload, sensorPayload, `{}`, `{"ts":"2026-03-01T11:59:00.123+08:00"}`,
		`{"ts":1700000000000,"lon":1e999,"lat":0}`, `{"ts":1700000000000,"values":{"a":"NaN"}}`, `{"id":"x\ud800","ts":1}`,
		`{"ts":1700000000000,"values":{"a\u0062":1,"ab":2,"b":null,"a":-0.5,"\u00e9":1e-9}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b, now, Limits{})
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Reason == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		fin := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
		if !fin(m.Lon) || !fin(m.Lat) || !fin(m.SpeedKmh) || !fin(m.Heading) {
			t.Fatalf("non-finite accepted: %+v", m)
		}
		checkReadings(t, m.Values)
		if m.HasPos && (m.Lon < -180 || m.Lon > 180 || m.Lat < -90 || m.Lat > 90) {
			t.Fatalf("out of range accepted: %+v", m)
		}
		if m.TS.IsZero() || m.TS.After(now.Add(DefaultMaxFuture)) {
			t.Fatalf("bad ts accepted: %v", m.TS)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON accepted: %q", b)
		}
		// The readings are their own bytes, not the payload's.
		before := m.Values.String()
		for i := range b {
			b[i] = 'x'
		}
		if after := m.Values.String(); after != before {
			t.Fatalf("readings changed with the payload: %s, then %s", before, after)
		}
	})
}

const trackerPayload = `{"ts":1772366340000,"lon":106.626815,"lat":29.625598,"speed_kmh":38.5,"heading":271}`
const sensorPayload = `{"ts":"2026-03-01T11:59:00Z","values":{"ch4":1.25,"h2s":0.02}}`

func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct{ name, payload string }{{"tracker", trackerPayload}, {"sensor", sensorPayload}} {
		b.Run(c.name, func(b *testing.B) {
			p := []byte(c.payload)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(p, now, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDecodeStdlib is the encoding/json baseline the scanner replaced.
func BenchmarkDecodeStdlib(b *testing.B) {
	p := []byte(trackerPayload)
	b.ReportAllocs()
	for b.Loop() {
		var w struct {
			TS      json.Number        `json:"ts"`
			Lon     *float64           `json:"lon"`
			Lat     *float64           `json:"lat"`
			Speed   *float64           `json:"speed_kmh"`
			Heading *float64           `json:"heading"`
			Values  map[string]float64 `json:"values"`
		}
		if err := json.Unmarshal(p, &w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := NewMetrics(reg), NewMetrics(reg)
	a.Messages.WithLabelValues("mqtt", OutcomeApplied).Inc()
	b.Messages.WithLabelValues("mqtt", OutcomeApplied).Inc()
	if got := testutil.ToFloat64(a.Messages.WithLabelValues("mqtt", OutcomeApplied)); got != 2 {
		t.Fatalf("shared counter %v, want 2", got)
	}
	// One family, every source x outcome series once (all there from start).
	if n, err := testutil.GatherAndCount(reg, "twin_ingest_messages_total"); err != nil || n != 8 {
		t.Fatalf("series %d err %v", n, err)
	}
}

// checkReadings checks what the decoder's readings promise: finite
// values under valid names, at most twin.MaxValues, in name order, each
// found by Get, their JSON read back as the same readings.
func checkReadings(t *testing.T, r twin.Readings) {
	t.Helper()
	n, prev := 0, ""
	for k, v := range r.All() {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("non-finite value %q accepted", k)
		}
		if err := twin.ValidKey("values", k, twin.MaxValueKeyBytes); err != nil {
			t.Fatalf("reading name accepted: %v", err)
		}
		if n > 0 && k <= prev {
			t.Fatalf("readings out of order: %q after %q", k, prev)
		}
		if g, ok := r.Get(k); !ok || math.Float64bits(g) != math.Float64bits(v) {
			t.Fatalf("Get(%q) = %v, %v; All gave %v", k, g, ok, v)
		}
		n, prev = n+1, k
	}
	if n != r.Len() || n > twin.MaxValues {
		t.Fatalf("%d readings, Len %d", n, r.Len())
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back twin.Readings
	if err := json.Unmarshal(j, &back); err != nil || back != r {
		t.Fatalf("readings %s read back as %s, %v", j, back, err)
	}
}

// wsloadPayload is what cmd/wsload sends: a position and one reading.
const wsloadPayload = `{"ts":1772366340000,"lon":106.626815,"lat":29.625598,"speed_kmh":38.5,"values":{"sent_ms":1772366340123}}`

func BenchmarkDecodeReadings(b *testing.B) {
	for _, c := range []struct{ name, payload string }{{"wsload", wsloadPayload}, {"sensor", sensorPayload}, {"max", manyValues(twin.MaxValues)}} {
		b.Run(c.name, func(b *testing.B) {
			p := []byte(c.payload)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(p, now, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHeldSamples: the live heap of decoded samples kept (as the
// feed keeps them for its window), per sample, after a GC.
func BenchmarkHeldSamples(b *testing.B) {
	p := []byte(sensorPayload)
	const n = 100000
	for b.Loop() {
		held := make([]*twin.Sample, n)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for i := range held {
			m, err := Decode(p, now, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			s := ToSample(twin.ID{}, m)
			held[i] = &s
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "heapB/sample")
		runtime.KeepAlive(held)
	}
}

// TestDecodeReadings: names escaped or not are one name (the last value
// wins), null readings are skipped, and the readings come sorted.
func TestDecodeReadings(t *testing.T) {
	m, err := Decode([]byte(`{"ts":1700000000000,"values":{"a\u0062":1,"ab":2,"b":null,"a":-0.5,"\u00e9":1e-9}}`), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Values.String(), `{"a":-0.5,"ab":2,"é":1e-9}`; got != want {
		t.Fatalf("readings %s, want %s", got, want)
	}
	checkReadings(t, m.Values)
}
