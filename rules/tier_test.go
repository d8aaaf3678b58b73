package rules

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

const streetGas = `
rules:
  - name: street-gas
    kind: threshold
    subjects: {layer: devices}
    tiers: [{when: 'values.ch4 >= 5.0', severity: orange}]
`

// TestRulesBelongToTheirTier (issue 11 item 12): a street admin's PUT
// replaces only the rules its street owns, may not touch the city's, and
// its rules fire only inside the street; GET shows a token the rules of its
// tiers above and of its own region.
func TestRulesBelongToTheirTier(t *testing.T) {
	f := newFixture(t, gasA)
	street := auth.Principal{Subject: "s-admin", Role: auth.Admin, Region: "500105002"}
	other := auth.Principal{Subject: "o-admin", Role: auth.Admin, Region: "500103"}
	put := func(p auth.Principal, body string) (int, string) {
		rec := httptest.NewRecorder()
		f.e.PutRules(rec, as(httptest.NewRequest("PUT", "/api/rules", strings.NewReader(body)), p))
		return rec.Code, rec.Body.String()
	}
	names := func(p auth.Principal) map[string]string {
		rec := httptest.NewRecorder()
		f.e.GetRules(rec, as(httptest.NewRequest("GET", "/api/rules", nil), p))
		var doc struct {
			Rules []struct{ Name, Owner string } `json:"rules"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("GET /api/rules as %s: %v: %s", p.Region, err, rec.Body)
		}
		out := map[string]string{}
		for _, r := range doc.Rules {
			out[r.Name] = r.Owner
		}
		return out
	}
	if code, body := put(street, streetGas); code != 200 {
		t.Fatalf("street admin PUT of its own rule: %d %s", code, body)
	}
	running := map[string]string{}
	for _, r := range f.e.RuleSet().Rules {
		running[r.Name] = r.owner()
	}
	if running["gas"] != auth.CityCode || running["street-gas"] != "500105002" || len(running) != 2 {
		t.Fatalf("running rules after the street's PUT: %v, want the city's gas kept and street-gas owned by the street", running)
	}
	for what, body := range map[string]string{
		"a rule owned by the city":     "rules:\n  - {name: x, kind: threshold, owner: '500000', subjects: {layer: devices}, tiers: [{when: 'values.ch4 >= 1.0', severity: red}]}\n",
		"a rule owned by its district": "rules:\n  - {name: x, kind: threshold, owner: '500105', subjects: {layer: devices}, tiers: [{when: 'values.ch4 >= 1.0', severity: red}]}\n",
		"the city's SLA":               "sla: {street: 1m}\nrules: []\n",
	} {
		if code, _ := put(street, body); code != 403 {
			t.Errorf("street admin PUT of %s: %d, want 403", what, code)
		}
	}
	if code, _ := put(street, strings.Replace(streetGas, "street-gas", "gas", 1)); code != 409 {
		t.Errorf("street admin PUT of a rule named like the city's: %d, want 409", code)
	}
	if got := names(street); len(got) != 2 || got["gas"] != "" || got["street-gas"] != "500105002" {
		t.Errorf("street GET: %v, want gas (the city's) and street-gas", got)
	}
	if got := names(other); len(got) != 1 || got["gas"] != "" {
		t.Errorf("another district's GET: %v, want only the city's gas", got)
	}

	// The street's rule fires inside the street only.
	for name, region := range map[string][]string{"in": {"500000", "500105", "500105002"}, "out": {"500000", "500103", "500103001"}} {
		if _, err := f.tw.Put(&twin.Feature{ID: twin.NewID(twin.Devices, name), Geometry: orb.Point{106.55, 29.55}, Place: twin.NewPlace(region, ""), Props: twin.NewProps(map[string]any{"kind": "septic_gas"})}); err != nil {
			t.Fatal(err)
		}
		f.reading(t, name, f.clk.Now(), map[string]float64{"ch4": 7})
	}
	as := f.alerts("street-gas")
	if len(as) != 1 || as[0].Prop("subject") != "devices/in" {
		t.Fatalf("street-gas alerts: %d (want one, on devices/in)", len(as))
	}

	// The street empties its rules: the city's stay.
	if code, body := put(street, "rules: []\n"); code != 200 {
		t.Fatalf("street admin PUT of no rules: %d %s", code, body)
	}
	if rs := f.e.RuleSet(); len(rs.Rules) != 1 || rs.Rules[0].Name != "gas" {
		t.Fatalf("after the street emptied its rules: %v", rs.ruleNames())
	}
}

// FuzzRulesBody: any PUT /api/rules body is parsed or refused without a
// panic, and a street admin's PUT of it either fails cleanly or leaves a
// running set that re-parses from its own source.
func FuzzRulesBody(f *testing.F) {
	for _, s := range []string{gasA, gasB, streetGas, "rules: []\n", "{\"rules\":[]}", "rules: {}", "sla: {street: 1m}\nrules: []\n",
		"rules:\n  - {name: x, kind: threshold, owner: '500105002', subjects: {layer: devices}, tiers: [{when: 'values.ch4 >= 1.0', severity: red}]}\n",
		"rules:\n  - {name: g, kind: geofence, subjects: {layer: vehicles}, target: {layer: bridges}, detect: cross, windows: ['07:00-09:00']}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		e := New(twin.New(twin.Options{FeedSize: 16}), Options{Logger: quietLog()})
		rs, err := Parse("fuzz.yaml", b)
		if err == nil {
			e.Load(rs)
		}
		street := auth.Principal{Subject: "s", Role: auth.Admin, Region: "500105002"}
		out, _, err := e.tierRules(street, "rules.yaml", b)
		if err != nil {
			return
		}
		if _, err := Parse("again.json", out.Source); err != nil {
			t.Fatalf("merged set does not re-parse: %v\n%s", err, out.Source)
		}
		for _, r := range out.Rules {
			if r.owner() != "500105002" && (rs == nil || !hasRule(rs, r.Name)) {
				t.Fatalf("rule %q owned by %s came from a street admin's body", r.Name, r.owner())
			}
		}
	})
}

func hasRule(rs *RuleSet, name string) bool {
	for _, r := range rs.Rules {
		if r.Name == name {
			return true
		}
	}
	return false
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestGetRulesJSONWithTitles (issue 14 item 1): the client asks for the
// rules as JSON (?format=json or Accept) to show their display names; the
// city's file stays YAML as written for everyone else.
func TestGetRulesJSONWithTitles(t *testing.T) {
	src := strings.Replace(gasA, "kind: threshold", "kind: threshold\n    title: Gas high\n    title_zh: 燃气浓度超标", 1)
	f := newFixture(t, src)
	get := func(url, accept string) (string, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		f.e.GetRules(rec, asCity(req))
		return rec.Header().Get("Content-Type"), rec.Body.String()
	}
	if ct, body := get("/api/rules", ""); ct != "application/yaml" || body != src {
		t.Fatalf("plain GET = %s %q, want the YAML as written", ct, body)
	}
	for _, c := range []struct{ url, accept string }{{"/api/rules?format=json", ""}, {"/api/rules", "application/json, */*;q=0.5"}} {
		ct, body := get(c.url, c.accept)
		var doc struct {
			Rules []struct {
				Name, Title string
				TitleZH     string `json:"title_zh"`
			} `json:"rules"`
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil || ct != "application/json" {
			t.Fatalf("%s (Accept %q) = %s %v: %s", c.url, c.accept, ct, err, body)
		}
		if len(doc.Rules) != 1 || doc.Rules[0].Title != "Gas high" || doc.Rules[0].TitleZH != "燃气浓度超标" {
			t.Errorf("%s: rules = %+v", c.url, doc.Rules)
		}
	}
}
