package acceptance

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/maptile"
)

// TestReadSurfaces checks the read surfaces of CONTRACT §5 and §6 beyond
// scope on one demo server: tiles (TileJSON, style, errors, ETag, gzip),
// OGC API Features (landing, conformance, collections, paging, filters),
// entities (DELETE, bad bodies), nearby order, history windows, websocket
// origin checks and resume.
func TestReadSurfaces(t *testing.T) {
	s := startServer(t, serveOpts{demo: true})
	op := s.token(t, "operator", "500000")

	t.Run("tiles", func(t *testing.T) {
		var tj struct {
			TileJSON     string     `json:"tilejson"`
			Tiles        []string   `json:"tiles"`
			Bounds       []float64  `json:"bounds"`
			VectorLayers []struct{} `json:"vector_layers"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/tiles/vehicles,incidents.json", op, nil).json(t, &tj)
		if !strings.HasPrefix(tj.TileJSON, "3.") || len(tj.Tiles) == 0 || !strings.HasPrefix(tj.Tiles[0], s.url+"/tiles/") || len(tj.VectorLayers) != 2 {
			t.Errorf("TileJSON = %+v, want 3.x with tiles on %s and two vector layers", tj, s.url)
		}
		// Bounds follow the data: a vehicle placed east of everything.
		if len(tj.Bounds) == 4 {
			east := tj.Bounds[2] + 0.05
			s.putVehicle(t, op, "acc-east-"+suffix(t), east, 29.6, nil)
			var tj2 struct {
				Bounds []float64 `json:"bounds"`
			}
			s.must(t, http.StatusOK, http.MethodGet, "/tiles/vehicles.json", op, nil).json(t, &tj2)
			if len(tj2.Bounds) != 4 || tj2.Bounds[2] < east {
				t.Errorf("TileJSON bounds %v after a vehicle at lon %g: a client honouring bounds would never ask for its tile", tj2.Bounds, east)
			}
		}

		var style struct {
			Version int                       `json:"version"`
			Sources map[string]map[string]any `json:"sources"`
			Layers  []map[string]any          `json:"layers"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/styles/command.json", "", nil).json(t, &style)
		if style.Version != 8 || len(style.Sources) == 0 || len(style.Layers) == 0 {
			t.Errorf("style: version %d, %d sources, %d layers", style.Version, len(style.Sources), len(style.Layers))
		}
		for name, src := range style.Sources {
			var urls []string
			if u, ok := src["url"].(string); ok {
				urls = append(urls, u)
			}
			if ts, ok := src["tiles"].([]any); ok {
				for _, u := range ts {
					urls = append(urls, fmt.Sprint(u))
				}
			}
			for _, u := range urls {
				if !strings.HasPrefix(u, s.url+"/") {
					t.Errorf("style source %s uses %s, not this server's tiles", name, u)
				}
			}
		}

		for path, want := range map[string]int{
			"/tiles/vehicles/99/1/1.mvt":     http.StatusBadRequest,
			"/tiles/vehicles/3/8/1.mvt":      http.StatusBadRequest, // x out of range at z3
			"/tiles/vehicles/3/-1/1.mvt":     http.StatusBadRequest,
			"/tiles/vehicles/a/b/c.mvt":      http.StatusBadRequest,
			"/tiles/unicorns/10/850/420.mvt": http.StatusNotFound,
		} {
			r := s.do(t, http.MethodGet, path, op, nil)
			var e struct {
				Error string `json:"error"`
			}
			if r.status != want || json.Unmarshal(r.body, &e) != nil || e.Error == "" {
				t.Errorf("GET %s: %d %s, want %d with a JSON error", path, r.status, truncate(r.body), want)
			}
		}

		// A populated tile: the demo vehicle PC001 at z15, two layers.
		pc, _ := s.get(t, op, "vehicles", "PC001")
		tile := maptile.At(orb.Point(pc.point(t)), 15)
		path := fmt.Sprintf("/tiles/vehicles,regions/%d/%d/%d.mvt", tile.Z, tile.X, tile.Y)
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+op)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") == "" {
			t.Fatalf("GET %s with gzip: %d, headers %v", path, resp.StatusCode, resp.Header)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("tile is not gzip: %v", err)
		}
		plain, _ := io.ReadAll(zr)
		layers, err := mvt.Unmarshal(plain)
		if err != nil {
			t.Fatalf("decode MVT: %v", err)
		}
		names := map[string]bool{}
		found := false
		for _, l := range layers {
			names[l.Name] = true
			for _, f := range l.Features {
				if f.ID == nil {
					t.Errorf("layer %s: feature %v without an integer id", l.Name, f.Properties["id"])
				}
				if f.Properties["id"] == "vehicles/PC001" {
					found = true
					if l.Name != "vehicles" || f.Properties["kind"] != "patrol" {
						t.Errorf("PC001 in layer %s with props %v", l.Name, f.Properties)
					}
				}
			}
		}
		if !names["vehicles"] || !names["regions"] || len(names) != 2 || !found {
			t.Errorf("tile layers %v, PC001 found %v; want vehicles and regions with PC001", names, found)
		}
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match with the ETag: %d, want 304", resp2.StatusCode)
		}
	})

	t.Run("tile cache follows changes", func(t *testing.T) {
		name := "acc-tile-" + suffix(t)
		id := "vehicles/" + name
		at := orb.Point{106.5512, 29.5612}
		s.putVehicle(t, op, name, at[0], at[1], nil)
		tile := maptile.At(at, 16)
		path := fmt.Sprintf("/tiles/vehicles/%d/%d/%d.mvt", tile.Z, tile.X, tile.Y)
		has := func() (bool, string) {
			r := s.must(t, http.StatusOK, http.MethodGet, path, op, nil)
			layers, err := mvt.Unmarshal(r.body)
			if err != nil {
				t.Fatalf("decode MVT: %v", err)
			}
			for _, l := range layers {
				for _, f := range l.Features {
					if f.Properties["id"] == id {
						return true, r.header.Get("ETag")
					}
				}
			}
			return false, r.header.Get("ETag")
		}
		in, etag := has()
		if !in {
			t.Fatalf("%s not in its tile %v", id, tile)
		}
		// Move it 5 km away: the cached tile must be invalidated.
		s.postTelemetry(t, op, map[string]any{"id": name, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": at[0] + 0.05, "lat": at[1]})
		eventually(t, 10*time.Second, "the tile to drop the moved vehicle", func() bool {
			in, e := has()
			return !in && e != etag
		})
		// Delete it after bringing it back: gone from the tile again.
		s.postTelemetry(t, op, map[string]any{"id": name, "ts": time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano), "lon": at[0], "lat": at[1]})
		eventually(t, 10*time.Second, "the tile to show the vehicle back", func() bool { in, _ := has(); return in })
		s.must(t, http.StatusNoContent, http.MethodDelete, "/api/entities/"+id, op, nil)
		eventually(t, 10*time.Second, "the tile to drop the deleted vehicle", func() bool { in, _ := has(); return !in })
		if res := s.postTelemetry(t, op, map[string]any{"id": name, "ts": time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano), "lon": at[0], "lat": at[1]}); res[0].Reason != "unknown_device" {
			t.Errorf("telemetry for a deleted vehicle: %+v, want unknown_device", res[0])
		}
	})

	t.Run("ogc", func(t *testing.T) {
		var landing struct {
			Links []struct{ Rel, Href string } `json:"links"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/ogc", op, nil).json(t, &landing)
		rels := map[string]bool{}
		for _, l := range landing.Links {
			rels[l.Rel] = true
		}
		for _, rel := range []string{"self", "conformance", "data"} {
			if !rels[rel] {
				t.Errorf("landing page lacks a %q link", rel)
			}
		}
		var conf struct {
			ConformsTo []string `json:"conformsTo"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/conformance", op, nil).json(t, &conf)
		if !strings.Contains(strings.Join(conf.ConformsTo, " "), "ogcapi-features-1/1.0/conf/core") {
			t.Errorf("conformance %v lacks Part 1 core", conf.ConformsTo)
		}
		var cols struct {
			Collections []struct {
				ID string `json:"id"`
			} `json:"collections"`
		}
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections", op, nil).json(t, &cols)
		have := map[string]bool{}
		for _, c := range cols.Collections {
			have[c.ID] = true
		}
		for _, l := range []string{"regions", "grids", "roads", "bridges", "rivers", "buildings", "devices", "vehicles", "workers", "incidents", "alerts"} {
			if !have[l] {
				t.Errorf("collections lack %s", l)
			}
		}

		// Paging: two pages of two, distinct, with next links.
		type page struct {
			featureCollection
			Links []struct{ Rel, Href string } `json:"links"`
		}
		var p1, p2 page
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=2", op, nil).json(t, &p1)
		if p1.NumberReturned == nil || *p1.NumberReturned != 2 || len(p1.Features) != 2 || p1.NumberMatched == nil || *p1.NumberMatched < 4 {
			t.Fatalf("page 1: returned %v matched %v features %d", p1.NumberReturned, p1.NumberMatched, len(p1.Features))
		}
		next := ""
		for _, l := range p1.Links {
			if l.Rel == "next" {
				next = l.Href
			}
		}
		if !strings.HasPrefix(next, s.url+"/ogc/collections/vehicles/items") {
			t.Fatalf("page 1 next link %q", next)
		}
		s.must(t, http.StatusOK, http.MethodGet, strings.TrimPrefix(next, s.url), op, nil).json(t, &p2)
		if len(p2.Features) != 2 || p2.Features[0].ID == p1.Features[0].ID || p2.Features[0].ID == p1.Features[1].ID {
			t.Errorf("page 2 %v overlaps page 1 %v", ids(p2.Features), ids(p1.Features))
		}
		for _, f := range append(p1.Features, p2.Features...) {
			if !strings.HasPrefix(f.ID, "vehicles/") {
				t.Errorf("OGC id %q is not {layer}/{name}", f.ID)
			}
		}

		// Property and bbox filters.
		var muck featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?kind=muck_truck&limit=1000", op, nil).json(t, &muck)
		if len(muck.Features) == 0 || len(muck.Features) == *p1.NumberMatched {
			t.Errorf("kind=muck_truck matched %d of %d vehicles", len(muck.Features), *p1.NumberMatched)
		}
		for _, f := range muck.Features {
			if f.Props["kind"] != "muck_truck" {
				t.Errorf("kind=muck_truck returned %s of kind %v", f.ID, f.Props["kind"])
			}
		}
		var cql featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1000&filter="+url.QueryEscape("kind = 'muck_truck'"), op, nil).json(t, &cql)
		if len(cql.Features) != len(muck.Features) {
			t.Errorf("CQL2 filter kind = 'muck_truck' matched %d, property filter %d", len(cql.Features), len(muck.Features))
		}
		// A vehicle without a time matches every datetime (Part 1,
		// /req/core/fc-time-response B); none has a time in 2000.
		var old, all, every featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1000", op, nil).json(t, &every)
		untimed := 0
		for _, f := range every.Features {
			if f.Updated == "" {
				untimed++
			}
		}
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1&datetime=2000-01-01T00:00:00Z/2001-01-01T00:00:00Z", op, nil).json(t, &old)
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?limit=1&datetime=../2100-01-01T00:00:00Z", op, nil).json(t, &all)
		if old.NumberMatched == nil || *old.NumberMatched != untimed || all.NumberMatched == nil || *all.NumberMatched != *p1.NumberMatched {
			t.Errorf("datetime filters: 2000 matched %v (want the %d without a time), up to 2100 matched %v of %d",
				old.NumberMatched, untimed, all.NumberMatched, *p1.NumberMatched)
		}
		var boxed featureCollection
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/vehicles/items?bbox=106.50,29.54,106.56,29.58&limit=1000", op, nil).json(t, &boxed)
		for _, f := range boxed.Features {
			if p := f.point(t); p[0] < 106.50 || p[0] > 106.56 || p[1] < 29.54 || p[1] > 29.58 {
				t.Errorf("bbox returned %s at %v", f.ID, p)
			}
		}
		r := s.do(t, http.MethodGet, "/ogc/collections/vehicles/items?bbox=1,2,3", op, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("bad bbox: %d, want 400", r.status)
		}
		var item feature
		s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/bridges/items/qiansimen", op, nil).json(t, &item)
		if item.ID != "bridges/qiansimen" {
			t.Errorf("item id %q, want bridges/qiansimen", item.ID)
		}
	})

	t.Run("city model", func(t *testing.T) {
		items := func(layer, q string) []feature {
			var fc featureCollection
			s.must(t, http.StatusOK, http.MethodGet, "/ogc/collections/"+layer+"/items?limit=1000"+q, op, nil).json(t, &fc)
			if len(fc.Features) == 0 {
				t.Errorf("no %s%s in the demo city", layer, q)
			}
			return fc.Features
		}
		districts := map[string]bool{}
		for _, d := range items("regions", "&level=district") {
			districts[d.Props["code"].(string)] = true
			if d.Props["parent"] != "500000" || len(d.Props["code"].(string)) != 6 {
				t.Errorf("district %s: code %v parent %v", d.ID, d.Props["code"], d.Props["parent"])
			}
		}
		for _, st := range items("regions", "&level=street") {
			code, _ := st.Props["code"].(string)
			parent, _ := st.Props["parent"].(string)
			if len(code) != 9 || !strings.HasPrefix(code, parent) || !districts[parent] || st.ID != "regions/"+code || st.Props["name"] == "" {
				t.Errorf("street %s: code %q parent %q name %v", st.ID, code, parent, st.Props["name"])
			}
		}
		for _, g := range items("grids", "") {
			street, _ := g.Props["street"].(string)
			if g.Props["code"] == nil || len(street) != 9 {
				t.Errorf("grid %s: code %v street %v", g.ID, g.Props["code"], g.Props["street"])
			}
		}
		colour := map[float64]string{1: "red", 2: "orange", 3: "yellow", 4: "blue", 5: "green"}
		for _, b := range items("buildings", "") {
			lvl, _ := b.Props["risk_level"].(float64)
			if colour[lvl] == "" || b.Props["risk_color"] != colour[lvl] {
				t.Errorf("building %s: risk_level %v risk_color %v", b.ID, b.Props["risk_level"], b.Props["risk_color"])
			}
			if h, ok := b.Props["height_m"].(float64); ok && b.Props["high_rise"] != (h > 24) && b.Props["high_rise"] != (h >= 24) {
				t.Errorf("building %s: height_m %v high_rise %v", b.ID, h, b.Props["high_rise"])
			}
		}
		for _, d := range items("devices", "&limit=200") {
			if a, ok := d.Props["attached_to"].(string); ok && a != "" {
				if r := s.do(t, http.MethodGet, "/api/entities/"+a, op, nil); r.status != http.StatusOK {
					t.Errorf("device %s attached_to %s: %d", d.ID, a, r.status)
				}
			}
		}
		for _, w := range items("workers", "") {
			if st := w.Props["status"]; st != "available" && st != "busy" && st != "offline" {
				t.Errorf("worker %s status %v", w.ID, st)
			}
		}
	})

	t.Run("entities", func(t *testing.T) {
		name := "acc-del-" + suffix(t)
		s.putVehicle(t, op, name, 106.55, 29.56, nil)
		if r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+name, op, map[string]any{"type": "Feature", "id": "vehicles/other", "geometry": nil, "properties": map[string]any{}}); r.status != http.StatusBadRequest {
			t.Errorf("PUT with a mismatched id: %d, want 400", r.status)
		}
		if r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+name, op, pointFeature(200, 29.56, nil)); r.status != http.StatusBadRequest {
			t.Errorf("PUT at lon 200: %d, want 400", r.status)
		}
		if r := s.do(t, http.MethodPut, "/api/entities/vehicles/"+name, op, "{not json"); r.status != http.StatusBadRequest {
			t.Errorf("PUT with bad JSON: %d, want 400", r.status)
		}
		// A device not yet placed.
		dev := "acc-dev-" + suffix(t)
		if r := s.do(t, http.MethodPut, "/api/entities/devices/"+dev, op, map[string]any{"type": "Feature", "geometry": nil, "properties": map[string]any{"kind": "camera"}}); r.status != http.StatusCreated {
			t.Errorf("PUT a device with null geometry: %d %s, want 201", r.status, truncate(r.body))
		}
		// A body over the limit (8 MiB) is refused whole: 413, nothing applied.
		var big strings.Builder
		line := fmt.Sprintf(`{"id":%q,"ts":%q,"lon":106.56,"lat":29.57,"pad":"%s"}`+"\n", name, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), strings.Repeat("x", 1000))
		for big.Len() < 9<<20 {
			big.WriteString(line)
		}
		if r := s.do(t, http.MethodPost, "/api/telemetry", op, big.String()); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), `"error"`) {
			t.Errorf("9 MiB NDJSON: %d %s, want 413 with a JSON error", r.status, truncate(r.body))
		}
		if f, _ := s.get(t, op, "vehicles", name); near(f.point(t), 106.56, 29.57) {
			t.Errorf("a refused oversized body was applied")
		}
		s.must(t, http.StatusNoContent, http.MethodDelete, "/api/entities/vehicles/"+name, op, nil)
		if _, ok := s.get(t, op, "vehicles", name); ok {
			t.Errorf("vehicle still there after DELETE")
		}
		s.must(t, http.StatusNotFound, http.MethodDelete, "/api/entities/vehicles/"+name, op, nil)
		if r := s.do(t, http.MethodGet, "/api/entities/unicorns/x", op, nil); r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
			t.Errorf("GET unknown layer: %d, want 400 or 404", r.status)
		}
	})

	t.Run("nearby and history", func(t *testing.T) {
		sfx := suffix(t)
		base := orb.Point{106.5800, 29.5400}
		for i, d := range []float64{0.0030, 0.0010, 0.0020} { // 300, 100, 200 m north
			s.putVehicle(t, op, fmt.Sprintf("acc-nb%d-%s", i, sfx), base[0], base[1]+d*0.9, nil)
		}
		var nb struct {
			Features []struct {
				ID        string  `json:"id"`
				DistanceM float64 `json:"distance_m"`
			} `json:"features"`
		}
		s.must(t, http.StatusOK, http.MethodGet, fmt.Sprintf("/api/nearby?layer=vehicles&lon=%g&lat=%g&radius_m=400&limit=50", base[0], base[1]), op, nil).json(t, &nb)
		var mine []string
		last := -1.0
		for _, f := range nb.Features {
			if f.DistanceM < last {
				t.Errorf("nearby not nearest first: %v", nb.Features)
			}
			last = f.DistanceM
			if strings.HasSuffix(f.ID, sfx) {
				mine = append(mine, f.ID)
			}
		}
		want := []string{"vehicles/acc-nb1-" + sfx, "vehicles/acc-nb2-" + sfx, "vehicles/acc-nb0-" + sfx}
		if fmt.Sprint(mine) != fmt.Sprint(want) {
			t.Errorf("nearby order %v, want %v", mine, want)
		}

		name := "acc-hist-" + sfx
		s.putVehicle(t, op, name, 106.55, 29.56, nil)
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
		var lines []any
		for i := 0; i < 5; i++ {
			lines = append(lines, map[string]any{"id": name, "ts": t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), "lon": 106.55 + float64(i)*0.001, "lat": 29.56})
		}
		s.postTelemetry(t, op, lines...)
		// History is read from the store, which the writer fills in batches.
		eventually(t, 10*time.Second, "history stored", func() bool { return len(s.historyTimes(t, op, "vehicles", name)) == 5 })
		q := url.Values{"from": {t0.Add(time.Minute).Format(time.RFC3339)}, "to": {t0.Add(3 * time.Minute).Format(time.RFC3339)}, "order": {"asc"}}
		r := s.must(t, http.StatusOK, http.MethodGet, "/api/entities/vehicles/"+name+"/history?"+q.Encode(), op, nil)
		var h struct {
			Features []struct {
				Properties struct {
					TS string `json:"ts"`
				} `json:"properties"`
			} `json:"features"`
		}
		r.json(t, &h)
		var got []string
		for _, f := range h.Features {
			ts, _ := time.Parse(time.RFC3339Nano, f.Properties.TS)
			got = append(got, ts.Sub(t0).String())
		}
		if fmt.Sprint(got) != "[1m0s 2m0s]" {
			t.Errorf("history from t0+1m to t0+3m = %v, want [1m0s 2m0s] (from <= ts < to)", got)
		}
		s.must(t, http.StatusOK, http.MethodGet, "/api/entities/vehicles/"+name+"/history?limit=2", op, nil).json(t, &h)
		got = nil
		for _, f := range h.Features {
			ts, _ := time.Parse(time.RFC3339Nano, f.Properties.TS)
			got = append(got, ts.Sub(t0).String())
		}
		if fmt.Sprint(got) != "[4m0s 3m0s]" {
			t.Errorf("history limit=2 = %v, want the latest two newest first [4m0s 3m0s]", got)
		}
	})

	t.Run("websocket origin and resume", func(t *testing.T) {
		u := "ws" + strings.TrimPrefix(s.url, "http") + "/ws?access_token=" + url.QueryEscape(op)
		_, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"http://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			st := 0
			if resp != nil {
				st = resp.StatusCode
			}
			t.Errorf("foreign Origin: err %v status %d, want 403", err, st)
		}
		c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {s.url}})
		if err != nil {
			t.Fatalf("same Origin refused: %v", err)
		}
		c.Close()

		name := "acc-resume-" + suffix(t)
		s.putVehicle(t, op, name, 106.551, 29.561, nil)
		bbox := []float64{106.54, 29.55, 106.56, 29.57}
		ws := dialWS(t, s, op)
		ws.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox})
		snap := ws.next(t, "snapshot", func(m wsMsg) bool { return m.Op == "snapshot" })
		ws.c.Close()
		// Changes while away.
		s.postTelemetry(t, op, map[string]any{"id": name, "ts": time.Now().UTC().Format(time.RFC3339Nano), "lon": 106.552, "lat": 29.562})
		ws2 := dialWS(t, s, op)
		ws2.send(t, map[string]any{"op": "subscribe", "layers": []string{"vehicles"}, "bbox": bbox, "since": snap.Seq})
		m := ws2.next(t, "resumed delta", func(m wsMsg) bool {
			if m.Op == "snapshot" || m.Op == "resync" {
				t.Errorf("resume within the window answered %q, want deltas", m.Op)
				return true
			}
			return m.Op == "delta" && m.Feature.ID == "vehicles/"+name
		})
		if m.Op == "delta" && (m.Seq <= snap.Seq || !near(m.Feature.point(t), 106.552, 29.562)) {
			t.Errorf("resumed delta seq %d at %v, want seq > %d at [106.552 29.562]", m.Seq, m.Feature.point(t), snap.Seq)
		}
	})
}

func ids(fs []feature) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}
