package acceptance

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/maptile"
	"github.com/paulmach/orb/planar"
)

// street is one demo street region.
type street struct {
	code, parent string
	poly         orb.Polygon
}

// streets reads every street region of the demo city.
func (s *server) streets(t testing.TB, token string) []street {
	t.Helper()
	r := s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/regions/items?level=street&limit=1000", token, nil)
	fc, err := geojson.UnmarshalFeatureCollection(r.body)
	if err != nil {
		t.Fatalf("regions: %v", err)
	}
	var out []street
	for _, f := range fc.Features {
		p, ok := f.Geometry.(orb.Polygon)
		if !ok {
			if mp, ok := f.Geometry.(orb.MultiPolygon); ok && len(mp) > 0 {
				p = mp[0]
			} else {
				continue
			}
		}
		out = append(out, street{code: f.Properties.MustString("code", ""), parent: f.Properties.MustString("parent", ""), poly: p})
	}
	if len(out) < 10 {
		t.Fatalf("only %d street regions in the demo city", len(out))
	}
	return out
}

// containing returns the codes of the streets whose polygon holds p.
func containing(sts []street, p orb.Point) []string {
	var out []string
	for _, s := range sts {
		if planar.PolygonContains(s.poly, p) {
			out = append(out, s.code)
		}
	}
	return out
}

// scopePair finds a street S of district 500105 and two points 40 m either
// side of one of its edges, one inside S only and one inside one other
// street only, both in the same z16 tile.
func scopePair(sts []street) (s street, other string, in, out orb.Point, ok bool) {
	const offM = 40.0
	for _, st := range sts {
		if st.parent != "500105" || len(st.poly) == 0 {
			continue
		}
		ring := st.poly[0]
		for i := 0; i+1 < len(ring); i++ {
			a, b := ring[i], ring[i+1]
			m := orb.Point{(a[0] + b[0]) / 2, (a[1] + b[1]) / 2}
			kx := 111320 * math.Cos(m[1]*math.Pi/180) // metres per degree of longitude
			const ky = 110540.0
			dx, dy := (b[0]-a[0])*kx, (b[1]-a[1])*ky
			l := math.Hypot(dx, dy)
			if l < 4*offM {
				continue // a short edge: the offsets could cross a corner
			}
			nx, ny := -dy/l*offM/kx, dx/l*offM/ky // unit normal scaled to offM, in degrees
			for _, sign := range []float64{1, -1} {
				p := orb.Point{m[0] + sign*nx, m[1] + sign*ny}
				q := orb.Point{m[0] - sign*nx, m[1] - sign*ny}
				cp, cq := containing(sts, p), containing(sts, q)
				if len(cp) != 1 || cp[0] != st.code || len(cq) != 1 || cq[0] == st.code {
					continue
				}
				if maptile.At(p, 16) != maptile.At(q, 16) {
					continue
				}
				return st, cq[0], p, q, true
			}
		}
	}
	return street{}, "", orb.Point{}, orb.Point{}, false
}

