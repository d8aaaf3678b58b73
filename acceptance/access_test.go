package acceptance

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"gopkg.in/yaml.v3"
)

// accessFixture is a demo server with a street S of district 500105 and a
// point inside it (pin) and one in a neighbouring street (pout).
type accessFixture struct {
	s         *server
	admin     string // city admin
	op        string // operator of street S
	st        street
	other     string
	pin, pout orb.Point
	sfx       string
}

func newAccessFixture(t *testing.T, o serveOpts) *accessFixture {
	t.Helper()
	o.demo = true
	s := startServer(t, o)
	admin := s.token(t, "admin", "500000")
	st, other, pin, pout, ok := scopePair(s.streets(t, admin))
	if !ok {
		t.Fatal("no street of 500105 with a neighbouring street across an edge")
	}
	return &accessFixture{s: s, admin: admin, op: s.token(t, "operator", st.code), st: st, other: other, pin: pin, pout: pout, sfx: suffix(t)}
}

// errorBody is a JSON error answer.
type errorBody struct {
	Error  string `json:"error"`
	Detail any    `json:"detail"`
}

// TestForgedRegionsPropIsNoProofOfScope (issue 11 item 10): a street
// operator cannot create or place objects in another street by writing the
// server-owned "regions" prop; the prop is refused everywhere a client
// writes props, and the object's scope is what the server computed.
func TestForgedRegionsPropIsNoProofOfScope(t *testing.T) {
	f := newAccessFixture(t, serveOpts{})
	s := f.s
	forged := map[string]any{"kind": "patrol", "regions": []string{f.st.code}}
	r := s.do(t, http.MethodPut, "/api/entities/vehicles/acc-forged-"+f.sfx, f.op, pointFeature(f.pout[0], f.pout[1], forged))
	if r.status != http.StatusBadRequest {
		t.Fatalf("street operator PUT outside its street with regions=[own street]: %d, want 400: %s", r.status, r.body)
	}
	if _, ok := s.get(t, f.admin, "vehicles", "acc-forged-"+f.sfx); ok {
		t.Fatal("the forged object exists")
	}
	// Inside its own street too: the prop is the server's.
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/acc-forged-in-"+f.sfx, f.op, pointFeature(f.pin[0], f.pin[1], forged)); r.status != http.StatusBadRequest {
		t.Errorf("PUT with a regions prop inside the street: %d, want 400", r.status)
	}
	// Any layer, including alerts (whose regions the scope check reads).
	alert := pointFeature(f.pout[0], f.pout[1], map[string]any{"state": "open", "regions": []string{f.st.code}})
	if r := s.do(t, http.MethodPut, "/api/entities/alerts/acc-forged-"+f.sfx, f.op, alert); r.status != http.StatusBadRequest {
		t.Errorf("PUT of an alert with a forged regions prop: %d, want 400", r.status)
	}
	// Without the prop the outside placement is refused as before.
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/acc-forged-"+f.sfx, f.op, pointFeature(f.pout[0], f.pout[1], nil)); r.status != http.StatusForbidden {
		t.Errorf("PUT outside the street: %d, want 403", r.status)
	}
	// A city admin cannot write it either: it is computed, never given.
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/acc-forged-"+f.sfx, f.admin, pointFeature(f.pout[0], f.pout[1], forged)); r.status != http.StatusBadRequest {
		t.Errorf("city admin PUT with a regions prop: %d, want 400", r.status)
	}
}

