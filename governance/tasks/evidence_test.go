package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/twin"
)

func pngBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{G: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// evidenceCity is city() with an evidence store and a rectification task
// on b1 (street 500105002), served by the loop's routes on a mux that
// takes the principal from the test.
func evidenceCity(t *testing.T) (*twin.Twin, *Service, *twin.Feature, func(p auth.Principal, method, path string, body []byte) *httptest.ResponseRecorder) {
	t.Helper()
	tw, clk, _ := city(t)
	s := New(tw, Options{Clock: clk, Period: time.Hour, Evidence: incidents.DirEvidence(t.TempDir())})
	task, err := s.CreateRectification(op("500000"), RectifyReq{Kind: KindRectification, Subject: "buildings/b1", Text: "疏通消防通道", Due: stamp(t0.Add(48 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	do := func(p auth.Principal, method, path string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	return tw, s, task, do
}

// TestTaskEvidenceHTTP: the street's worker posts a photo (201, listed in
// the task's evidence, its history), reports with it, and it is served
// back to whoever sees the task; outside the task's region the task and
// its photo are absent (404); not an image is 415, too big 413; a
// planner may not add one (403), nor anyone once the task is closed (409).
func TestTaskEvidenceHTTP(t *testing.T) {
	tw, _, task, do := evidenceCity(t)
	name := task.ID.Name
	worker := auth.Principal{Subject: "w1", Role: auth.Field, Region: "500105002"}
	sibling := auth.Principal{Subject: "w2", Role: auth.Field, Region: "500105001"}
	other := op("500103")
	planner := auth.Principal{Subject: "pl", Role: auth.Planner, Region: auth.CityCode}
	photo := pngBytes(t)
	post := "/api/tasks/" + name + "/evidence"

	for _, c := range []struct {
		who  auth.Principal
		body []byte
		want int
	}{
		{other, photo, http.StatusNotFound},
		{sibling, photo, http.StatusNotFound},
		{worker, []byte("<svg onload=alert(1)>"), http.StatusUnsupportedMediaType},
		{worker, nil, http.StatusUnsupportedMediaType},
		{worker, make([]byte, incidents.MaxEvidenceBytes+1), http.StatusRequestEntityTooLarge},
		{planner, photo, http.StatusForbidden},
	} {
		if w := do(c.who, "POST", post, c.body); w.Code != c.want {
			t.Fatalf("%s %s, %d bytes: %d %s, want %d", c.who.Role, c.who.Region, len(c.body), w.Code, w.Body, c.want)
		}
	}
	if w := do(worker, "POST", "/api/tasks/none/evidence", photo); w.Code != http.StatusNotFound {
		t.Fatalf("unknown task: %d", w.Code)
	}
	w := do(worker, "POST", post, photo)
	if w.Code != http.StatusCreated {
		t.Fatalf("photo: %d %s", w.Code, w.Body)
	}
	var got struct {
		Evidence map[string]any `json:"evidence"`
		Task     *twin.Feature  `json:"task"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	id, _ := got.Evidence["id"].(string)
	if id == "" || got.Evidence["type"] != "photo" || got.Evidence["content_type"] != "image/png" || got.Task == nil {
		t.Fatalf("answer %s", w.Body)
	}
	if w := do(worker, "POST", post, photo); w.Code != http.StatusCreated { // the same photo again: listed once
		t.Fatalf("again: %d", w.Code)
	}
	cur, _ := tw.Get(task.ID)
	if l := asList(cur.Props.Get("evidence")); len(l) != 1 {
		t.Fatalf("evidence %v", l)
	}
	// The report carries the photo's reference.
	if w := do(worker, "POST", "/api/tasks/"+name+"/report", []byte(`{"note":"已疏通","photos":["`+id+`"]}`)); w.Code != http.StatusOK {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	get := "/api/tasks/" + name + "/evidence/" + id
	for _, p := range []auth.Principal{worker, op("500105"), op("500000"), planner} {
		w := do(p, "GET", get, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "image/png" || !bytes.Equal(w.Body.Bytes(), photo) {
			t.Fatalf("%s %s reads the photo: %d %q", p.Role, p.Region, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, c := range []struct {
		who  auth.Principal
		path string
	}{
		{other, get}, {sibling, get},
		{worker, "/api/tasks/" + name + "/evidence/0123456789abcdef0123456789abcdef.png"},
		{worker, "/api/tasks/" + name + "/evidence/..%2F..%2Fetc%2Fpasswd"},
	} {
		if w := do(c.who, "GET", c.path, nil); w.Code != http.StatusNotFound {
			t.Fatalf("%s %s GET %s: %d, want 404", c.who.Role, c.who.Region, c.path, w.Code)
		}
	}
	if w := do(op("500105"), "POST", "/api/tasks/"+name+"/close", nil); w.Code != http.StatusOK {
		t.Fatalf("close: %d %s", w.Code, w.Body)
	}
	if w := do(worker, "POST", post, photo); w.Code != http.StatusConflict {
		t.Fatalf("photo on a closed task: %d, want 409", w.Code)
	}
	if w := do(worker, "GET", get, nil); w.Code != http.StatusOK {
		t.Fatalf("a closed task's photo: %d", w.Code)
	}
}

// TestEnforcementKeepsPhotos: completing a case's evidence from the track
// keeps the photos added while it collected.
func TestEnforcementKeepsPhotos(t *testing.T) {
	track := []any{map[string]any{"type": "track", "times": []any{"a", "b"}}}
	old := []any{map[string]any{"type": "track", "times": []any{"a"}}, map[string]any{"type": "photo", "id": "x.png"}}
	got := withPhotos(track, old)
	if len(got) != 2 || got[1].(map[string]any)["id"] != "x.png" {
		t.Fatalf("%v", got)
	}
	if got := withPhotos(old, old); len(got) != 2 {
		t.Fatalf("photos twice: %v", got)
	}
}

// FuzzTaskEvidence: any body posted as a task's photo is refused, or
// stored and then served back byte for byte to the task's region.
func FuzzTaskEvidence(f *testing.F) {
	f.Add(pngBytes(f))
	f.Add([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8 "))
	f.Add([]byte("<html>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, s, task, _ := evidenceCity(t)
		p := auth.Principal{Subject: "w1", Role: auth.Field, Region: "500105002"}
		_, ref, err := s.AddEvidence(context.Background(), p, task.ID.Name, b)
		if err != nil {
			return
		}
		id, _ := ref["id"].(string)
		got, ct, err := s.Evidence(context.Background(), op("500105"), task.ID.Name, id)
		if err != nil || !bytes.Equal(got, b) || ct != ref["content_type"] {
			t.Fatalf("stored %q, read back %d bytes %q: %v", id, len(got), ct, err)
		}
	})
}
