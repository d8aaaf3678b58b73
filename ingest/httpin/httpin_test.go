package httpin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/ingest/telemetry"
	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// histStore is an in-memory twin.Store holding history only (what the
// handlers read); the rest of the contract is stubbed.
type histStore struct {
	mu sync.Mutex
	ss map[twin.ID][]twin.Sample
}

var _ twin.Store = (*histStore)(nil)

func (s *histStore) Load(context.Context, func(*twin.Feature) error) error { return nil }
func (s *histStore) Get(context.Context, twin.ID) (*twin.Feature, error) {
	return nil, twin.ErrNotFound
}
func (s *histStore) Upsert(context.Context, []*twin.Feature) error   { return nil }
func (s *histStore) Delete(context.Context, []twin.ID) error         { return nil }
func (s *histStore) GetMeta(context.Context, string) ([]byte, error) { return nil, nil }
func (s *histStore) PutMeta(context.Context, string, []byte) error   { return nil }
func (s *histStore) Ping(context.Context) error                      { return nil }
func (s *histStore) Close() error                                    { return nil }
func (s *histStore) AppendHistory(_ context.Context, in []twin.Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range in {
		s.ss[x.ID] = append(s.ss[x.ID], x)
	}
	return nil
}
func (s *histStore) History(_ context.Context, id twin.ID, from, to time.Time, limit int) ([]twin.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []twin.Sample
	for _, x := range s.ss[id] {
		if (from.IsZero() || !x.Time.Before(from)) && (to.IsZero() || x.Time.Before(to)) {
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

type fixture struct {
	tw    *twin.Twin
	st    *histStore
	api   *API
	srv   *httptest.Server
	reg   *prometheus.Registry
	mu    sync.Mutex
	dead  []string // reason per dead letter
	princ *auth.Principal
}

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

// regionEnricher puts everything east of lon 106.5 in district 500105.
type regionEnricher struct{}

func (regionEnricher) Locate(g orb.Geometry) ([]uint64, *twin.Place) {
	if g.Bound().Center()[0] > 106.5 {
		return nil, twin.NewPlace([]string{"500000", "500105"}, "")
	}
	return nil, twin.NewPlace([]string{"500000", "500106"}, "")
}

func newFixture(t *testing.T, opts Options) *fixture {
	f := &fixture{st: &histStore{ss: map[twin.ID][]twin.Sample{}}, reg: prometheus.NewRegistry()}
	f.tw = twin.New(twin.Options{Clock: clock.NewFake(t0), Enricher: regionEnricher{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	opts.Registerer = f.reg
	opts.Enricher = regionEnricher{}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.DeadLetter = func(_ context.Context, topic string, payload []byte, reason string) {
		f.mu.Lock()
		f.dead = append(f.dead, reason)
		f.mu.Unlock()
		if topic != DeadLetterTopic || len(payload) == 0 {
			t.Errorf("dead letter topic %q payload %q", topic, payload)
		}
	}
	f.api = New(f.tw, f.st, opts)
	mux := http.NewServeMux()
	f.api.Mount(mux)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		p := f.princ
		f.mu.Unlock()
		if p == nil {
			// What the server's guard gives a city-wide admin token.
			p = &auth.Principal{Subject: "test", Role: auth.Admin, Region: auth.CityCode}
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), *p))
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: error body %q is not a JSON error", method, path, b)
		}
	}
	return resp.StatusCode, b
}

func TestEntityLifecycle(t *testing.T) {
	f := newFixture(t, Options{})
	code, b := f.do(t, "PUT", "/api/entities/vehicles/BP2968", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]},"properties":{"kind":"muck_truck"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	var got twin.Feature
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID.String() != "vehicles/BP2968" || got.Version != 1 || got.Prop("kind") != "muck_truck" || got.Geometry != (orb.Point{106.6, 29.6}) || len(got.Region()) != 2 {
		t.Fatalf("created %+v", got)
	}
	code, b = f.do(t, "PUT", "/api/entities/vehicles/BP2968", `{"type":"Feature","id":"vehicles/BP2968","geometry":null,"properties":{"kind":"patrol"}}`)
	if code != http.StatusOK {
		t.Fatalf("update: %d %s", code, b)
	}
	code, b = f.do(t, "GET", "/api/entities/vehicles/BP2968", "")
	if code != http.StatusOK || !strings.Contains(string(b), `"patrol"`) || !strings.Contains(string(b), `"version":2`) {
		t.Fatalf("get: %d %s", code, b)
	}
	// A device not yet placed.
	if code, b := f.do(t, "PUT", "/api/entities/devices/gas-1", `{"type":"Feature","geometry":null,"properties":{"kind":"septic_gas"}}`); code != http.StatusCreated {
		t.Fatalf("device: %d %s", code, b)
	}
	// Telemetry names are unique across tracked layers.
	if code, b := f.do(t, "PUT", "/api/entities/workers/gas-1", `{"type":"Feature","geometry":null,"properties":{}}`); code != http.StatusConflict {
		t.Fatalf("name clash: %d %s", code, b)
	}
	if code, _ := f.do(t, "DELETE", "/api/entities/vehicles/BP2968", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := f.do(t, "GET", "/api/entities/vehicles/BP2968", ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	if code, _ := f.do(t, "DELETE", "/api/entities/vehicles/BP2968", ""); code != http.StatusNotFound {
		t.Fatalf("delete twice: %d", code)
	}
}

func TestEntityValidation(t *testing.T) {
	f := newFixture(t, Options{MaxBody: 1024})
	cases := []struct {
		path, body string
		want       int
	}{
		{"/api/entities/spaceships/x", `{"type":"Feature","geometry":null}`, 404},
		{"/api/entities/vehicles/a+b", `{"type":"Feature","geometry":null}`, 400},
		{"/api/entities/vehicles/x", `not json`, 400},
		{"/api/entities/vehicles/x", `{"type":"FeatureCollection","features":[]}`, 400},
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":{"type":"Point","coordinates":[181,0]}}`, 400},
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":{"type":"Point","coordinates":[0,1e999]}}`, 400},
		{"/api/entities/buildings/x", `{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}}`, 400},
		{"/api/entities/vehicles/x", `{"type":"Feature","id":"vehicles/y","geometry":null}`, 400},
		{"/api/entities/vehicles/x", `{"type":"Feature","geometry":null,"properties":{"pad":"` + strings.Repeat("x", 2000) + `"}}`, 413},
	}
	for _, c := range cases {
		if code, b := f.do(t, "PUT", c.path, c.body); code != c.want {
			t.Errorf("PUT %s %.60s: %d %s, want %d", c.path, c.body, code, b, c.want)
		}
	}
	if f.tw.Len() != 0 {
		t.Fatalf("invalid PUTs created %d objects", f.tw.Len())
	}
}

func TestScope(t *testing.T) {
	f := newFixture(t, Options{})
	f.do(t, "PUT", "/api/entities/vehicles/east", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]}}`)
	f.do(t, "PUT", "/api/entities/vehicles/west", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.4,29.6]}}`)
	f.princ = &auth.Principal{Role: auth.Operator, Region: "500105"}
	if code, _ := f.do(t, "GET", "/api/entities/vehicles/east", ""); code != 200 {
		t.Fatalf("in scope: %d", code)
	}
	for _, req := range [][2]string{{"GET", "/api/entities/vehicles/west"}, {"DELETE", "/api/entities/vehicles/west"}, {"GET", "/api/entities/vehicles/west/history"}} {
		if code, _ := f.do(t, req[0], req[1], ""); code != 404 {
			t.Fatalf("%s %s out of scope: %d, want 404", req[0], req[1], code)
		}
	}
	if code, _ := f.do(t, "PUT", "/api/entities/vehicles/west", `{"type":"Feature","geometry":null}`); code != 404 {
		t.Fatalf("PUT over out-of-scope object: %d", code)
	}
	if code, _ := f.do(t, "PUT", "/api/entities/vehicles/new", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.4,29.6]}}`); code != 403 {
		t.Fatalf("create outside region: %d", code)
	}
	code, b := f.do(t, "POST", "/api/telemetry", `{"id":"west","ts":"2026-03-01T01:00:00Z","lon":106.41,"lat":29.6}`)
	if code != 200 || !strings.Contains(string(b), `"reason":"unknown_device"`) {
		t.Fatalf("telemetry out of scope: %d %s", code, b)
	}
}

func TestTelemetryNDJSON(t *testing.T) {
	f := newFixture(t, Options{Limits: telemetry.Limits{MaxBytes: 200}})
	f.do(t, "PUT", "/api/entities/vehicles/v1", `{"type":"Feature","geometry":null}`)
	body := strings.Join([]string{
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5,"speed_kmh":20}`,
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5}`,
		``,
		`{"id":"v1","ts":"2026-03-01T01:00:00Z","lon":106.4,"lat":29.4}`,
		`{"id":"nobody","ts":1700000000000}`,
		`{"ts":1700000000000}`,
		`{"id":"v1","ts":1700000000000,"lon":"NaN","lat":0}`,
		`{"id":"v1","ts":"2026-03-01T03:00:00Z"}`,
		`{"id":"v1"`,
		`{"id":"v1","ts":1700000000000,"pad":"` + strings.Repeat("x", 300) + `"}`,
	}, "\r\n")
	code, b := f.do(t, "POST", "/api/telemetry", body)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var resp TelemetryResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line            int
		outcome, reason string
	}{
		{1, "applied", ""}, {2, "duplicate", ""}, {4, "history", ""}, {5, "error", "unknown_device"},
		{6, "error", "bad_field"}, {7, "error", "not_finite"}, {8, "error", "future_ts"}, {9, "error", "bad_json"}, {10, "error", "oversized"},
	}
	if len(resp.Results) != len(want) {
		t.Fatalf("results %+v", resp.Results)
	}
	for i, w := range want {
		r := resp.Results[i]
		if r.Line != w.line || r.Outcome != w.outcome || r.Reason != w.reason || (w.outcome == "error") != (r.Error != "") {
			t.Errorf("result %d: %+v, want %+v", i, r, w)
		}
	}
	if resp.Results[0].ID != "v1" {
		t.Errorf("id %q", resp.Results[0].ID)
	}
	feat, _ := f.tw.Get(twin.NewID(twin.Vehicles, "v1"))
	if feat.Geometry != (orb.Point{106.5, 29.5}) || !feat.Observed.Time().Equal(t0.Add(-time.Hour+10*time.Second)) {
		t.Fatalf("twin %v %v", feat.Geometry, feat.Observed)
	}
	if len(f.dead) != 6 {
		t.Fatalf("dead letters %v", f.dead)
	}
	m := f.api.Metrics()
	if testutil.ToFloat64(m.Messages.WithLabelValues("http", "applied")) != 1 ||
		testutil.ToFloat64(m.Messages.WithLabelValues("http", "deadletter")) != 6 ||
		testutil.ToFloat64(m.DeadLetters.WithLabelValues("future_ts")) != 1 {
		t.Fatal("metrics not counted")
	}
}

func TestTelemetryLimits(t *testing.T) {
	f := newFixture(t, Options{MaxBody: 100, AutoRegister: true})
	if code, _ := f.do(t, "POST", "/api/telemetry", strings.Repeat(`{"id":"a","ts":1700000000000}`+"\n", 10)); code != 413 {
		t.Fatalf("oversized body: %d", code)
	}
	if f.tw.Len() != 0 {
		t.Fatal("a refused body was partly applied")
	}
	if code, _ := f.do(t, "POST", "/api/telemetry", "\n \n"); code != 400 {
		t.Fatalf("empty body: %d", code)
	}
	code, b := f.do(t, "POST", "/api/telemetry", `{"id":"auto1","ts":1700000000000,"lon":1,"lat":2}`)
	if code != 200 || !strings.Contains(string(b), `"applied"`) {
		t.Fatalf("auto-register: %d %s", code, b)
	}
	if _, ok := f.tw.Get(twin.NewID(twin.Vehicles, "auto1")); !ok {
		t.Fatal("not auto-registered")
	}
}

func TestHistory(t *testing.T) {
	f := newFixture(t, Options{})
	f.do(t, "PUT", "/api/entities/devices/gas-1", `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]}}`)
	id := twin.NewID(twin.Devices, "gas-1")
	_ = f.st.AppendHistory(context.Background(), []twin.Sample{
		{ID: id, Time: t0.Add(2 * time.Minute), HasPos: true, Pos: orb.Point{106.61, 29.61}, HasSpeed: true, SpeedKmh: 3},
		{ID: id, Time: t0, Values: twin.ReadingsOf(map[string]float64{"ch4": 1.5})},
		{ID: id, Time: t0.Add(time.Minute), HasHeading: true, Heading: 90, HasPos: true, Pos: orb.Point{106.6, 29.6}},
	})
	code, b := f.do(t, "GET", "/api/entities/devices/gas-1/history?order=asc", "")
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			Geometry   *struct{ Coordinates []float64 } `json:"geometry"`
			Properties map[string]any                   `json:"properties"`
		} `json:"features"`
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		t.Fatal(err)
	}
	if fc.Type != "FeatureCollection" || len(fc.Features) != 3 {
		t.Fatalf("%s", b)
	}
	if fc.Features[0].Geometry != nil || fc.Features[0].Properties["values"].(map[string]any)["ch4"] != 1.5 ||
		fc.Features[0].Properties["ts"] != "2026-03-01T02:00:00Z" {
		t.Fatalf("first %s", b)
	}
	if fc.Features[1].Properties["heading"] != 90.0 || fc.Features[2].Properties["speed_kmh"] != 3.0 || fc.Features[2].Geometry.Coordinates[0] != 106.61 {
		t.Fatalf("order/props %s", b)
	}
	code, b = f.do(t, "GET", "/api/entities/devices/gas-1/history?from=2026-03-01T10:01:00%2B08:00&to=2026-03-01T02:02:00Z&limit=5", "")
	if code != 200 || strings.Count(string(b), `"Feature"`) != 1 || !strings.Contains(string(b), "02:01:00Z") {
		t.Fatalf("range: %d %s", code, b)
	}
	if code, b := f.do(t, "GET", "/api/entities/devices/gas-1/history?limit=1", ""); code != 200 || strings.Count(string(b), `"Feature"`) != 1 {
		t.Fatalf("limit: %d %s", code, b)
	}
	for _, q := range []string{"?from=yesterday", "?limit=-1", "?limit=x", "?from=2026-03-01T03:00:00Z&to=2026-03-01T02:00:00Z", "?order=up"} {
		if code, _ := f.do(t, "GET", "/api/entities/devices/gas-1/history"+q, ""); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	if code, _ := f.do(t, "GET", "/api/entities/devices/nope/history", ""); code != 404 {
		t.Fatalf("unknown object: %d", code)
	}
}

// TestFieldTelemetryOwnWorkerOnly: a field token (a grid worker's phone)
// moves its own worker object and nothing else: not another worker, not a
// vehicle of its own name, not a new object even with auto-register; the
// refused lines are dead-lettered as not_yours.
func TestFieldTelemetryOwnWorkerOnly(t *testing.T) {
	f := newFixture(t, Options{AutoRegister: true})
	for _, path := range []string{"/api/entities/workers/w1", "/api/entities/workers/w2", "/api/entities/vehicles/v1"} {
		if code, b := f.do(t, "PUT", path, `{"type":"Feature","geometry":{"type":"Point","coordinates":[106.6,29.6]}}`); code/100 != 2 {
			t.Fatalf("PUT %s: %d %s", path, code, b)
		}
	}
	f.princ = &auth.Principal{Subject: "w1", Role: auth.Field, Region: "500105"}
	body := strings.Join([]string{
		`{"id":"w1","ts":"2026-03-01T01:59:00Z","lon":106.61,"lat":29.6}`,
		`{"id":"w2","ts":"2026-03-01T01:59:00Z","lon":106.61,"lat":29.6}`,
		`{"id":"v1","ts":"2026-03-01T01:59:00Z","lon":106.61,"lat":29.6}`,
		`{"id":"newbie","ts":"2026-03-01T01:59:00Z","lon":106.61,"lat":29.6}`,
	}, "\n")
	code, b := f.do(t, "POST", "/api/telemetry", body)
	var resp TelemetryResponse
	if err := json.Unmarshal(b, &resp); code != 200 || err != nil || len(resp.Results) != 4 {
		t.Fatalf("POST: %d %s", code, b)
	}
	want := []string{"applied", "not_yours", "not_yours", "not_yours"}
	for i, r := range resp.Results {
		got := r.Outcome
		if r.Outcome == "error" {
			got = r.Reason
		}
		if got != want[i] {
			t.Errorf("line %d (%s): %s, want %s", r.Line, r.ID, got, want[i])
		}
	}
	if w, _ := f.tw.Get(twin.NewID(twin.Workers, "w1")); w.Geometry.(orb.Point)[0] != 106.61 {
		t.Errorf("own worker not moved: %v", w.Geometry)
	}
	for _, id := range []twin.ID{twin.NewID(twin.Workers, "w2"), twin.NewID(twin.Vehicles, "v1")} {
		if o, _ := f.tw.Get(id); o.Geometry.(orb.Point)[0] != 106.6 {
			t.Errorf("%s moved by another worker's token: %v", id, o.Geometry)
		}
	}
	if _, ok := f.tw.Resolve("newbie"); ok {
		t.Error("a field token auto-registered an object")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dead) != 3 {
		t.Errorf("dead letters %v, want 3 not_yours", f.dead)
	}
}

// TestTelemetrySubmitAll: with SubmitAll the body's valid lines go to the
// log in one call, in order, and each answer lands on its own line among
// the lines refused at the edge.
func TestTelemetrySubmitAll(t *testing.T) {
	var calls [][]Line
	var f *fixture
	f = newFixture(t, Options{SubmitAll: func(_ context.Context, lines []Line) []Submitted {
		calls = append(calls, lines)
		out := make([]Submitted, len(lines))
		for k, l := range lines {
			m, err := telemetry.Decode(l.Body, t0, telemetry.Limits{})
			if err == nil {
				out[k].Outcome, err = telemetry.Apply(f.tw, l.Name, m, false)
			}
			out[k].Err = err
		}
		return out
	}})
	f.do(t, "PUT", "/api/entities/vehicles/v1", `{"type":"Feature","geometry":null}`)
	body := strings.Join([]string{
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5}`,
		`{"id":"v1"`,
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5}`,
		`{"id":"nobody","ts":1700000000000}`,
		`{"id":"v1","ts":"2026-03-01T01:00:00Z","lon":106.4,"lat":29.4}`,
	}, "\n")
	code, b := f.do(t, "POST", "/api/telemetry", body)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var resp TelemetryResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line            int
		outcome, reason string
	}{{1, "applied", ""}, {2, "error", "bad_json"}, {3, "duplicate", ""}, {4, "error", "unknown_device"}, {5, "history", ""}}
	if len(resp.Results) != len(want) {
		t.Fatalf("results %+v", resp.Results)
	}
	for i, w := range want {
		r := resp.Results[i]
		if r.Line != w.line || r.Outcome != w.outcome || r.Reason != w.reason {
			t.Errorf("result %d: %+v, want %+v", i, r, w)
		}
	}
	if len(calls) != 1 || len(calls[0]) != 4 || calls[0][3].Name != "v1" || calls[0][2].Name != "nobody" {
		t.Fatalf("SubmitAll calls %+v", calls)
	}
}

// TestTelemetryLocal: on the server that leads (Options.Local) a body's
// lines go straight into the twin, with the same answers as through the
// log, and the answer waits for the change log (Committed) once; if it
// fails, the lines the twin took answer unavailable; a twin that no longer
// leads sends the lines to the log after all.
func TestTelemetryLocal(t *testing.T) {
	var submitted [][]Line
	var commits int
	var commitErr error
	local := true
	f := newFixture(t, Options{SubmitAll: func(_ context.Context, lines []Line) []Submitted {
		submitted = append(submitted, lines)
		out := make([]Submitted, len(lines))
		for k := range lines {
			out[k].Outcome = "applied"
		}
		return out
	}, Local: func() bool { return local }, Committed: func(context.Context) error { commits++; return commitErr }})
	f.do(t, "PUT", "/api/entities/vehicles/v1", `{"type":"Feature","geometry":null}`)
	post := func(lines ...string) []LineResult {
		t.Helper()
		code, b := f.do(t, "POST", "/api/telemetry", strings.Join(lines, "\n"))
		if code != 200 {
			t.Fatalf("%d %s", code, b)
		}
		var resp TelemetryResponse
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Results
	}
	type want struct{ outcome, reason string }
	check := func(got []LineResult, ws ...want) {
		t.Helper()
		if len(got) != len(ws) {
			t.Fatalf("results %+v", got)
		}
		for i, w := range ws {
			if got[i].Line != i+1 || got[i].Outcome != w.outcome || got[i].Reason != w.reason {
				t.Errorf("result %d: %+v, want %+v", i, got[i], w)
			}
		}
	}
	check(post(
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5}`,
		`{"id":"v1"`,
		`{"id":"v1","ts":"2026-03-01T01:00:10Z","lon":106.5,"lat":29.5}`,
		`{"id":"nobody","ts":1700000000000}`,
		`{"id":"v1","ts":"2026-03-01T01:00:00Z","lon":106.4,"lat":29.4}`,
	), want{"applied", ""}, want{"error", "bad_json"}, want{"duplicate", ""}, want{"error", "unknown_device"}, want{"history", ""})
	if o, _ := f.tw.Get(twin.NewID(twin.Vehicles, "v1")); o.Geometry.(orb.Point) != (orb.Point{106.5, 29.5}) {
		t.Errorf("v1 at %v", o.Geometry)
	}
	if len(submitted) != 0 || commits != 1 {
		t.Fatalf("%d bodies went to the log, %d waits for the change log; want 0 and 1", len(submitted), commits)
	}
	f.mu.Lock()
	dead := slices.Clone(f.dead)
	f.mu.Unlock()
	if !slices.Equal(dead, []string{"bad_json", "unknown_device"}) {
		t.Errorf("dead letters %v", dead)
	}

	// The change log did not take them (leadership lost): unavailable.
	commitErr = errors.New("leadership lost")
	check(post(
		`{"id":"v1","ts":"2026-03-01T01:00:20Z","lon":106.6,"lat":29.6}`,
		`{"id":"nobody","ts":1700000000000}`,
	), want{"error", "unavailable"}, want{"error", "unknown_device"})
	commitErr = nil

	// A twin that no longer leads refuses the write: the log takes it.
	f.tw.Replicate()
	check(post(`{"id":"v1","ts":"2026-03-01T01:00:30Z","lon":106.7,"lat":29.7}`), want{"applied", ""})
	if len(submitted) != 1 || len(submitted[0]) != 1 || submitted[0][0].Name != "v1" || commits != 2 {
		t.Fatalf("log took %+v, %d waits for the change log; want v1's line and 2", submitted, commits)
	}

	// Not local: the log, as before, and no wait here.
	local = false
	check(post(`{"id":"v1","ts":"2026-03-01T01:00:40Z","lon":106.8,"lat":29.8}`), want{"applied", ""})
	if len(submitted) != 2 || commits != 2 {
		t.Fatalf("%d bodies to the log, %d waits", len(submitted), commits)
	}
}