// TestAccessIncidentsTilesTokens (issue 11 item 13, and item 17's scope):
// dispatch stays in scope and does not reveal names; an out-of-region
// report leaves nothing; a 409 hides the other object's id; TileJSON
// bounds follow the token's region; the reporter is the token's subject;
// ?access_token= works on /ws only.
func TestAccessIncidentsTilesTokens(t *testing.T) {
	f := newAccessFixture(t, serveOpts{})
	s := f.s

	// Reporter comes from the token.
	alice := s.token(t, "operator", f.st.code, "--subject", "alice")
	typ := "acc-" + f.sfx
	var rep incidentAnswer
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", alice, map[string]any{"type": typ, "lon": f.pin[0], "lat": f.pin[1], "reporter": "mallory"}).json(t, &rep)
	if rep.Incident.Props["reporter"] != "alice" {
		t.Errorf("reporter %v, want the token's subject alice", rep.Incident.Props["reporter"])
	}
	incName := strings.TrimPrefix(rep.Incident.ID, "incidents/")

	// Out-of-region report: refused, nothing created (not even briefly).
	ws := dialWS(t, s, f.admin)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"incidents"}, "bbox": []float64{f.pout[0] - 0.01, f.pout[1] - 0.01, f.pout[0] + 0.01, f.pout[1] + 0.01}})
	ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	outType := "acc-out-" + f.sfx
	if r := s.do(t, http.MethodPost, "/api/incidents", f.op, map[string]any{"type": outType, "lon": f.pout[0], "lat": f.pout[1]}); r.status != http.StatusForbidden {
		t.Errorf("report outside the street: %d, want 403", r.status)
	}
	// A marker change after the refused report: every delta before it
	// would have been the refused incident.
	s.must(t, http.StatusCreated, http.MethodPost, "/api/incidents", f.admin, map[string]any{"type": "acc-marker-" + f.sfx, "lon": f.pout[0], "lat": f.pout[1]})
	ws.next(t, "marker incident delta", func(m wsMsg) bool {
		if m.Op == "delta" && m.Feature.Props["type"] == outType {
			t.Errorf("the refused report was broadcast: %+v", m.Feature.ID)
		}
		return m.Op == "delta" && m.Feature.Props["type"] == "acc-marker-"+f.sfx
	})

	// Dispatch: a worker in the neighbouring street and a name that does
	// not exist answer alike (404); the city admin's PUT puts the worker
	// there.
	outWorker := "accw-out-" + f.sfx
	s.must(t, http.StatusCreated, http.MethodPut, "/api/entities/workers/"+outWorker, f.admin, pointFeature(f.pout[0], f.pout[1], map[string]any{"status": "available"}))
	var hidden, missing errorBody
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/incidents/"+incName+"/dispatch", f.op, map[string]any{"worker": outWorker}).json(t, &hidden)
	s.must(t, http.StatusNotFound, http.MethodPost, "/api/incidents/"+incName+"/dispatch", f.op, map[string]any{"worker": "nobody-" + f.sfx}).json(t, &missing)
	if hidden.Error != missing.Error || strings.Replace(fmt.Sprint(hidden.Detail), outWorker, "X", 1) != strings.Replace(fmt.Sprint(missing.Detail), "nobody-"+f.sfx, "X", 1) {
		t.Errorf("hidden worker answered %+v, missing worker %+v: they must not differ", hidden, missing)
	}
	// Even the city admin may not send the other street's worker to a
	// street-tier incident.
	if r := s.do(t, http.MethodPost, "/api/incidents/"+incName+"/dispatch", f.admin, map[string]any{"worker": outWorker}); r.status != http.StatusNotFound {
		t.Errorf("city admin dispatching another street's worker to a street incident: %d, want 404", r.status)
	}
	if w, _ := s.get(t, f.admin, "workers", outWorker); w.Props["status"] != "available" {
		t.Errorf("refused dispatch changed the worker's status to %v", w.Props["status"])
	}

	// 409 without the hidden object's id.
	r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+outWorker, f.op, pointFeature(f.pin[0], f.pin[1], nil))
	if r.status != http.StatusConflict {
		t.Errorf("PUT of a vehicle named like a hidden worker: %d, want 409", r.status)
	}
	if strings.Contains(string(r.body), "workers/") {
		t.Errorf("409 reveals the hidden object's id: %s", r.body)
	}

	// TileJSON bounds: the street's for the street token.
	var tj struct {
		Bounds []float64 `json:"bounds"`
	}
	s.must(t, http.StatusOK, http.MethodGet, "/tiles/buildings.json", f.op, nil).json(t, &tj)
	b := f.st.poly.Bound()
	const eps = 2e-6
	if len(tj.Bounds) != 4 || tj.Bounds[0] < b.Min[0]-eps || tj.Bounds[1] < b.Min[1]-eps || tj.Bounds[2] > b.Max[0]+eps || tj.Bounds[3] > b.Max[1]+eps {
		t.Errorf("TileJSON bounds for street %s: %v, want within the street's %v", f.st.code, tj.Bounds, b)
	}
	var city struct {
		Bounds []float64 `json:"bounds"`
	}
	s.must(t, http.StatusOK, http.MethodGet, "/tiles/buildings.json", f.admin, nil).json(t, &city)
	if len(city.Bounds) != 4 || city.Bounds[2]-city.Bounds[0] <= b.Max[0]-b.Min[0] {
		t.Errorf("TileJSON bounds for the city %v are not wider than the street's %v", city.Bounds, b)
	}

	// ?access_token= on REST: 401 with a message naming the rule.
	for _, path := range []string{"/api/entities/incidents/" + incName, "/ogc/collections/incidents/items", "/tiles/buildings.json"} {
		var e errorBody
		r := s.do(t, http.MethodGet, path+"?access_token="+url.QueryEscape(f.admin), "", nil)
		if r.status != http.StatusUnauthorized {
			t.Errorf("GET %s?access_token=: %d, want 401", path, r.status)
			continue
		}
		r.json(t, &e)
		if !strings.Contains(fmt.Sprint(e.Detail), "/ws") {
			t.Errorf("401 for a query token does not say why: %+v", e)
		}
	}
	// ... while the websocket still takes it (dialWS above used it).
}

