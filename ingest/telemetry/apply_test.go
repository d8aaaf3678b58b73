package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
)

func quietTwin() *twin.Twin {
	return twin.New(twin.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestApplyOutcomes(t *testing.T) {
	tw := quietTwin()
	id := twin.NewID(twin.Devices, "gas-1")
	if _, err := tw.Put(&twin.Feature{ID: id}); err != nil {
		t.Fatal(err)
	}
	const base = 1700000000000 // 2023-11-14, within the accepted range
	msg := func(ms int64) Message {
		return Message{TS: time.UnixMilli(base + ms), Values: twin.ReadingsOf(map[string]float64{"ch4": float64(ms)})}
	}
	steps := []struct {
		ms   int64
		want string
	}{{2000, OutcomeApplied}, {2000, OutcomeDuplicate}, {1000, OutcomeHistory}, {3000, OutcomeApplied}}
	for _, s := range steps {
		got, err := Apply(tw, "gas-1", msg(s.ms), false)
		if err != nil || got != s.want {
			t.Fatalf("ts %d: %q %v, want %q", s.ms, got, err, s.want)
		}
	}
	f, _ := tw.Get(id)
	if v := f.Props.Get("values").(map[string]any)["ch4"]; v != 3000.0 {
		t.Fatalf("values %v", f.Props.Get("values"))
	}
	if _, err := Apply(tw, "nobody", msg(1), false); ReasonOf(err) != UnknownDevice {
		t.Fatalf("unknown: %v", err)
	}
	if out, err := Apply(tw, "newcar", Message{TS: time.UnixMilli(base + 5), HasPos: true, Lon: 1, Lat: 2}, true); err != nil || out != OutcomeApplied {
		t.Fatalf("auto-register: %q %v", out, err)
	}
	if f, ok := tw.Get(twin.NewID(twin.Vehicles, "newcar")); !ok || f.Geometry == nil {
		t.Fatalf("auto-registered vehicle %v", f)
	}
}

// BenchmarkApply measures decode -> twin.ApplySample (feed append included)
// for tracker payloads over 10,000 vehicles, on one goroutine and in parallel.
func BenchmarkApply(b *testing.B) {
	const objects = 10000
	tw := twin.New(twin.Options{FeedSize: 1 << 16, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for i := range objects {
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, fmt.Sprintf("v%d", i))}); err != nil {
			b.Fatal(err)
		}
	}
	names := make([]string, objects)
	for i := range names {
		names[i] = fmt.Sprintf("v%d", i)
	}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	now := time.UnixMilli(base + 1e9)
	payload := func(buf []byte, ms int64, i int) []byte {
		buf = append(buf[:0], `{"ts":`...)
		buf = strconv.AppendInt(buf, ms, 10)
		buf = append(buf, `,"lon":106.`...)
		buf = strconv.AppendInt(buf, int64(100000+i%899999), 10)
		buf = append(buf, `,"lat":29.625598,"speed_kmh":38.5,"heading":271}`...)
		return buf
	}
	var seq atomic.Int64
	run := func(pb interface{ Next() bool }) {
		var buf []byte
		for pb.Next() {
			n := seq.Add(1)
			buf = payload(buf, base+n, int(n))
			m, err := Decode(buf, now, Limits{})
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := Apply(tw, names[n%objects], m, false); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		run(loop{b})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) { run(pb) })
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

type loop struct{ b *testing.B }

func (l loop) Next() bool { return l.b.Loop() }
