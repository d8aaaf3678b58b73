package mqttin

import (
	"context"
	"math"
	"os"
	"sort"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/ingest/replay"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/twin"
)

// TestRealTraceOrdering feeds the real, unsorted, duplicated GPS trace of
// one muck truck as-is and checks that the twin ends exactly where a sorted,
// de-duplicated replay ends, and that every unique fix reached the feed
// (as Upsert or History) exactly as in the file.
func TestRealTraceOrdering(t *testing.T) {
	f, err := os.Open("../../../shared/data/gps/BP2968_20160301_raw.csv")
	if err != nil {
		t.Skip("shared trace missing:", err)
	}
	rows, err := replay.ReadTrace(f, nil)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 16479 {
		t.Fatalf("%d rows", len(rows))
	}
	for bname, url := range brokers(t) {
		t.Run(bname, func(t *testing.T) { feedTrace(t, url, append([]replay.Row(nil), rows...)) })
	}
}

func feedTrace(t *testing.T, url string, rows []replay.Row) {
	h := startIngest(t, url, Options{})
	name := uniq(t)
	for i := range rows {
		rows[i].ID = name // a private name on the shared brokers
	}
	id := register(t, h.tw, name)

	// Publish in file order with a window of outstanding QoS 1 acks, and
	// never more than maxAhead messages ahead of the ingest: a broker drops
	// QoS 1 messages for a subscriber that falls too far behind (Mosquitto's
	// max_queued_messages is 1000), which a loaded test machine can cause.
	pub := client(t, url)
	var window []paho.Token
	sent := 0
	err := replay.Replay(context.Background(), rows, replay.PublisherFunc(func(_ context.Context, topic string, payload []byte) error {
		window = append(window, pub.Publish(topic, 1, false, payload))
		sent++
		if len(window) == 64 {
			for _, tok := range window {
				if tok.Wait(); tok.Error() != nil {
					return tok.Error()
				}
			}
			window = window[:0]
			waitFor(t, 30*time.Second, "ingest to catch up", func() bool { return processed(h) >= float64(sent-maxAhead) })
		}
		return nil
	}), replay.Options{Speed: math.Inf(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range window {
		if tok.Wait(); tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	waitFor(t, 60*time.Second, "all rows ingested", func() bool {
		return processed(h) == float64(len(rows))
	})
	if n := count(h, "deadletter"); n != 0 {
		t.Fatalf("%v dead letters", n)
	}

	// Expected: a sorted, de-duplicated replay applied directly.
	uniqRows := map[int64]orb.Point{} // by ts in ns: time.Time keys would compare zones
	for _, r := range rows {
		uniqRows[r.Time.UnixNano()] = orb.Point{r.Lon, r.Lat}
	}
	if len(uniqRows) != 12406 {
		t.Fatalf("%d unique rows", len(uniqRows))
	}
	times := make([]int64, 0, len(uniqRows))
	for ts := range uniqRows {
		times = append(times, ts)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	ref := twin.New(twin.Options{Logger: quiet()})
	register(t, ref, name)
	for _, ts := range times {
		m := telemetry.Message{TS: time.Unix(0, ts), HasPos: true, Lon: uniqRows[ts][0], Lat: uniqRows[ts][1]}
		if _, _, err := ref.ApplySample(telemetry.ToSample(id, m)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := h.tw.Get(id)
	want, _ := ref.Get(id)
	if got.Observed != want.Observed || got.Geometry != want.Geometry {
		t.Fatalf("twin ended at %v %v, sorted replay at %v %v", got.Observed, got.Geometry, want.Observed, want.Geometry)
	}

	// Every unique fix reached the feed once deduplicated by (id, ts).
	changes, err := h.tw.Feed().Since(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]orb.Point{}
	for _, c := range changes {
		if c.Sample == nil || c.Sample.ID != id || (c.Kind != twin.Upsert && c.Kind != twin.History) {
			continue
		}
		seen[c.Sample.Time.UnixNano()] = c.Sample.Pos
	}
	if len(seen) != len(uniqRows) {
		t.Fatalf("feed carried %d unique samples, want %d", len(seen), len(uniqRows))
	}
	for ts, p := range uniqRows {
		if seen[ts] != p {
			t.Fatalf("sample at %v: %v, want %v", time.Unix(0, ts), seen[ts], p)
		}
	}
	// Arrival order was kept per object: the outcomes match applying the
	// file's rows in file order directly.
	direct := twin.New(twin.Options{Logger: quiet()})
	register(t, direct, name)
	outcomes := map[string]float64{}
	for _, r := range rows {
		out, err := telemetry.Apply(direct, name, telemetry.Message{TS: r.Time, HasPos: true, Lon: r.Lon, Lat: r.Lat}, false)
		if err != nil {
			t.Fatal(err)
		}
		outcomes[out]++
	}
	for _, o := range []string{"applied", "history", "duplicate"} {
		if count(h, o) != outcomes[o] {
			t.Errorf("%s: %v over MQTT, %v in file order", o, count(h, o), outcomes[o])
		}
	}
	t.Logf("applied %v, history %v, duplicate %v", count(h, "applied"), count(h, "history"), count(h, "duplicate"))
}

// maxAhead bounds how far test publishers run ahead of the ingest.
const maxAhead = 512

func processed(h *harness) float64 {
	return count(h, "applied") + count(h, "history") + count(h, "duplicate") + count(h, "deadletter")
}