// TestMetricsAccess: /metrics is loopback-only by default, and with
// --metrics-access token needs a city admin's token.
func TestMetricsAccess(t *testing.T) {
	s := startServer(t, serveOpts{args: []string{"--metrics-access", "token"}})
	if r := s.do(t, http.MethodGet, "/metrics", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics without token under --metrics-access token: %d, want 401", r.status)
	}
	if r := s.do(t, http.MethodGet, "/metrics", s.token(t, "admin", "500105"), nil); r.status != http.StatusForbidden {
		t.Errorf("/metrics with a district admin token: %d, want 403", r.status)
	}
	r := s.must(t, http.StatusOK, http.MethodGet, "/metrics", s.token(t, "admin", "500000"), nil)
	if !strings.Contains(string(r.body), "go_goroutines") {
		t.Errorf("/metrics body has no go_goroutines")
	}
	out := runTwin(t, false, "serve", "--metrics-access", "everyone", "--listen", freeAddr(t), "--data", t.TempDir())
	if !strings.Contains(out, "metrics-access") {
		t.Errorf("a bad --metrics-access value is not explained: %s", out)
	}
}

// TestSkeletonEditsCityAdminOnly (issue 11 item 11): only a city-level
// admin may change regions and grids, and a change re-places the objects
// it covers at once (no restart): a vehicle in a street whose region is
// removed leaves the street's scope, and comes back when it is restored.
func TestSkeletonEditsCityAdminOnly(t *testing.T) {
	f := newAccessFixture(t, serveOpts{})
	s := f.s
	orig := s.must(t, http.StatusOK, http.MethodGet, "/api/entities/regions/"+f.st.code, f.admin, nil).body
	districtAdmin := s.token(t, "admin", f.st.parent)
	streetAdmin := s.token(t, "admin", f.st.code)
	cityWide := fmt.Sprintf(`{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[105,28],[108,28],[108,31],[105,31],[105,28]]]},"properties":{"level":"street","code":"%s","parent":"%s","name":"captured"}}`, f.st.code, f.st.parent)
	for who, tok := range map[string]string{"street operator": f.op, "street admin": streetAdmin, "district admin": districtAdmin} {
		if r := s.do(t, http.MethodPut, "/api/entities/regions/"+f.st.code, tok, cityWide); r.status != http.StatusForbidden {
			t.Errorf("%s PUT regions/%s: %d, want 403", who, f.st.code, r.status)
		}
		if r := s.do(t, http.MethodDelete, "/api/entities/regions/"+f.st.code, tok, nil); r.status != http.StatusForbidden {
			t.Errorf("%s DELETE regions/%s: %d, want 403", who, f.st.code, r.status)
		}
		if r := s.do(t, http.MethodPut, "/api/entities/grids/acc-"+f.sfx, tok, cityWide); r.status != http.StatusForbidden && r.status != http.StatusBadRequest {
			t.Errorf("%s PUT grids: %d, want 403", who, r.status)
		}
	}
	name := "acc-skel-" + f.sfx
	s.putVehicle(t, f.admin, name, f.pin[0], f.pin[1], nil)
	if _, ok := s.get(t, f.op, "vehicles", name); !ok {
		t.Fatal("street token does not see a vehicle in its street")
	}
	s.must(t, http.StatusNoContent, http.MethodDelete, "/api/entities/regions/"+f.st.code, f.admin, nil)
	eventually(t, 30*time.Second, "the vehicle to leave the removed street", func() bool {
		v, _ := s.get(t, f.admin, "vehicles", name)
		return !v.inRegion(f.st.code) && v.inRegion(f.st.parent)
	})
	if _, ok := s.get(t, f.op, "vehicles", name); ok {
		t.Error("street token still sees the vehicle after its street was removed")
	}
	s.must(t, http.StatusCreated, http.MethodPut, "/api/entities/regions/"+f.st.code, f.admin, orig)
	eventually(t, 30*time.Second, "the vehicle to return to the restored street", func() bool {
		v, _ := s.get(t, f.admin, "vehicles", name)
		return v.inRegion(f.st.code)
	})
	if _, ok := s.get(t, f.op, "vehicles", name); !ok {
		t.Error("street token does not see the vehicle after its street was restored")
	}
}

