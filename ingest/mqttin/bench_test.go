package mqttin

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"

	"github.com/citytwin/citytwin/ingest/broker"
	"github.com/citytwin/citytwin/twin"
)

// BenchmarkIngestMQTT measures end-to-end MQTT ingest: a QoS 1 publisher
// (window of 256 unacknowledged messages, at most 4,096 ahead of the
// ingest so the broker never drops) -> embedded broker -> Ingest -> twin,
// over 1,000 vehicles, with the ingest subscribed over TCP (tcp) or
// handed telemetry in process (handoff). msgs/s counts messages applied by
// the twin; cpu-µs/msg is the process's CPU time (publisher, broker,
// ingest and twin together) per message, which holds up on a busy machine.
func BenchmarkIngestMQTT(b *testing.B) {
	b.Run("tcp", func(b *testing.B) { benchIngest(b, false) })
	b.Run("handoff", func(b *testing.B) { benchIngest(b, true) })
}

func benchIngest(b *testing.B, handoff bool) {
	br, err := broker.StartWith(context.Background(), "127.0.0.1:0", broker.Options{Logger: quiet(), Handoff: handoff})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	tw := twin.New(twin.Options{FeedSize: 1 << 16, Logger: quiet()})
	const objects = 1000
	names := make([]string, objects)
	for i := range names {
		names[i] = fmt.Sprintf("bench%d", i)
		if _, err := tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, names[i])}); err != nil {
			b.Fatal(err)
		}
	}
	opts := Options{BrokerURL: br.URL(), ClientID: "bench-ingest", Logger: quiet()}
	if handoff {
		opts.Embedded = br
	}
	ing := New(tw, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	defer func() { cancel(); b.Logf("run: %v", <-done) }()
	for !ing.Connected() {
		time.Sleep(5 * time.Millisecond) // waiting for a real connection
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(br.URL()).SetClientID("bench-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	applied := func() float64 {
		var m = ing.Metrics().Messages.WithLabelValues("mqtt", "applied")
		return counterValue(m)
	}
	start := applied()
	cpu0 := cpuTime()
	b.ResetTimer()
	window := make([]paho.Token, 0, 256)
	for i := 0; i < b.N; i++ {
		p := `{"ts":` + strconv.FormatInt(base+int64(i), 10) + `,"lon":106.55,"lat":29.56,"speed_kmh":30}`
		window = append(window, pub.Publish("twin/telemetry/"+names[i%objects], 1, false, p))
		if len(window) == cap(window) {
			for _, tok := range window {
				tok.Wait()
			}
			window = window[:0]
			for applied()-start < float64(i-4096) {
				time.Sleep(100 * time.Microsecond) // flow control: let the ingest catch up
			}
		}
	}
	for applied()-start < float64(b.N) {
		time.Sleep(time.Millisecond) // waiting for the ingest to drain
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
