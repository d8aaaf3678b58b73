package replay

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

func TestReadTraceFormats(t *testing.T) {
	in := "id,time,lon,lat\n" +
		"A,2016/03/01/00/47/07,106.626815,29.625598\n" +
		"\n" +
		"B,2016-03-01T00:47:07+08:00,106.5,29.5\n" +
		"C,1456764427000,106.5,29.5\n" +
		"D,yesterday,106.5,29.5\n" +
		"E,2016/03/01/00/47/07,200,29.5\n" +
		"F,2016/03/01/00/47/07,106.5\n"
	rows, err := ReadTrace(strings.NewReader(in), nil)
	var te *TraceError
	if !errors.As(err, &te) {
		t.Fatalf("err %v, want *TraceError", err)
	}
	var lines []int
	for _, l := range te.Lines {
		lines = append(lines, l.Line)
	}
	if len(lines) != 3 || lines[0] != 6 || lines[1] != 7 || lines[2] != 8 {
		t.Fatalf("bad lines %v (%v)", lines, err)
	}
	if !strings.Contains(err.Error(), "line 6") {
		t.Fatalf("message %q", err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	want := time.Date(2016, 2, 29, 16, 47, 7, 0, time.UTC) // 00:47:07 UTC+8
	for _, r := range rows {
		if !r.Time.Equal(want) {
			t.Errorf("%s line %d: time %v, want %v", r.ID, r.Line, r.Time, want)
		}
	}
	if rows[0].ID != "A" || rows[0].Line != 2 || rows[0].Lon != 106.626815 || rows[0].Lat != 29.625598 {
		t.Fatalf("row %+v", rows[0])
	}
	// Another zone for the local form.
	rows, err = ReadTrace(strings.NewReader("A,2016/03/01/00/00/00,1,2\n"), time.UTC)
	if err != nil || !rows[0].Time.Equal(time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("utc: %v %v", rows, err)
	}
}

func TestReadRealTrace(t *testing.T) {
	f, err := os.Open("../../../shared/data/gps/BP2968_20160301_raw.csv")
	if err != nil {
		t.Skip("shared trace missing:", err)
	}
	defer f.Close()
	rows, err := ReadTrace(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 16479 {
		t.Fatalf("%d rows, want 16479", len(rows))
	}
	uniq := map[time.Time]bool{}
	for _, r := range rows {
		uniq[r.Time] = true
	}
	if len(uniq) != 12406 {
		t.Fatalf("%d unique ts, want 12406", len(uniq))
	}
}

type recorder struct {
	topics   []string
	payloads []string
}

func (r *recorder) Publish(_ context.Context, topic string, payload []byte) error {
	r.topics = append(r.topics, topic)
	r.payloads = append(r.payloads, string(payload))
	return nil
}

func TestReplayPacingAndOrder(t *testing.T) {
	t0 := time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := []Row{
		{ID: "BP1", Time: t0, Lon: 106.5, Lat: 29.5},
		{ID: "BP1", Time: t0.Add(20 * time.Second), Lon: 106.6, Lat: 29.6},
		{ID: "BP1", Time: t0.Add(10 * time.Second), Lon: 106.7, Lat: 29.7}, // disorder: no wait
		{ID: "BP1", Time: t0.Add(10 * time.Second), Lon: 106.7, Lat: 29.7}, // duplicate: kept
		{ID: "BP2", Time: t0.Add(50 * time.Second), Lon: 106.8, Lat: 29.8},
	}
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var waits []time.Duration
	rec := &recorder{}
	var registered []*twin.Feature
	err := Replay(context.Background(), rows, rec, Options{
		Speed: 10, As: "muck_truck", Clock: fc,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); fc.Advance(d); return nil },
		Register: func(_ context.Context, f *twin.Feature) error {
			registered = append(registered, f)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(waits) != 2 || waits[0] != 2*time.Second || waits[1] != 4*time.Second {
		t.Fatalf("waits %v, want [2s 4s]", waits)
	}
	if len(rec.topics) != 5 || rec.topics[0] != "twin/telemetry/BP1" || rec.topics[4] != "twin/telemetry/BP2" {
		t.Fatalf("topics %v", rec.topics)
	}
	if len(registered) != 2 || registered[0].ID.String() != "vehicles/BP1" || registered[0].Prop("kind") != "muck_truck" {
		t.Fatalf("registered %+v", registered)
	}
	// Payloads decode as telemetry, in file order.
	for i, p := range rec.payloads {
		m, err := telemetry.Decode([]byte(p), time.Now(), telemetry.Limits{})
		if err != nil {
			t.Fatalf("payload %s: %v", p, err)
		}
		if !m.TS.Equal(rows[i].Time) || m.Lon != rows[i].Lon || m.Lat != rows[i].Lat {
			t.Fatalf("payload %d %s != row %+v", i, p, rows[i])
		}
	}
}

func TestReplayNoWaitAndCancel(t *testing.T) {
	t0 := time.Unix(0, 0)
	rows := []Row{{ID: "a", Time: t0}, {ID: "a", Time: t0.Add(time.Hour)}}
	rec := &recorder{}
	slept := false
	err := Replay(context.Background(), rows, rec, Options{Speed: math.Inf(1),
		Sleep: func(context.Context, time.Duration) error { slept = true; return nil }})
	if err != nil || slept || len(rec.topics) != 2 {
		t.Fatalf("err %v slept %v n %d", err, slept, len(rec.topics))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Replay(ctx, rows, rec, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
}