// TestScopeEverySurface is issue 8's check: a street-level token sees only
// objects inside its street on every surface, and auth failures answer
// 401/403 (CONTRACT §7).
func TestScopeEverySurface(t *testing.T) {
	s := startServer(t, serveOpts{demo: true})
	admin := s.token(t, "admin", "500000")
	sts := s.streets(t, admin)

	sfx := suffix(t)
	inName, outName := "acc-in-"+sfx, "acc-out-"+sfx
	st, other, pin, pout, ok := scopePair(sts)
	if !ok {
		t.Fatal("no street of 500105 with a neighbouring street across an edge in one z16 tile")
	}
	fin := s.putVehicle(t, admin, inName, pin[0], pin[1], map[string]any{"kind": "patrol"})
	fout := s.putVehicle(t, admin, outName, pout[0], pout[1], map[string]any{"kind": "patrol"})
	if !fin.inRegion(st.code) || fout.inRegion(st.code) || !fout.inRegion(other) {
		t.Fatalf("server locates %v in %v and %v in %v; the test put them in %s and %s", pin, fin.Region, pout, fout.Region, st.code, other)
	}
	if len(fin.Region) != 3 || fin.Region[0] != "500000" || fin.Region[1] != st.parent || fin.Region[2] != st.code {
		t.Errorf("region of the inside vehicle %v, want [500000 %s %s] (outermost first)", fin.Region, st.parent, st.code)
	}
	var raw map[string]any
	s.must(t, http.StatusOK, http.MethodGet, "/api/entities/vehicles/"+inName, admin, nil).json(t, &raw)
	if g, _ := raw["grid"].(string); g == "" {
		t.Errorf("inside vehicle has no grid code: %v", raw)
	}
	t.Logf("street %s, inside %v, outside %v (street %s)", st.code, pin, pout, other)
	tok := s.token(t, "operator", st.code)

	// REST entity and history.
	if _, ok := s.get(t, tok, "vehicles", inName); !ok {
		t.Errorf("street token: inside vehicle not found")
	}
	if _, ok := s.get(t, tok, "vehicles", outName); ok {
		t.Errorf("street token: outside vehicle visible via GET, want 404")
	}
	s.must(t, http.StatusOK, http.MethodGet, "/api/entities/vehicles/"+inName+"/history", tok, nil)
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/entities/vehicles/"+outName+"/history", tok, nil)

	// OGC items and item.
	pad := 0.002
	bbox := [4]float64{math.Min(pin[0], pout[0]) - pad, math.Min(pin[1], pout[1]) - pad, math.Max(pin[0], pout[0]) + pad, math.Max(pin[1], pout[1]) + pad}
	bboxQ := fmt.Sprintf("%g,%g,%g,%g", bbox[0], bbox[1], bbox[2], bbox[3])
	ids := func(token string) map[string]bool {
		var fc featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1000&bbox="+bboxQ, token, nil).json(t, &fc)
		out := map[string]bool{}
		for _, f := range fc.Features {
			out[f.ID] = true
		}
		return out
	}
	inID, outID := "vehicles/"+inName, "vehicles/"+outName
	if got := ids(tok); !got[inID] || got[outID] {
		t.Errorf("OGC items for street token: inside listed %v, outside listed %v; want true, false", got[inID], got[outID])
	}
	if got := ids(admin); !got[inID] || !got[outID] {
		t.Errorf("OGC items for city token: want both listed, got %v", got)
	}
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items/"+inName, tok, nil)
	s.must(t, http.StatusNotFound, http.MethodGet, "/ogc/collections/vehicles/items/"+outName, tok, nil)

	// Nearby.
	mid := orb.Point{(pin[0] + pout[0]) / 2, (pin[1] + pout[1]) / 2}
	var nb featureCollection
	s.must(t, http.StatusOK, http.MethodGet, fmt.Sprintf("/api/nearby?layer=vehicles&lon=%g&lat=%g&radius_m=300&limit=100", mid[0], mid[1]), tok, nil).json(t, &nb)
	nbIDs := map[string]bool{}
	for _, f := range nb.Features {
		nbIDs[f.ID] = true
	}
	if !nbIDs[inID] || nbIDs[outID] {
		t.Errorf("nearby for street token: inside %v, outside %v; want true, false", nbIDs[inID], nbIDs[outID])
	}

	// H3 counts: the street token counts exactly the vehicles of the bbox
	// that lie in its street.
	h3Total := func(token string) int {
		var h struct {
			Cells []struct {
				Cell  string `json:"cell"`
				Count int    `json:"count"`
			} `json:"cells"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/api/h3?layer=vehicles&res=9&bbox="+bboxQ, token, nil).json(t, &h)
		n := 0
		for _, c := range h.Cells {
			n += c.Count
		}
		return n
	}
	var all featureCollection
	s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1000&bbox="+bboxQ, admin, nil).json(t, &all)
	inStreet := 0
	for _, f := range all.Features {
		if f.inRegion(st.code) {
			inStreet++
		}
	}
	if got := h3Total(tok); got != inStreet {
		t.Errorf("H3 total for street token = %d, want %d (vehicles of the bbox in %s)", got, inStreet, st.code)
	}
	if got := h3Total(admin); got != len(all.Features) {
		t.Errorf("H3 total for city token = %d, want %d", got, len(all.Features))
	}

	// Summaries.
	s.must(t, http.StatusOK, http.MethodGet, "/api/regions/"+st.code+"/summary", tok, nil)
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/regions/"+other+"/summary", tok, nil)
	s.must(t, http.StatusNotFound, http.MethodGet, "/api/regions/"+st.parent+"/summary", tok, nil)

	// Tiles at z16 covering both.
	tile := maptile.At(pin, 16)
	tileIDs := func(token string) map[string]bool {
		r := s.must(t, http.StatusOK, http.MethodGet, fmt.Sprintf("/tiles/vehicles/%d/%d/%d.mvt", tile.Z, tile.X, tile.Y), token, nil)
		layers, err := mvt.Unmarshal(r.body)
		if err != nil {
			if layers, err = mvt.UnmarshalGzipped(r.body); err != nil {
				t.Fatalf("decode MVT: %v", err)
			}
		}
		out := map[string]bool{}
		for _, l := range layers {
			if l.Name != "vehicles" {
				t.Errorf("MVT layer %q in a vehicles tile", l.Name)
			}
			for _, f := range l.Features {
				if id, ok := f.Properties["id"].(string); ok {
					out[id] = true
				}
			}
		}
		return out
	}
	if got := tileIDs(tok); !got[inID] || got[outID] {
		t.Errorf("tile %v for street token: inside %v, outside %v; want true, false", tile, got[inID], got[outID])
	}
	if got := tileIDs(admin); !got[inID] || !got[outID] {
		t.Errorf("tile %v for city token: want both, got %v", tile, got)
	}
	// The tile cache must not hand the city's tile to the street token,
	// nor a 304 for the city's ETag.
	if got := tileIDs(tok); got[outID] {
		t.Errorf("tile %v for street token after the city token fetched it: outside object present", tile)
	}
	tilePath := fmt.Sprintf("/tiles/vehicles/%d/%d/%d.mvt", tile.Z, tile.X, tile.Y)
	cityETag := s.must(t, http.StatusOK, http.MethodGet, tilePath, admin, nil).header.Get("ETag")
	req, _ := http.NewRequest(http.MethodGet, s.url+tilePath, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("If-None-Match", cityETag)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotModified {
			t.Errorf("street token got 304 for the city tile's ETag %s: it would keep showing the outside object", cityETag)
		}
	}

	// Websocket: snapshot holds the inside object only; moving it out of
	// the street removes it.
	ws := dialWS(t, s, tok)
	ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox})
	snap := ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
	snapIDs := map[string]bool{}
	for _, f := range snap.Features {
		snapIDs[f.ID] = true
	}
	if !snapIDs[inID] || snapIDs[outID] {
		t.Errorf("ws snapshot for street token: inside %v, outside %v; want true, false", snapIDs[inID], snapIDs[outID])
	}
	movedTo := orb.Point{pout[0] + (pout[0]-pin[0])*0.25, pout[1] + (pout[1]-pin[1])*0.25}
	res := s.postTelemetry(t, admin, map[string]any{"id": inName, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": movedTo[0], "lat": movedTo[1]})
	if len(res) != 1 || res[0].Outcome != "applied" {
		t.Fatalf("move telemetry: %+v", res)
	}
	if f, _ := s.get(t, admin, "vehicles", inName); f.inRegion(st.code) {
		t.Fatalf("moved vehicle still located in %s: %v", st.code, f.Region)
	}
	d := ws.next(t, "remove delta", func(m wsMsg) bool {
		if m.Op == "delta" && m.Feature.ID == outID {
			t.Errorf("ws delta for the outside object reached the street token: %+v", m)
		}
		if m.Op == "delta" && m.Feature.ID == inID && m.Kind == "upsert" && !m.Feature.inRegion(st.code) {
			t.Errorf("ws upsert of a state outside the street reached the street token: region %v", m.Feature.Region)
		}
		return m.Op == "delta" && m.Feature.ID == inID && m.Kind != "upsert"
	})
	if d.Kind != "remove" {
		t.Errorf("delta kind %q, want remove", d.Kind)
	}
	if d.Feature.Geometry != nil && !near(d.Feature.point(t), pin[0], pin[1]) {
		t.Errorf("remove delta carries %v, a state outside the token's scope; want the last one in view %v", d.Feature.point(t), pin)
	}

	// Writes: a street operator cannot place or change objects outside.
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+outName, tok, pointFeature(pout[0], pout[1], map[string]any{"kind": "patrol"})); r.status != http.StatusNotFound {
		t.Errorf("street token PUT on an outside object: status %d, want 404", r.status)
	}
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/acc-new-"+sfx, tok, pointFeature(pout[0], pout[1], nil)); r.status != http.StatusForbidden && r.status != http.StatusNotFound {
		t.Errorf("street token PUT of a new object outside: status %d, want 403 or 404", r.status)
	}

	// Demo mode: anonymous read from loopback, announced in the log.
	if r := s.do(t, http.MethodGet, "/api/entities/vehicles/"+inName, "", nil); r.status != http.StatusOK {
		t.Errorf("demo anonymous loopback read: %d, want 200", r.status)
	}
	if !strings.Contains(strings.ToLower(s.logs.String()), "anonymous") {
		t.Errorf("demo mode does not say that it allows anonymous reads")
	}

	// Authentication and roles.
	if r := s.do(t, http.MethodPost, "/api/telemetry", "", `{"id":"`+inName+`","ts":0}`); r.status != http.StatusUnauthorized {
		t.Errorf("POST /api/telemetry without token: %d, want 401", r.status)
	}
	tampered := []byte(tok)
	i := strings.LastIndexByte(tok, '.') + 3
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	expired := s.token(t, "operator", st.code, "--ttl", "-1h")
	for what, bad := range map[string]string{"tampered": string(tampered), "expired": expired, "garbage": "not.a.token"} {
		for _, path := range []string{"/api/entities/vehicles/" + inName, "/ogc/collections/vehicles/items"} {
			if r := s.do(t, http.MethodGet, path, bad, nil); r.status != http.StatusUnauthorized {
				t.Errorf("GET %s with %s token: %d, want 401", path, what, r.status)
			}
		}
	}
	if r := s.do(t, http.MethodGet, "/ws?access_token="+url.QueryEscape(expired), "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /ws with an expired token: %d, want 401", r.status)
	}
	field := s.token(t, "field", st.code)
	if r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+inName, field, pointFeature(pin[0], pin[1], nil)); r.status != http.StatusForbidden {
		t.Errorf("field token PUT /api/entities: %d, want 403", r.status)
	}
	planner := s.token(t, "planner", st.code)
	if r := s.do(t, http.MethodPost, "/api/telemetry", planner, `{"id":"`+inName+`","ts":0}`); r.status != http.StatusForbidden {
		t.Errorf("planner POST /api/telemetry: %d, want 403", r.status)
	}
	if r := s.do(t, http.MethodPut, "/api/rules", tok, "rules: []\n"); r.status != http.StatusForbidden {
		t.Errorf("operator PUT /api/rules: %d, want 403", r.status)
	}
	// A street token may not report an incident outside its street.
	if r := s.do(t, http.MethodPost, "/api/incidents", tok, map[string]any{"type": "acc-" + sfx, "lon": pout[0], "lat": pout[1]}); r.status != http.StatusForbidden && r.status != http.StatusNotFound {
		t.Errorf("street token reporting outside its street: %d, want 403 or 404", r.status)
	}
	var nearInc featureCollection
	s.must(t, http.StatusOK, http.MethodGet, fmt.Sprintf("/api/nearby?layer=incidents&lon=%g&lat=%g&radius_m=100", pout[0], pout[1]), admin, nil).json(t, &nearInc)
	for _, f := range nearInc.Features {
		if f.Props["type"] == "acc-"+sfx {
			t.Errorf("refused out-of-scope report left incident %s behind", f.ID)
		}
	}
}

// wsMsg is one server->client websocket message (CONTRACT §6).
type wsMsg struct {
	Op       string    `json:"op"`
	Seq      uint64    `json:"seq"`
	Kind     string    `json:"kind"`
	Feature  feature   `json:"feature"`
	Features []feature `json:"features"`
	Error    string    `json:"error"`
}

type wsConn struct{ c *websocket.Conn }

// dialWS opens /ws with ?access_token=; closed at cleanup.
func dialWS(t testing.TB, s *server, token string) *wsConn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/ws?access_token=" + url.QueryEscape(token)
	c, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /ws: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return &wsConn{c: c}
}

func (w *wsConn) send(t testing.TB, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("ws write: %v", err)
	}
}

// next reads messages until keep accepts one (10 s at most).
func (w *wsConn) next(t testing.TB, what string, keep func(wsMsg) bool) wsMsg {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = w.c.SetReadDeadline(deadline)
		_, b, err := w.c.ReadMessage()
		if err != nil {
			t.Fatalf("ws read waiting for %s: %v", what, err)
		}
		var m wsMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("ws message is not JSON: %v: %s", err, truncate(b))
		}
		if keep(m) {
			return m
		}
	}
}