// TestRulesTiersOverHTTP (issue 11 item 12): a street admin replaces only
// its street's rules and cannot touch the city's; GET shows each token the
// rules of its tiers.
func TestRulesTiersOverHTTP(t *testing.T) {
	s := startServer(t, serveOpts{})
	city := s.token(t, "admin", "500000")
	street := s.token(t, "admin", "500105002")
	other := s.token(t, "admin", "500103")
	const cityRules = "rules:\n  - {name: city-gas, kind: threshold, subjects: {layer: devices}, tiers: [{when: 'values.ch4 >= 10.0', severity: red}]}\n"
	const streetRules = "rules:\n  - {name: street-gas, kind: threshold, subjects: {layer: devices}, tiers: [{when: 'values.ch4 >= 5.0', severity: orange}]}\n"
	s.must(t, http.StatusOK, http.MethodPut, "/api/rules", city, cityRules)
	s.must(t, http.StatusForbidden, http.MethodPut, "/api/rules", street, strings.Replace(cityRules, "name: city-gas,", "name: x, owner: '500000',", 1))
	s.must(t, http.StatusConflict, http.MethodPut, "/api/rules", street, strings.Replace(streetRules, "street-gas", "city-gas", 1))
	s.must(t, http.StatusOK, http.MethodPut, "/api/rules", street, streetRules)
	names := func(tok string) string {
		var doc struct {
			Rules []struct{ Name string } `json:"rules"`
		}
		body := s.must(t, http.StatusOK, http.MethodGet, "/api/rules", tok, nil).body
		if err := yaml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("GET /api/rules: %v: %s", err, body)
		}
		var out []string
		for _, r := range doc.Rules {
			out = append(out, r.Name)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	if got := names(city); got != "city-gas,street-gas" {
		t.Errorf("city GET: %s, want city-gas,street-gas", got)
	}
	if got := names(street); got != "city-gas,street-gas" {
		t.Errorf("street GET: %s, want city-gas,street-gas", got)
	}
	if got := names(other); got != "city-gas" {
		t.Errorf("another district's GET: %s, want city-gas", got)
	}
	// The street empties its rules; the city's keep running.
	s.must(t, http.StatusOK, http.MethodPut, "/api/rules", street, "rules: []\n")
	if got := names(city); got != "city-gas" {
		t.Errorf("after the street's empty PUT the city sees %s, want city-gas", got)
	}
}
